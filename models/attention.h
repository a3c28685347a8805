// Scaled dot-product attention over [B, heads, L, d] tensors: LibTorch 2.x's fused kernel
// (flash / memory-efficient on GPUs, a fused CPU kernel) where it exists, matmul + softmax on 1.13.
#pragma once

#include <torch/types.h>

namespace vdm {

// softmax(q k^T / sqrt(d)) v for q, k, v of shape [B, heads, L, d].
torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// The same by matmul and softmax: the only path on LibTorch 1.13, and the reference the fused
// path is tested against.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// Whether dot_product_attention uses the fused kernel (LibTorch >= 2.0).
bool has_fused_attention();

}  // namespace vdm
