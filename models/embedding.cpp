// Noise-level, class and input Fourier embeddings (see embedding.h).
#include "models/embedding.h"

#include <torch/torch.h>

#include <cmath>

namespace vdm {

NoiseEmbeddingImpl::NoiseEmbeddingImpl(int64_t features_, int64_t dim, double max_frequency)
    : features(features_) {
  const int64_t half = features / 2;
  frequencies = register_buffer(
      "frequencies", torch::exp(torch::linspace(0.0, std::log(max_frequency), half, torch::kFloat32)));
  fc1 = register_module("fc1", torch::nn::Linear(2 * half, dim));
  fc2 = register_module("fc2", torch::nn::Linear(dim, dim));
}

torch::Tensor NoiseEmbeddingImpl::forward(const torch::Tensor& c_noise) {
  // The sinusoids' arguments reach ~1000: bf16 (a bf16 model's buffers) would blur
  // neighbouring noise levels, so they are formed in at least float32.
  const auto dtype = at::promote_types(c_noise.scalar_type(), torch::kFloat32);
  auto arg = c_noise.to(dtype).reshape({-1, 1}) * frequencies.to(dtype).unsqueeze(0);
  auto h = torch::cat({torch::sin(arg), torch::cos(arg)}, 1).to(fc1->weight.scalar_type());
  return fc2(torch::silu(fc1(h)));
}

ClassEmbeddingImpl::ClassEmbeddingImpl(int64_t num_classes_, int64_t dim) : num_classes(num_classes_) {
  table = register_module("table", torch::nn::Embedding(num_classes + 1, dim));
}

torch::Tensor ClassEmbeddingImpl::forward(const torch::Tensor& labels) {
  return table(labels.to(torch::kLong));
}

ConditioningImpl::ConditioningImpl(int64_t features, int64_t dim, int64_t num_classes) {
  noise = register_module("noise", NoiseEmbedding(features, dim));
  if (num_classes > 0) classes = register_module("classes", ClassEmbedding(num_classes, dim));
}

torch::Tensor ConditioningImpl::forward(const torch::Tensor& c_noise, const torch::Tensor& labels) {
  auto emb = noise(c_noise);
  if (!classes) return emb;
  auto l = labels.defined() ? labels
                            : torch::full({c_noise.size(0)}, classes->num_classes,
                                          torch::TensorOptions().dtype(torch::kLong).device(c_noise.device()));
  return emb + classes(l);
}

torch::Tensor drop_labels(const torch::Tensor& labels, int64_t num_classes, double p,
                          at::Generator& gen) {
  if (p <= 0) return labels;
  auto u = at::rand(labels.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat64).device(labels.device()));
  return torch::where(u < p, torch::full_like(labels, num_classes), labels);
}

torch::Tensor fourier_features(const torch::Tensor& z, int64_t n_min, int64_t n_max) {
  std::vector<torch::Tensor> parts{z};
  for (int64_t n = n_min; n <= n_max; ++n) {
    auto arg = z * (std::pow(2.0, double(n)) * 2.0 * M_PI);
    parts.push_back(torch::sin(arg));
    parts.push_back(torch::cos(arg));
  }
  return torch::cat(parts, 1);
}

}  // namespace vdm
