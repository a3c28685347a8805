// The network a config describes (model:): an architecture (ADM's U-Net or VDM's) with its full
// options, and the named presets that give every option a default (model.preset): tiny (tests,
// < 100k parameters), quickstart (Fashion-MNIST on 2 CPU cores), cifar10_vdm, imagenet64_adm.
#pragma once

#include <string>
#include <vector>

#include "models/denoiser_net.h"
#include "models/unet.h"
#include "models/vdm_unet.h"

namespace vdm {

struct ModelOptions {
  std::string preset = "tiny";  // the named defaults these options started from
  std::string arch = "adm";     // adm: `adm` builds the network; vdm: `vdm` does
  UNetOptions adm;
  VdmUNetOptions vdm;
};

const std::vector<std::string>& model_preset_names();
const std::vector<std::string>& model_arch_names();  // adm, vdm

// A preset's options for images of in_channels x resolution^2 and num_classes classes (0:
// unconditional). Throws std::invalid_argument for an unknown name.
ModelOptions model_preset(const std::string& name, int64_t in_channels, int64_t resolution,
                          int64_t num_classes = 0);
// The data's shape and the class count, in both architectures' options.
void set_data_shape(ModelOptions& options, int64_t in_channels, int64_t resolution, int64_t num_classes);
int64_t num_classes(const ModelOptions& options);

// Throws std::invalid_argument naming the option when the network cannot be built (the
// resolution does not halve through the levels, a width the heads do not divide, ...).
void validate(const ModelOptions& options);
DenoiserNet make_model(const ModelOptions& options);

}  // namespace vdm
