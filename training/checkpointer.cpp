// Checkpointer (see checkpointer.h).
#include "training/checkpointer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "distributed/communicator.h"
#include "distributed/watchdog.h"
#include "training/elapsed_time.h"

namespace vdm {

Checkpointer::Checkpointer(CheckpointerOptions options, Communicator& host, Watchdog& watchdog, int rank, int world)
    : o_(std::move(options)), host_(host), watchdog_(watchdog), rank_(rank), world_(world),
      store_(std::make_unique<CheckpointStore>(CheckpointStoreOptions{o_.dir, o_.keep_last, o_.keep_every})) {}

// Rank 0 chooses the checkpoint (the newest that verifies, for `auto`) and broadcasts its step,
// so that all ranks resume the same one even if another rank would have judged differently
// (a file changing under it); the other ranks then read it from the shared run directory, and
// rank 0 keeps the copy it has just verified.
int64_t Checkpointer::choose(std::optional<LoadedCheckpoint>& verified) {
  int64_t step = -1;
  if (rank_ == 0) {
    store_->remove_stale_temporaries();
    verified = store_->load_latest_valid();
    if (verified) step = verified->step;
  }
  auto t = torch::tensor({step}, torch::kInt64);
  {
    auto guard = watchdog_.watch("broadcast(resume step)", 0);
    host_.broadcast(t, 0);
  }
  return t.item<int64_t>();
}

std::optional<TrainStateInfo> Checkpointer::resume(TrainStateRefs refs) {
  if (o_.resume == "none") return std::nullopt;
  std::string path = o_.resume;
  std::optional<LoadedCheckpoint> verified;
  if (o_.resume == "auto") {
    const int64_t step = choose(verified);
    if (step < 0) return std::nullopt;
    path = (std::filesystem::path(o_.dir) / CheckpointStore::folder_name(step)).string();
  }
  const LoadedCheckpoint ckpt = verified ? std::move(*verified) : store_->load(path);
  const TrainStateInfo info = read_train_state(ckpt, refs, o_.check_resume, rank_, world_);
  last_step_ = info.counters.step;
  if (rank_ == 0) spdlog::info("resumed from {} (step {}, epoch {})", path, info.counters.step, info.sampler.epoch);
  return info;
}

// The write protocol. Every rank takes part in every checkpoint, at the same step:
// 1. All ranks' RNG states are gathered (a collective; only rank 0 keeps them).
// 2. The previous checkpoint's write is settled: rank 0 waits for it to finish, then broadcasts
//    whether it failed, and every rank throws together when it did. So there is one write in
//    flight at most, and a write that failed in the background becomes an error on every rank
//    at the next sync point: the next checkpoint, or finish(), which the trainer calls before
//    it returns (done, preempted, diverged).
// 3. Rank 0 copies the state into host memory that training no longer touches (the snapshot:
//    a device-to-host copy on CUDA, a clone on the CPU). With `async` the step ends here; a
//    thread encodes the snapshot (LibTorch archives) and hands the files to the store, whose
//    commit protocol (tmp folder, fsyncs, manifest last, rename) is unchanged, as is pruning.
//    Without `async` rank 0 does that on the step, and step 2 runs again at once, as the
//    status broadcast did before checkpoints could be written in the background.
// The status broadcast also keeps the other ranks from exiting (on preemption) while rank 0 is
// still writing, which would make mpirun kill rank 0 mid-write. A crash at any point leaves the
// previous checkpoints intact: the new one exists only once its manifest is renamed into place.
void Checkpointer::write(TrainStateRefs refs, const TrainStateInfo& info) {
  const auto start = SteadyClock::now();
  const int64_t step = info.counters.step;
  torch::Tensor rng_all;
  {
    auto guard = watchdog_.watch("all_gather(rng states)", step);
    rng_all = host_.all_gather(refs.rng.state());
  }
  settle(step);
  in_flight_step_ = step;
  last_step_ = step;
  if (rank_ == 0) {
    try {
      TrainStateSnapshot snapshot = snapshot_train_state(refs, info, rng_all, o_.config_text);
      last_stall_s_ = seconds_between(start, SteadyClock::now());
      if (o_.async)
        writer_ = std::thread([this, snapshot = std::move(snapshot), stall = last_stall_s_]() mutable {
          writer_error_ = commit(snapshot, stall);
        });
      else
        writer_error_ = commit(snapshot, last_stall_s_);
    } catch (const std::exception& e) {  // no host memory for the copy, no thread
      writer_error_ = std::string("cannot copy the state for writing: ") + e.what();
    }
  }
  if (!o_.async) {
    settle(step);
    last_stall_s_ = seconds_between(start, SteadyClock::now());
  }
}

std::string Checkpointer::commit(TrainStateSnapshot& snapshot, double stall_s) {
  const int64_t step = snapshot.info.counters.step;
  const auto start = SteadyClock::now();
  try {
    if (const char* fault = std::getenv("VDM_FAULT_CHECKPOINT")) {
      if (std::strcmp(fault, "slow_write") == 0) std::this_thread::sleep_for(std::chrono::seconds(2));
      if (std::strcmp(fault, "fail_write") == 0)
        throw CheckpointError("injected failure (VDM_FAULT_CHECKPOINT=fail_write)");
    }
    if (o_.before_write) o_.before_write(step);
    const std::string path = store_->write(step, encode_train_state(snapshot));
    const double took = seconds_between(start, SteadyClock::now());
    if (o_.async)
      spdlog::info("checkpoint step {}: step stalled {:.0f} ms (snapshot), written in {:.0f} ms in the background ({})",
                   step, 1e3 * stall_s, 1e3 * took, path);
    else
      spdlog::info("checkpoint step {}: step stalled {:.0f} ms, written in {:.0f} ms on the step ({})", step,
                   1e3 * (stall_s + took), 1e3 * took, path);
    return "";
  } catch (const std::exception& e) {
    return e.what()[0] != '\0' ? e.what() : "unknown error";
  }
}

void Checkpointer::settle(int64_t step) {
  if (in_flight_step_ < 0) return;  // every rank knows: all took part in scheduling it
  std::string error;
  if (rank_ == 0) {
    if (writer_.joinable()) writer_.join();
    error = std::move(writer_error_);
    writer_error_.clear();
  }
  auto failed = torch::tensor({int64_t(error.empty() ? 0 : 1)}, torch::kInt64);
  {
    auto guard = watchdog_.watch("broadcast(checkpoint status)", step);
    host_.broadcast(failed, 0);
  }
  const int64_t written = in_flight_step_;
  in_flight_step_ = -1;
  if (failed.item<int64_t>() != 0)
    throw std::runtime_error("writing the checkpoint of step " + std::to_string(written) + " failed" +
                             (error.empty() ? " on rank 0" : ": " + error));
}

void Checkpointer::finish() { settle(in_flight_step_); }

Checkpointer::~Checkpointer() {
  if (writer_.joinable()) writer_.join();
  if (!writer_error_.empty())
    spdlog::error("writing the checkpoint of step {} failed: {}", in_flight_step_, writer_error_);
}

}  // namespace vdm
