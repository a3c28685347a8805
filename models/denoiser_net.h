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
  // NHWC (channels-last) convolution weights and activations: converts the 4-d parameters in
  // place (set_data, so optimisers and reducers made later see the new layout) and makes
  // forward() keep its activations NHWC. Where the convolutions run faster NHWC: cuDNN's bf16
  // kernels, and mkldnn on CPUs with vdm::group_norm_silu beside them.
  void set_channels_last(bool on);
  bool channels_last() const { return channels_last_; }

 protected:
  // The stem convolution's output in the network's layout: a 1-channel image is NCHW and NHWC
  // at once, and a convolution given one answers NCHW, which would then hold for the whole net.
  torch::Tensor in_layout(const torch::Tensor& h) const;
  double flops_ = 0;
  bool channels_last_ = false;
};
using DenoiserNet = std::shared_ptr<DenoiserNetImpl>;

}  // namespace vdm
