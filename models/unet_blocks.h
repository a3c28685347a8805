// The building blocks shared by both U-Nets: a residual block conditioned on an embedding
// (FiLM scale-shift or additive), multi-head self-attention over pixels, and 2x down/upsampling.
// Each block adds its forward FLOPs per image to a counter while it is built.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/dropout.h"

namespace vdm {

// Analytic FLOPs (2 x multiply-adds) of one image's forward pass, summed while building.
struct FlopCounter {
  double total = 0;
  void conv(int64_t cin, int64_t cout, int64_t k, int64_t h, int64_t w) {
    total += 2.0 * double(cin) * double(cout) * double(k * k) * double(h * w);
  }
  void linear(int64_t in, int64_t out) { total += 2.0 * double(in) * double(out); }
};

// The largest group count <= 32 that divides the channels (GroupNorm(32) where it can be).
int64_t norm_groups(int64_t channels);
torch::nn::GroupNorm group_norm(int64_t channels);
// GroupNorm in the weights' dtype (float32) whatever the input's, as ADM's GroupNorm32: under bf16
// autocast the convolutions answer in bf16, which LibTorch 1.13's CPU group_norm refuses beside
// float32 weights, and a group's statistics want float32 anyway. The next convolution casts back.
torch::Tensor normalize(torch::nn::GroupNorm& norm, const torch::Tensor& x);
// The norm's output (times 1 + film_scale plus film_shift, [N, C], when given) through SiLU
// (when silu): one pass of vdm::group_norm_silu where it runs (float32 CPU, NCHW or NHWC),
// else normalize() and LibTorch's ops.
torch::Tensor norm_silu(torch::nn::GroupNorm& norm, const torch::Tensor& x, bool silu = true,
                        const torch::Tensor& film_scale = {}, const torch::Tensor& film_shift = {});

struct ResBlockImpl : torch::nn::Module {
  ResBlockImpl(int64_t in, int64_t out, int64_t emb_dim, double dropout, bool scale_shift,
               int64_t h, int64_t w, FlopCounter& flops);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);
  bool scale_shift;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
  torch::nn::Linear emb_proj{nullptr};
  Dropout drop{nullptr};
};
TORCH_MODULE(ResBlock);

struct AttentionBlockImpl : torch::nn::Module {
  AttentionBlockImpl(int64_t channels, int64_t heads, int64_t h, int64_t w, FlopCounter& flops);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t heads;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(AttentionBlock);

// Strided 3x3 convolution (learned downsampling, as ADM).
struct DownsampleImpl : torch::nn::Module {
  DownsampleImpl(int64_t channels, int64_t h, int64_t w, FlopCounter& flops);
  torch::Tensor forward(const torch::Tensor& x) { return conv(x); }
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest-neighbour 2x then a 3x3 convolution.
struct UpsampleImpl : torch::nn::Module {
  UpsampleImpl(int64_t channels, int64_t h, int64_t w, FlopCounter& flops);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// GroupNorm, SiLU and a zero-initialised 3x3 convolution to the image channels: the network
// starts as the zero map (or the identity with an input skip).
struct OutputHeadImpl : torch::nn::Module {
  OutputHeadImpl(int64_t channels, int64_t out_channels, int64_t h, int64_t w, FlopCounter& flops);
  torch::Tensor forward(const torch::Tensor& x) { return conv(norm_silu(norm, x)); }
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(OutputHead);

// Zeroes a module's parameters: the output layers that make each residual branch (and the
// network's head) start as the identity / zero map.
void zero_parameters(torch::nn::Module& module);

}  // namespace vdm
