// Dropout whose CPU mask comes from a counter-based hash instead of LibTorch's bernoulli_, which
// draws every element from a Mersenne twister on one thread (10 ns per element here, a fifth of
// a small U-Net's forward). On other devices it is torch::dropout.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>

namespace vdm {

// The scaled keep mask: 1/(1-p) where kept, 0 where dropped, element i decided by a hash of
// (seed, i) alone, so any thread may fill any part of it. Float32, on the CPU, with element i
// the i-th in memory of the given layout (so a channels-last mask multiplies NHWC at full speed).
torch::Tensor dropout_keep_mask(at::IntArrayRef sizes, double p, uint64_t seed,
                                at::MemoryFormat format = at::MemoryFormat::Contiguous);

class DropoutImpl : public torch::nn::Cloneable<DropoutImpl> {
 public:
  explicit DropoutImpl(double p = 0.5);
  void reset() override {}
  // In training: x times the keep mask, with the seed drawn from LibTorch's default CPU
  // generator (which the checkpoints save, so a resumed run draws the same masks). In eval: x.
  torch::Tensor forward(const torch::Tensor& x);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(Dropout);

}  // namespace vdm
