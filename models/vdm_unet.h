// The VDM U-Net (Kingma et al. 2021, App. B): no downsampling, a stack of residual blocks at
// full resolution with skip connections, attention in the middle, Fourier features of z
// appended to the input, and eps = z + network with a zero-initialised output convolution.
#pragma once

#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include "models/denoiser_net.h"
#include "models/embedding.h"
#include "models/unet_blocks.h"

namespace vdm {

struct VdmUNetOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, resolution) = 32;
  TORCH_ARG(int64_t, channels) = 128;
  TORCH_ARG(int64_t, num_blocks) = 32;  // down blocks; the up path has one more
  TORCH_ARG(int64_t, num_heads) = 1;
  TORCH_ARG(double, dropout) = 0.1;
  TORCH_ARG(int64_t, fourier_min) = 6;  // input features sin/cos(2 pi 2^n z), n in [min, max]
  TORCH_ARG(int64_t, fourier_max) = 7;  // max < min: no Fourier features
  TORCH_ARG(int64_t, num_classes) = 0;
  TORCH_ARG(bool, skip_input) = true;
};

class VdmUNetImpl : public DenoiserNetImpl {
 public:
  explicit VdmUNetImpl(VdmUNetOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                        const torch::Tensor& labels) override;
  std::string describe() const override;
  const VdmUNetOptions& options() const { return options_; }

 private:
  VdmUNetOptions options_;
  Conditioning cond_{nullptr};
  torch::nn::Conv2d conv_in_{nullptr};
  OutputHead head_{nullptr};
  torch::nn::ModuleList down_, mid_, up_;
};
TORCH_MODULE(VdmUNet);

// Throws std::invalid_argument naming the option (as model.<key>) that cannot build a network.
void validate(const VdmUNetOptions& options);

}  // namespace vdm
