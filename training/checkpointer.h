// The trainer's checkpoints (docs/design.md §6): which one to resume and loading it, writing one
// with every rank's part, and where they live in the run directory. Collective calls: every rank
// makes them at the same step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

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
};

class Checkpointer {
 public:
  Checkpointer(CheckpointerOptions options, Communicator& host, Watchdog& watchdog, int rank, int world);

  // Restores refs from the checkpoint chosen by options.resume; nullopt when starting afresh.
  std::optional<TrainStateInfo> resume(TrainStateRefs refs);
  // Writes the checkpoint of info.counters.step; throws on every rank when rank 0's write fails.
  void write(TrainStateRefs refs, const TrainStateInfo& info);
  // The step of the newest checkpoint written or resumed by this run (-1: none).
  int64_t last_step() const { return last_step_; }

 private:
  // Collective: the step rank 0 chose (-1: none); rank 0's verified copy goes to `verified`.
  int64_t choose(std::optional<LoadedCheckpoint>& verified);
  CheckpointerOptions o_;
  Communicator& host_;
  Watchdog& watchdog_;
  int rank_, world_;
  std::unique_ptr<CheckpointStore> store_;
  int64_t last_step_ = -1;
};

}  // namespace vdm
