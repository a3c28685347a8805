// GroupNorm, a per-image affine map and SiLU as one CPU kernel with its own backward, for
// NCHW and NHWC (channels-last) float32 tensors. LibTorch 1.13's CPU group_norm is 25x slower
// on channels-last input than on NCHW, which made NHWC convolutions a net loss; this makes them pay.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace vdm {

struct GroupNormSiluOptions {
  int64_t groups = 32;
  double eps = 1e-6;
  bool silu = true;  // false: GroupNorm and the affine map only
};

// y = silu(xhat * scale + shift), xhat = x normalised over each image's channel groups, scale
// and shift of shape [N, C] (GroupNorm's affine weights, or those times a FiLM scale-shift, so
// one pass does the norm, the conditioning and the activation). Differentiable in x, scale and
// shift. y has x's memory format. Requires group_norm_silu_supported(x).
torch::Tensor group_norm_silu(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift,
                              const GroupNormSiluOptions& options);

// A float32 4-d CPU tensor, contiguous in NCHW or channels-last: where the kernel runs. Other
// tensors (CUDA, bf16 under autocast) take LibTorch's group_norm and silu.
bool group_norm_silu_supported(const torch::Tensor& x);

// Tests only: the x86-64 baseline kernels even where AVX2 and FMA are present, so that CI on an
// AVX2 machine checks both sets.
void group_norm_silu_force_baseline(bool on);

}  // namespace vdm
