// Named model presets that configs refer to (model.preset): tiny (tests, < 100k parameters),
// quickstart (Fashion-MNIST on 2 CPU cores), cifar10_vdm (the VDM paper's CIFAR-10 net) and
// imagenet64_adm (ADM's ImageNet-64 net), sized to the data's channels and resolution.
#pragma once

#include <string>
#include <vector>

#include "models/denoiser_net.h"

namespace vdm {

struct ModelOptions {
  std::string preset = "tiny";
  int64_t in_channels = 3;
  int64_t resolution = 32;
  int64_t num_classes = 0;   // 0: unconditional
  int64_t channels = 0;      // > 0 overrides the preset's base width
  double dropout = -1.0;     // >= 0 overrides the preset's dropout
};

const std::vector<std::string>& model_preset_names();
DenoiserNet make_model(const ModelOptions& options);

}  // namespace vdm
