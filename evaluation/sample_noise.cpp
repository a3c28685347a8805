// Per-sample generators (see sample_noise.h): a draw stacks one [1, C, H, W] normal sample
// from each sample's own stream.
#include "evaluation/sample_noise.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "data/mix64.h"

namespace vdm {

uint64_t sample_seed(uint64_t seed, int64_t index) {
  // The constant keeps these streams apart from other purposes seeded from the same seed.
  return mix64(mix64(seed ^ 0x73616d706c65ULL) + uint64_t(index) * kGolden64);
}

SampleNoise::SampleNoise(const std::vector<int64_t>& indices, uint64_t seed,
                         std::vector<int64_t> sample_shape, torch::TensorOptions options)
    : sample_shape_(std::move(sample_shape)), options_(options) {
  generators_.reserve(indices.size());
  for (int64_t i : indices) generators_.push_back(at::detail::createCPUGenerator(sample_seed(seed, i)));
}

torch::Tensor SampleNoise::next() {
  std::vector<int64_t> shape{1};
  shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  std::vector<torch::Tensor> parts;
  parts.reserve(generators_.size());
  for (auto& g : generators_) parts.push_back(at::randn(shape, g, f64));
  return torch::cat(parts).to(options_);
}

}  // namespace vdm
