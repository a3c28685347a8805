// Embeddings of the conditioning signals: sinusoidal features of the noise level c_noise,
// a class embedding with an extra null row for classifier-free guidance, and VDM's Fourier
// features of the input (sin/cos of 2 pi 2^n z) that help the network resolve fine detail.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

namespace vdm {

// c_noise -> [B, dim] sinusoids at log-spaced frequencies from 1 to max_frequency (per unit
// c_noise), then a 2-layer SiLU MLP. c_noise = gamma/8 spans ~2.5 units over the VDM schedule,
// so frequencies up to ~1000 separate noise levels finely.
struct NoiseEmbeddingImpl : torch::nn::Module {
  NoiseEmbeddingImpl(int64_t features, int64_t dim, double max_frequency = 1000.0);
  torch::Tensor forward(const torch::Tensor& c_noise);
  int64_t features;
  torch::Tensor frequencies;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(NoiseEmbedding);

// Labels in [0, num_classes]; row num_classes is the learned null (unconditional) class.
struct ClassEmbeddingImpl : torch::nn::Module {
  ClassEmbeddingImpl(int64_t num_classes, int64_t dim);
  torch::Tensor forward(const torch::Tensor& labels);
  int64_t num_classes;
  torch::nn::Embedding table{nullptr};
};
TORCH_MODULE(ClassEmbedding);

// The embedding every block is conditioned on: the noise embedding plus, for class-conditional
// nets, the class embedding (undefined labels mean the null class).
struct ConditioningImpl : torch::nn::Module {
  ConditioningImpl(int64_t features, int64_t dim, int64_t num_classes);
  torch::Tensor forward(const torch::Tensor& c_noise, const torch::Tensor& labels);
  NoiseEmbedding noise{nullptr};
  ClassEmbedding classes{nullptr};
};
TORCH_MODULE(Conditioning);

// Replaces each label by the null class with probability p (classifier-free guidance
// training). Drawn from gen so that it is reproducible and independent of other streams.
torch::Tensor drop_labels(const torch::Tensor& labels, int64_t num_classes, double p,
                          at::Generator& gen);

// VDM's input Fourier features: for n in [n_min, n_max], sin and cos of 2 pi 2^n z per channel,
// concatenated to z along channels: C -> C (1 + 2 (n_max - n_min + 1)).
torch::Tensor fourier_features(const torch::Tensor& z, int64_t n_min, int64_t n_max);

}  // namespace vdm
