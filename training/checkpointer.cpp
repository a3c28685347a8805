// Checkpointer (see checkpointer.h).
#include "training/checkpointer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "distributed/communicator.h"
#include "distributed/watchdog.h"

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

// Every rank takes part: all ranks' RNG states are gathered (a collective), rank 0 writes, then
// rank 0 broadcasts whether the write succeeded. The broadcast keeps other ranks from exiting
// (on preemption) while rank 0 is still writing, which would make mpirun kill rank 0 mid-write,
// and turns a failed write into an error on every rank instead of only on rank 0.
void Checkpointer::write(TrainStateRefs refs, const TrainStateInfo& info) {
  const int64_t step = info.counters.step;
  torch::Tensor rng_all;
  {
    auto guard = watchdog_.watch("all_gather(rng states)", step);
    rng_all = host_.all_gather(refs.rng.state());
  }
  std::string error;
  if (rank_ == 0) {
    try {
      const auto path = store_->write(step, write_train_state(refs, info, rng_all, o_.config_text));
      spdlog::info("checkpoint {}", path);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  auto failed = torch::tensor({int64_t(error.empty() ? 0 : 1)}, torch::kInt64);
  {
    auto guard = watchdog_.watch("broadcast(checkpoint status)", step);
    host_.broadcast(failed, 0);
  }
  if (failed.item<int64_t>() != 0)
    throw std::runtime_error("writing the checkpoint of step " + std::to_string(step) + " failed" +
                             (error.empty() ? " on rank 0" : ": " + error));
  last_step_ = step;
}

}  // namespace vdm
