// TorchScript feature extractor: torch::jit::load, a look at forward's schema to decide whether
// return_features is passed, and c10::Errors turned into messages that say what the file
// should be. Inference runs under NoGradGuard in eval mode.
#include "evaluation/feature_extractor.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>

namespace vdm {
namespace {

// c10::Error's what() carries a C++ backtrace; users get the first line only.
std::string first_line(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  const size_t nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

}  // namespace

struct TorchScriptFeatureExtractor::Impl {
  torch::jit::Module module;
  bool takes_return_features = false;
};

torch::Tensor convert_channels(const torch::Tensor& images, int64_t channels) {
  if (images.dim() != 4 || images.scalar_type() != torch::kUInt8)
    throw std::invalid_argument("feature extractor: images must be uint8 [N, C, H, W]");
  const int64_t c = images.size(1);
  if (c == channels) return images;
  if (c == 1 && channels == 3) return images.expand({-1, 3, -1, -1}).contiguous();
  if (c == 3 && channels == 1) {
    const auto w = torch::tensor({0.299, 0.587, 0.114}, images.options().dtype(torch::kFloat32)).view({1, 3, 1, 1});
    return (images.to(torch::kFloat32) * w).sum(1, true).round().clamp(0, 255).to(torch::kUInt8);
  }
  throw std::invalid_argument("feature extractor: images have " + std::to_string(c) +
                              " channels; the network takes " + std::to_string(channels) +
                              " (only 1 <-> 3 is converted)");
}

TorchScriptFeatureExtractor::TorchScriptFeatureExtractor(const std::string& path,
                                                         TorchScriptFeatureOptions options)
    : impl_(std::make_unique<Impl>()), path_(path), options_(options) {
  const char* expected = "a TorchScript feature module is expected (torch.jit.save output, e.g. "
                         "NVlabs' inception-2015-12-05.pt, or a file written by `vdm fid-features "
                         "train`)";
  if (!std::filesystem::is_regular_file(path))
    throw FeatureExtractorError("feature network " + path + " does not exist; " + expected);
  try {
    impl_->module = torch::jit::load(path, options.device);
  } catch (const c10::Error& e) {
    throw FeatureExtractorError("feature network " + path + " is not a TorchScript module (" +
                                first_line(e) + "); " + expected);
  }
  impl_->module.eval();
  const auto forward = impl_->module.find_method("forward");
  if (!forward)
    throw FeatureExtractorError("feature network " + path + " has no forward method; " + expected);
  for (const auto& arg : forward->function().getSchema().arguments())
    if (arg.name() == "return_features") impl_->takes_return_features = true;
  auto int_attr = [&](const char* name, int64_t fallback) {
    if (!impl_->module.hasattr(name)) return fallback;
    const auto v = impl_->module.attr(name);
    return v.isInt() ? v.toInt() : fallback;
  };
  in_channels_ = int_attr("in_channels", 3);
  dims_ = int_attr("feature_dims", 0);
  probe_resolution_ = int_attr("resolution", options.probe_resolution);
  if (in_channels_ != 1 && in_channels_ != 3)
    throw FeatureExtractorError("feature network " + path + ": attribute in_channels is " +
                                std::to_string(in_channels_) + "; 1 or 3 are supported");
}

TorchScriptFeatureExtractor::~TorchScriptFeatureExtractor() = default;

torch::Tensor TorchScriptFeatureExtractor::features(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  auto x = convert_channels(images, in_channels_).to(options_.device);
  std::vector<c10::IValue> args{x};
  torch::jit::Kwargs kwargs;
  if (impl_->takes_return_features) kwargs["return_features"] = true;
  c10::IValue out;
  try {
    out = impl_->module.get_method("forward")(args, kwargs);
  } catch (const c10::Error& e) {
    throw FeatureExtractorError("feature network " + path_ + " failed on images of shape [" +
                                std::to_string(x.size(0)) + ", " + std::to_string(x.size(1)) + ", " +
                                std::to_string(x.size(2)) + ", " + std::to_string(x.size(3)) +
                                "]: " + first_line(e));
  }
  if (!out.isTensor())
    throw FeatureExtractorError("feature network " + path_ + ": forward must return one tensor of "
                                "features [N, d], it returned " + out.tagKind());
  auto f = out.toTensor().detach();
  if (f.dim() < 2 || f.size(0) != x.size(0))
    throw FeatureExtractorError("feature network " + path_ + ": forward returned shape " +
                                c10::str(f.sizes()) + " for " + std::to_string(x.size(0)) +
                                " images; features must be [N, d]");
  f = f.flatten(1);
  if (dims_ == 0) dims_ = f.size(1);
  if (f.size(1) != dims_)
    throw FeatureExtractorError("feature network " + path_ + ": returned " + std::to_string(f.size(1)) +
                                "-d features, earlier " + std::to_string(dims_) + "-d");
  return f;
}

int64_t TorchScriptFeatureExtractor::dims() {
  if (dims_ == 0) {
    const auto probe = torch::zeros({2, in_channels_, probe_resolution_, probe_resolution_}, torch::kUInt8);
    features(probe);
  }
  return dims_;
}

void TorchScriptFeatureExtractor::to(c10::Device device) {
  impl_->module.to(device);
  options_.device = device;
}

std::string TorchScriptFeatureExtractor::describe() {
  return std::filesystem::path(path_).filename().string() + " (" + std::to_string(dims()) + "-d features)";
}

}  // namespace vdm
