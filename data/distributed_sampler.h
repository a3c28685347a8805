// Which dataset indices each rank reads, with PyTorch DistributedSampler semantics: one
// permutation of all N per epoch from (seed, epoch) with a portable PRNG (identical on every
// platform and LibTorch version), padded (or truncated with drop_last) to a multiple of the
// world size, split with a stride. Its state is the global position in the epoch's stream, so a
// run resumed on a different world size continues the same stream.
#pragma once

#include <cstdint>
#include <vector>

namespace vdm {

struct SamplerOptions {
  int64_t dataset_size = 0;
  int64_t rank = 0;
  int64_t world = 1;
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = false;
};

struct SamplerState {
  int64_t epoch = 0;
  int64_t consumed = 0;  // samples of this epoch's global stream already taken, all ranks together
};

class DistributedSampler {
 public:
  explicit DistributedSampler(SamplerOptions options);
  // The epoch's global stream: the permutation (or 0..N-1), not yet padded.
  std::vector<int64_t> permutation(int64_t epoch) const;
  // This rank's indices for the rest of the current epoch (from state().consumed on), padded
  // so that every rank gets the same count.
  std::vector<int64_t> remaining_indices() const;
  // The next `batch` indices of this rank. A batch never mixes epochs: when fewer than `batch`
  // remain for this rank, that tail is skipped (as a loader with drop_last would) and the next
  // epoch begins. Every rank makes the same decision, since all have the same count.
  std::vector<int64_t> next_batch(int64_t batch);
  // Per rank per full epoch.
  int64_t samples_per_rank() const;
  SamplerState state() const { return state_; }
  void restore(const SamplerState& state) { state_ = state; }
  const SamplerOptions& options() const { return options_; }

 private:
  SamplerOptions options_;
  SamplerState state_;
};

}  // namespace vdm
