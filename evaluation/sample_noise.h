// Per-sample noise streams for sampling: sample i draws all of its noise from its own CPU
// generator seeded from (seed, i), so an image depends on its index alone, not on the batch it
// was made in, the rank that made it, or how many ranks took part.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace vdm {

// Fresh noise for the current batch (every call a new draw), shaped like the batch's z.
using NoiseFn = std::function<torch::Tensor()>;

// The generator seed of sample `index` (splitmix64 of the pair, so neighbouring indices and
// seeds give unrelated streams).
uint64_t sample_seed(uint64_t seed, int64_t index);

class SampleNoise {
 public:
  // One stream per index; every draw has shape [indices.size(), ...sample_shape] and
  // options' dtype and device. Noise is drawn in float64 on the CPU and then cast and moved,
  // so the same seed gives the same noise whatever the device and dtype of the sampling.
  SampleNoise(const std::vector<int64_t>& indices, uint64_t seed, std::vector<int64_t> sample_shape,
              torch::TensorOptions options);
  torch::Tensor next();
  NoiseFn fn() {
    return [this] { return next(); };
  }

 private:
  std::vector<at::Generator> generators_;
  std::vector<int64_t> sample_shape_;
  torch::TensorOptions options_;
};

}  // namespace vdm
