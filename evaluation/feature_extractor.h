// The feature network behind FID: an interface from uint8 images to feature vectors, and its
// TorchScript implementation (NVlabs' inception-2015-12-05.pt, a net from `vdm fid-features
// train`, or any TorchScript module whose forward takes (x, return_features=True)).
#pragma once

#include <c10/core/Device.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace vdm {

class FeatureExtractor {
 public:
  virtual ~FeatureExtractor() = default;
  // images: uint8 [N, C, H, W] in [0, 255] on any device, C = 1 or 3 (converted to
  // input_channels() here). Returns float [N, dims()] on the extractor's device, without grad.
  virtual torch::Tensor features(const torch::Tensor& images) = 0;
  // The feature dimension (2048 for Inception); may run the network once to find out.
  virtual int64_t dims() = 0;
  // The channels the network wants (1 or 3): what image folders should be decoded to.
  virtual int64_t input_channels() const = 0;
  // For messages: "inception-2015-12-05.pt (2048-d features)".
  virtual std::string describe() = 0;
};
using FeatureExtractorPtr = std::shared_ptr<FeatureExtractor>;

// A file that is missing or not a usable TorchScript feature module; what() says which and why.
struct FeatureExtractorError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TorchScriptFeatureOptions {
  c10::Device device = c10::kCPU;
  // Side of the zero images that dims() runs through a module that does not declare its
  // feature size (Inception resizes any input to 299 itself).
  int64_t probe_resolution = 299;
};

// Loads with torch::jit::load and calls forward(x, return_features=True) when forward has that
// argument, else forward(x). Module attributes it honours when present (the built-in feature
// net sets them): in_channels (else 3, as Inception: gray input is repeated to RGB),
// feature_dims, resolution (the probe size). Throws FeatureExtractorError.
class TorchScriptFeatureExtractor : public FeatureExtractor {
 public:
  explicit TorchScriptFeatureExtractor(const std::string& path, TorchScriptFeatureOptions options = {});
  ~TorchScriptFeatureExtractor() override;
  torch::Tensor features(const torch::Tensor& images) override;
  int64_t dims() override;
  int64_t input_channels() const override { return in_channels_; }
  std::string describe() override;
  // Moves the module (for loading on the CPU first, to report a bad file before MPI starts).
  void to(c10::Device device);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  TorchScriptFeatureOptions options_;
  int64_t in_channels_ = 3, dims_ = 0, probe_resolution_ = 299;
};

inline FeatureExtractorPtr load_feature_extractor(const std::string& path,
                                                  TorchScriptFeatureOptions options = {}) {
  return std::make_shared<TorchScriptFeatureExtractor>(path, options);
}

// images as the network wants them: uint8 [N, channels, H, W]. Gray to RGB repeats the
// channel (as EDM and pytorch-fid do); RGB to gray takes the ITU-R 601 luma.
torch::Tensor convert_channels(const torch::Tensor& images, int64_t channels);

}  // namespace vdm
