// An ADM/DDPM-style U-Net (Ho et al. 2020; Dhariwal & Nichol 2021): residual blocks with
// scale-shift conditioning at each resolution, attention at chosen resolutions, 2x
// down/upsampling between levels, skip connections, and a zero-initialised output head.
#pragma once

#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

#include "models/denoiser_net.h"
#include "models/embedding.h"
#include "models/unet_blocks.h"

namespace vdm {

struct UNetOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, resolution) = 32;  // H = W; must be divisible by 2^(levels - 1)
  TORCH_ARG(int64_t, base_channels) = 128;
  TORCH_ARG(std::vector<int64_t>, channel_mult) = std::vector<int64_t>{1, 2, 2, 2};
  TORCH_ARG(int64_t, num_res_blocks) = 2;
  TORCH_ARG(std::vector<int64_t>, attention_resolutions) = std::vector<int64_t>{16};
  TORCH_ARG(int64_t, num_heads) = 4;
  TORCH_ARG(int64_t, head_channels) = 0;  // > 0: heads = channels / head_channels (ADM-64)
  TORCH_ARG(double, dropout) = 0.1;
  TORCH_ARG(bool, scale_shift) = true;
  TORCH_ARG(int64_t, num_classes) = 0;  // 0: unconditional
  // eps = z + network (VDM's skip), so the initial prediction is z instead of 0.
  TORCH_ARG(bool, skip_input) = false;
};

class UNetImpl : public DenoiserNetImpl {
 public:
  explicit UNetImpl(UNetOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                        const torch::Tensor& labels) override;
  std::string describe() const override;
  const UNetOptions& options() const { return options_; }

 private:
  // One entry per block in order; kinds tell forward how to call each.
  enum class Kind { Res, ResAttn, Down, Up };
  UNetOptions options_;
  Conditioning cond_{nullptr};
  torch::nn::Conv2d conv_in_{nullptr};
  OutputHead head_{nullptr};
  torch::nn::ModuleList down_, mid_, up_;
  std::vector<Kind> down_kinds_, up_kinds_;
};
TORCH_MODULE(UNet);

// Throws std::invalid_argument naming the offending option when the resolution does not halve
// cleanly through the levels (e.g. 28 px with 4 levels): never a silent crop.
void check_divisible(int64_t resolution, size_t levels, const char* model);
// Throws std::invalid_argument naming the option (as model.<key>) that cannot build a network;
// the constructor calls it, and so does the config layer before anything starts.
void validate(const UNetOptions& options);

}  // namespace vdm
