// The trainer's checkpoints (docs/design.md §6): which one to resume and loading it, writing one
// with every rank's part, in the background or on the step, and where they live in the run
// directory. Collective calls: every rank makes them at the same step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "training/checkpoint_store.h"
#include "training/train_state.h"

namespace vdm {

class Communicator;
class Watchdog;

struct CheckpointerOptions {
  std::string dir;          // RUN/checkpoints
  int64_t keep_last = 3, keep_every = 0;
  std::string resume = "auto";  // auto | none | path to a checkpoint folder
  std::string config_text;      // stored in every checkpoint as config.yaml
  // Sees the config.yaml of the checkpoint about to be resumed; throws when the run's config
  // cannot continue it (launch/ supplies it: only launch/ understands the config).
  std::function<void(const std::string& checkpoint_config)> check_resume;
  // true: the step waits only for a snapshot of the state in host memory; a background thread on
  // rank 0 encodes, writes and commits it (checkpointer.cpp). false: the step waits for it all.
  bool async = true;
  // Tests: called on rank 0 by whatever thread writes, before it encodes the checkpoint of
  // `step`; it may block (a slow disk) or throw (a failed write).
  std::function<void(int64_t step)> before_write;
};

class Checkpointer {
 public:
  Checkpointer(CheckpointerOptions options, Communicator& host, Watchdog& watchdog, int rank, int world);
  // Waits for a write still in flight (its failure can then only be logged): finish() is the
  // way to learn it.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Restores refs from the checkpoint chosen by options.resume; nullopt when starting afresh.
  std::optional<TrainStateInfo> resume(TrainStateRefs refs);
  // Checkpoints info.counters.step. First waits for the previous write and throws on every rank
  // when it failed; then async: returns once the state is copied to host memory, sync: once it
  // is committed, throwing on every rank when the write failed.
  void write(TrainStateRefs refs, const TrainStateInfo& info);
  // Waits for the write in flight, if any, and throws on every rank when it failed. Call it
  // before the run ends in any way (done, preempted, diverged): after it returns, the newest
  // checkpoint is committed and no rank exits while rank 0 is still writing.
  void finish();
  // The step of the newest checkpoint written, scheduled or resumed by this run (-1: none).
  int64_t last_step() const { return last_step_; }
  // Seconds the last write() held the step up (rank 0; every rank waits about as long at the
  // next collective).
  double last_stall_s() const { return last_stall_s_; }

 private:
  // Collective: the step rank 0 chose (-1: none); rank 0's verified copy goes to `verified`.
  int64_t choose(std::optional<LoadedCheckpoint>& verified);
  // Collective: rank 0 waits for the write in flight; all ranks learn its outcome and throw
  // when it failed. `step`: the training step, for the watchdog.
  void settle(int64_t step);
  // Rank 0, on the writing thread: encodes and commits the snapshot; "" or the error.
  std::string commit(TrainStateSnapshot& snapshot, double stall_s);
  CheckpointerOptions o_;
  Communicator& host_;
  Watchdog& watchdog_;
  int rank_, world_;
  std::unique_ptr<CheckpointStore> store_;
  int64_t last_step_ = -1;
  double last_stall_s_ = 0;
  // The write in flight: every rank knows there is one (in_flight_step_ >= 0); rank 0 runs it on
  // writer_ (async) and finds its outcome in writer_error_ after joining it.
  int64_t in_flight_step_ = -1;
  std::thread writer_;
  std::string writer_error_;
};

// Test hook: VDM_FAULT_CHECKPOINT=slow_write makes each write sleep 2 s before it starts,
// fail_write makes it fail (see also the store's crash points in checkpoint_store.h).

}  // namespace vdm
