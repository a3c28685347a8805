// Residual, attention and resampling blocks (see unet_blocks.h).
#include "models/unet_blocks.h"

#include <torch/torch.h>

#include <cmath>

#include "models/attention.h"
#include "models/group_norm_silu.h"

namespace vdm {

namespace F = torch::nn::functional;

int64_t norm_groups(int64_t channels) {
  for (int64_t g = 32; g > 1; --g)
    if (channels % g == 0) return g;
  return 1;
}

torch::nn::GroupNorm group_norm(int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(norm_groups(channels), channels).eps(1e-6));
}

torch::Tensor normalize(torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  const auto dtype = norm->weight.scalar_type();
  return norm(x.scalar_type() == dtype ? x : x.to(dtype));
}

torch::Tensor norm_silu(torch::nn::GroupNorm& norm, const torch::Tensor& x, bool silu,
                        const torch::Tensor& film_scale, const torch::Tensor& film_shift) {
  const bool film = film_scale.defined();
  if (group_norm_silu_supported(x) && norm->weight.scalar_type() == torch::kFloat32 &&
      (!film || (film_scale.scalar_type() == torch::kFloat32 && film_shift.scalar_type() == torch::kFloat32))) {
    // The FiLM map folds into GroupNorm's: (w xhat + b)(1 + s) + t = w(1 + s) xhat + b(1 + s) + t.
    const auto sizes = std::vector<int64_t>{x.size(0), x.size(1)};
    auto scale = norm->weight.expand(sizes), shift = norm->bias.expand(sizes);
    if (film) {
      shift = torch::addcmul(film_shift, shift, 1 + film_scale);
      scale = scale * (1 + film_scale);
    }
    return group_norm_silu(x, scale, shift, {norm->options.num_groups(), norm->options.eps(), silu});
  }
  auto h = normalize(norm, x);
  if (film)  // one pass: shift + h (1 + scale)
    h = torch::addcmul(film_shift.unsqueeze(-1).unsqueeze(-1), h, 1 + film_scale.unsqueeze(-1).unsqueeze(-1));
  return silu ? torch::silu(h) : h;
}

void zero_parameters(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.zero_();
}

static torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

ResBlockImpl::ResBlockImpl(int64_t in, int64_t out, int64_t emb_dim, double dropout,
                           bool scale_shift_, int64_t h, int64_t w, FlopCounter& flops)
    : scale_shift(scale_shift_) {
  norm1 = register_module("norm1", group_norm(in));
  conv1 = register_module("conv1", conv3x3(in, out));
  emb_proj = register_module("emb_proj", torch::nn::Linear(emb_dim, scale_shift ? 2 * out : out));
  norm2 = register_module("norm2", group_norm(out));
  drop = register_module("drop", Dropout(dropout));
  conv2 = register_module("conv2", conv3x3(out, out));
  zero_parameters(*conv2);
  flops.conv(in, out, 3, h, w);
  flops.conv(out, out, 3, h, w);
  flops.linear(emb_dim, scale_shift ? 2 * out : out);
  if (in != out) {
    skip = register_module("skip", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
    flops.conv(in, out, 1, h, w);
  }
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  auto h = conv1(norm_silu(norm1, x));
  auto e = emb_proj(torch::silu(emb));  // [N, C] or [N, 2C]
  if (scale_shift) {
    auto parts = e.chunk(2, 1);
    h = norm_silu(norm2, h, true, parts[0], parts[1]);
  } else {
    h = norm_silu(norm2, h + e.unsqueeze(-1).unsqueeze(-1));
  }
  h = conv2(drop(h));
  return (skip ? skip(x) : x) + h;
}

AttentionBlockImpl::AttentionBlockImpl(int64_t channels, int64_t heads_, int64_t h, int64_t w,
                                       FlopCounter& flops)
    : heads(heads_) {
  TORCH_CHECK(heads > 0 && channels % heads == 0, "attention: ", channels,
              " channels do not split into ", heads, " heads");
  norm = register_module("norm", group_norm(channels));
  qkv = register_module("qkv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, 3 * channels, 1)));
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 1)));
  zero_parameters(*proj);
  const double n = double(h * w);
  flops.conv(channels, 3 * channels, 1, h, w);
  flops.conv(channels, channels, 1, h, w);
  flops.total += 2.0 * 2.0 * n * n * double(channels);  // QK^T and AV
}

torch::Tensor AttentionBlockImpl::forward(const torch::Tensor& x) {
  const auto B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), d = C / heads;
  auto q_k_v = qkv(norm_silu(norm, x, false)).reshape({B, 3, heads, d, H * W}).transpose(-1, -2).unbind(1);  // [B, heads, HW, d]
  auto out = dot_product_attention(q_k_v[0], q_k_v[1], q_k_v[2]).transpose(-1, -2).reshape({B, C, H, W});
  return x + proj(out);
}

OutputHeadImpl::OutputHeadImpl(int64_t channels, int64_t out_channels, int64_t h, int64_t w,
                               FlopCounter& flops) {
  norm = register_module("norm", group_norm(channels));
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out_channels, 3).padding(1)));
  zero_parameters(*conv);
  flops.conv(channels, out_channels, 3, h, w);
}

DownsampleImpl::DownsampleImpl(int64_t channels, int64_t h, int64_t w, FlopCounter& flops) {
  conv = register_module("conv", conv3x3(channels, channels, 2));
  flops.conv(channels, channels, 3, h / 2, w / 2);
}

UpsampleImpl::UpsampleImpl(int64_t channels, int64_t h, int64_t w, FlopCounter& flops) {
  conv = register_module("conv", conv3x3(channels, channels));
  flops.conv(channels, channels, 3, 2 * h, 2 * w);
}

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  return conv(F::interpolate(x, F::InterpolateFuncOptions()
                                    .scale_factor(std::vector<double>{2.0, 2.0})
                                    .mode(torch::kNearest)));
}

}  // namespace vdm
