// The built-in feature network as a torch::jit::Module: weights drawn here (He-normal, from a
// seeded generator) and registered as parameters, forward compiled from TorchScript source with
// define(). Training runs through the same compiled forward, so the saved file is the network
// that was trained, not a re-implementation of it.
#include "evaluation/feature_net.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "data/atomic_file.h"

namespace vdm {
namespace {

// Pixels to [-1, 1]; inputs of another size are area-averaged down (or bilinearly up) to the
// training resolution, so 28 px Fashion-MNIST or 32 px samples work with a 16 px net.
const char* kForward = R"TS(
def forward(self, x, return_features: bool = False):
    h = x.float() / 127.5 - 1.0
    r = self.resolution
    if h.size(2) != r or h.size(3) != r:
        if h.size(2) >= r and h.size(3) >= r:
            h = torch.adaptive_avg_pool2d(h, [r, r])
        else:
            h = torch.upsample_bilinear2d(h, [r, r], False)
    h = torch.relu(torch.conv2d(h, self.conv1_weight, self.conv1_bias, [1, 1], [1, 1]))
    h = torch.relu(torch.conv2d(h, self.conv2_weight, self.conv2_bias, [2, 2], [1, 1]))
    h = torch.relu(torch.conv2d(h, self.conv3_weight, self.conv3_bias, [2, 2], [1, 1]))
    h = torch.relu(torch.conv2d(h, self.conv4_weight, self.conv4_bias, [1, 1], [1, 1]))
    f = torch.mean(h, [2, 3])
    if return_features:
        return f
    return torch.linear(f, self.head_weight, self.head_bias)
)TS";

}  // namespace

struct FeatureNet::Impl {
  torch::jit::Module module{"vdm_feature_net"};
  std::vector<torch::Tensor> params;
};

FeatureNet::FeatureNet(const FeatureNetOptions& o) : impl_(std::make_unique<Impl>()), options_(o) {
  if (o.channels != 1 && o.channels != 3)
    throw std::invalid_argument("FeatureNet: channels must be 1 or 3, got " + std::to_string(o.channels));
  if (o.resolution < 8 || o.resolution > 256)
    throw std::invalid_argument("FeatureNet: resolution must be in 8..256, got " + std::to_string(o.resolution));
  if (o.num_classes < 2 || o.width < 1 || o.feature_dims < 1)
    throw std::invalid_argument("FeatureNet: need num_classes >= 2, width >= 1, feature_dims >= 1");
  auto gen = at::detail::createCPUGenerator(o.seed);
  auto& m = impl_->module;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double std) {
    auto t = std == 0 ? torch::zeros(shape, torch::kFloat32)
                      : torch::randn(shape, gen, torch::kFloat32) * std;
    t.set_requires_grad(true);
    m.register_parameter(name, t, /*is_buffer=*/false);
    impl_->params.push_back(t);
  };
  const std::vector<int64_t> widths{o.channels, o.width, 2 * o.width, 4 * o.width, o.feature_dims};
  for (int i = 1; i <= 4; ++i) {
    const int64_t in = widths[i - 1], out = widths[i];
    add("conv" + std::to_string(i) + "_weight", {out, in, 3, 3}, std::sqrt(2.0 / double(in * 9)));
    add("conv" + std::to_string(i) + "_bias", {out}, 0);
  }
  add("head_weight", {o.num_classes, o.feature_dims}, 1.0 / std::sqrt(double(o.feature_dims)));
  add("head_bias", {o.num_classes}, 0);
  auto attr = [&](const char* name, int64_t v) { m.register_attribute(name, c10::IntType::get(), v); };
  attr("in_channels", o.channels);
  attr("resolution", o.resolution);
  attr("feature_dims", o.feature_dims);
  attr("num_classes", o.num_classes);
  m.define(kForward);
}

FeatureNet::~FeatureNet() = default;
FeatureNet::FeatureNet(FeatureNet&&) noexcept = default;

torch::Tensor FeatureNet::logits(const torch::Tensor& images) {
  return impl_->module.get_method("forward")({images}, {{"return_features", false}}).toTensor();
}

torch::Tensor FeatureNet::features(const torch::Tensor& images) {
  return impl_->module.get_method("forward")({images}, {{"return_features", true}}).toTensor();
}

std::vector<torch::Tensor> FeatureNet::parameters() const { return impl_->params; }

void FeatureNet::save(const std::string& path) const {
  std::ostringstream bytes;
  impl_->module.save(bytes);
  write_file_atomically(path, bytes.str());
}

}  // namespace vdm
