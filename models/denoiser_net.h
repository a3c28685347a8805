// The interface every network in models/ implements: (z_t or its scaled form, c_noise, labels)
// -> an output of z's shape, plus its size and an analytic estimate of forward FLOPs per image.
#pragma once

#include <torch/types.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>

namespace vdm {

class DenoiserNetImpl : public torch::nn::Module {
 public:
  // x: [B, C, H, W]; c_noise: [B] (gamma/8, see objectives/parameterisation.h);
  // labels: [B] int64 in [0, num_classes] (num_classes = the null class) or undefined.
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                                const torch::Tensor& labels) = 0;
  // Multiply-adds x 2 of convolutions, linear layers and attention for one image.
  double flops_per_image() const { return flops_; }
  int64_t parameter_count() const;
  virtual std::string describe() const = 0;
  // "<describe()>: 1.19M parameters, 0.37 GFLOP/image forward", the line logged at start.
  std::string summary() const;

 protected:
  double flops_ = 0;
};
using DenoiserNet = std::shared_ptr<DenoiserNetImpl>;

}  // namespace vdm
