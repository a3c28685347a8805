// FID statistics of a feature set: float64 running sums (count, sum f, sum f f^T) that every
// rank accumulates over its share and reduces to rank 0, the mean and covariance (divisor N-1)
// computed from them, and their .npz form (arrays mu and sigma, as pytorch-fid and EDM write).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "distributed/communicator.h"

namespace vdm {

// Mean and covariance of a feature set; what reference .npz files hold.
struct GaussianStats {
  torch::Tensor mu;     // float64 [d]
  torch::Tensor sigma;  // float64 [d, d]
  int64_t dims() const { return mu.defined() ? mu.size(0) : 0; }
};

// Reads arrays mu and sigma (float64 or float32) from an .npz; throws NpzError (evaluation/npz.h)
// naming the file when one is missing or their shapes do not fit ([d] and [d, d]).
GaussianStats load_stats(const std::string& path);
// Writes mu and sigma as float64 (numpy.savez layout); atomically.
void save_stats(const std::string& path, const GaussianStats& stats, bool compress = false);

// FID between two sets of statistics; throws std::invalid_argument when their dimensions differ.
double fid(const GaussianStats& a, const GaussianStats& b);

class FeatureStats {
 public:
  explicit FeatureStats(int64_t dims = 0);  // 0: taken from the first add()
  // features: [n, d] on any device, any floating dtype; summed in float64 on the CPU.
  void add(const torch::Tensor& features);
  // Collective (an all-reduce of d, then one reduce): every rank of comm calls it, also one
  // that saw no features; afterwards root holds the sums over all ranks and the others' sums
  // are meaningless. comm == nullptr (a single process) leaves the sums as they are.
  void reduce_to_root(Communicator* comm, int root = 0);

  int64_t count() const { return count_; }
  int64_t dims() const { return dims_; }
  torch::Tensor mu() const;     // sum f / N; needs N >= 1
  torch::Tensor sigma() const;  // (sum f f^T - N mu mu^T) / (N - 1); needs N >= 2
  GaussianStats gaussian() const { return {mu(), sigma()}; }

 private:
  int64_t dims_ = 0, count_ = 0;
  torch::Tensor sum_, outer_;  // float64 [d], [d, d]
};

}  // namespace vdm
