// Scaled dot-product attention (see attention.h).
#include "models/attention.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

namespace vdm {

torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return torch::matmul(torch::softmax(torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(q.size(-1))), -1), v);
}

#if TORCH_VERSION_MAJOR >= 2
bool has_fused_attention() { return true; }

torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  // The default scale is 1/sqrt(d), as in reference_attention. The fused GPU kernels (flash,
  // memory-efficient) want the head dimension contiguous, which the U-Net's transposed views of
  // its qkv projection are not.
  return at::scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous());
}
#else
bool has_fused_attention() { return false; }

torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return reference_attention(q, k, v);
}
#endif

}  // namespace vdm
