// The built-in FID feature network for small datasets (Fashion-MNIST, 16..64 px, 1 or 3
// channels), where Inception's ImageNet features say little: a small CNN classifier whose
// globally pooled last conv layer gives the features. It is a TorchScript module built in C++
// (parameters registered, forward defined from source), so it trains here and loads back
// through TorchScriptFeatureExtractor like Inception does.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vdm {

struct FeatureNetOptions {
  int64_t channels = 1;       // 1 or 3
  int64_t resolution = 16;    // the size it is trained at; forward resizes other inputs to it
  int64_t num_classes = 10;
  int64_t width = 16;         // conv widths: width, 2 width, 4 width, then feature_dims
  int64_t feature_dims = 128;
  uint64_t seed = 0;          // initial weights
};

// forward(x: uint8 [N, C, H, W], return_features: bool = False): logits [N, num_classes], or
// the features [N, feature_dims] (mean over space of the last ReLU conv layer). The module
// carries attributes in_channels, resolution, feature_dims and num_classes.
class FeatureNet {
 public:
  explicit FeatureNet(const FeatureNetOptions& options);
  ~FeatureNet();
  FeatureNet(FeatureNet&&) noexcept;
  // Both run with autograd unless the caller holds a NoGradGuard.
  torch::Tensor logits(const torch::Tensor& images);
  torch::Tensor features(const torch::Tensor& images);
  std::vector<torch::Tensor> parameters() const;
  const FeatureNetOptions& options() const { return options_; }
  // torch.jit.save format, written atomically; loadable by torch.jit.load in Python as well.
  void save(const std::string& path) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  FeatureNetOptions options_;
};

}  // namespace vdm
