// Counter-hash dropout (see dropout.h).
#include "models/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace vdm {
namespace {

// A 32-bit integer finaliser with low bias (C. Wellons, "Prospecting for hash functions",
// 2018: the "lowbias32" constants). Two rounds keyed by the seed's halves decorrelate
// neighbouring counters and different seeds well beyond what a dropout mask needs.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Compiled for AVX2 and for the baseline; the loader picks one per machine. AVX2 multiplies
// eight 32-bit lanes at once.
__attribute__((target_clones("avx2", "default"))) void fill_mask(float* out, int64_t begin, int64_t end,
                                                                  uint32_t k0, uint32_t k1, uint32_t threshold,
                                                                  float scale) {
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t h = mix32(mix32(uint32_t(i) ^ k0) ^ k1);
    out[i] = h >= threshold ? scale : 0.0f;
  }
}

}  // namespace

torch::Tensor dropout_keep_mask(at::IntArrayRef sizes, double p, uint64_t seed, at::MemoryFormat format) {
  if (!(p >= 0 && p < 1)) throw std::invalid_argument("dropout: p must be in [0, 1)");
  auto mask = torch::empty(sizes, torch::TensorOptions(torch::kFloat32).memory_format(format));
  const int64_t n = mask.numel();
  if (n > int64_t(UINT32_MAX)) throw std::invalid_argument("dropout: more than 2^32 elements in one tensor");
  const uint32_t threshold = uint32_t(std::min(p * 4294967296.0, 4294967295.0));
  const float scale = float(1.0 / (1.0 - p));
  float* out = mask.data_ptr<float>();
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    fill_mask(out, begin, end, uint32_t(seed), uint32_t(seed >> 32), threshold, scale);
  });
  return mask;
}

DropoutImpl::DropoutImpl(double p) : p_(p) {
  if (!(p >= 0 && p < 1)) throw std::invalid_argument("dropout: p must be in [0, 1)");
}

torch::Tensor DropoutImpl::forward(const torch::Tensor& x) {
  if (!is_training() || p_ == 0) return x;
  if (!x.device().is_cpu()) return torch::dropout(x, p_, true);
  uint64_t seed;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  const bool nhwc = x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(torch::MemoryFormat::ChannelsLast);
  auto mask = dropout_keep_mask(x.sizes(), p_, seed,
                                nhwc ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous);
  return x * (x.scalar_type() == torch::kFloat32 ? mask : mask.to(x.scalar_type()));
}

}  // namespace vdm
