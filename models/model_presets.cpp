// Model presets and the architecture choice (see model_presets.h). Architectures follow the
// papers' descriptions: VDM CIFAR-10 (Kingma et al. 2021): 32 blocks of 128 channels, no
// downsampling, dropout 0.1; ADM ImageNet-64 (Dhariwal & Nichol 2021): base 192, mult 1,2,3,4,
// 3 blocks, attention at 32/16/8 px with 64-channel heads, dropout 0.1, scale-shift norm.
#include "models/model_presets.h"

#include <stdexcept>

namespace vdm {

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names{"tiny", "quickstart", "cifar10_vdm", "imagenet64_adm"};
  return names;
}

const std::vector<std::string>& model_arch_names() {
  static const std::vector<std::string> names{"adm", "vdm"};
  return names;
}

ModelOptions model_preset(const std::string& name, int64_t in_channels, int64_t resolution, int64_t num_classes) {
  const int64_t R = resolution;
  ModelOptions o;
  o.preset = name;
  if (name == "tiny") {
    o.adm.base_channels(8).channel_mult({1, 2}).num_res_blocks(1).attention_resolutions({R / 2}).num_heads(1).dropout(0.0);
  } else if (name == "quickstart") {
    o.adm.base_channels(32).channel_mult({1, 2, 2}).num_res_blocks(1).attention_resolutions({R / 4}).num_heads(2).dropout(0.1);
  } else if (name == "cifar10_vdm") {
    o.arch = "vdm";
    o.vdm.channels(128).num_blocks(32).dropout(0.1);
  } else if (name == "imagenet64_adm") {
    o.adm.base_channels(192).channel_mult({1, 2, 3, 4}).num_res_blocks(3).attention_resolutions({R / 2, R / 4, R / 8})
        .head_channels(64).dropout(0.1);
  } else {
    throw std::invalid_argument("unknown model preset '" + name +
                                "' (choose tiny, quickstart, cifar10_vdm or imagenet64_adm)");
  }
  // The other architecture starts from the same width and dropout, so `model.arch=` on a preset
  // swaps the network and keeps its size class.
  if (o.arch == "adm")
    o.vdm.channels(o.adm.base_channels()).dropout(o.adm.dropout());
  else
    o.adm.base_channels(o.vdm.channels()).dropout(o.vdm.dropout());
  set_data_shape(o, in_channels, resolution, num_classes);
  return o;
}

void set_data_shape(ModelOptions& o, int64_t in_channels, int64_t resolution, int64_t num_classes) {
  o.adm.in_channels(in_channels).resolution(resolution).num_classes(num_classes);
  o.vdm.in_channels(in_channels).resolution(resolution).num_classes(num_classes);
}

int64_t num_classes(const ModelOptions& o) { return o.arch == "vdm" ? o.vdm.num_classes() : o.adm.num_classes(); }

void validate(const ModelOptions& o) {
  if (o.arch == "adm") return validate(o.adm);
  if (o.arch == "vdm") return validate(o.vdm);
  throw std::invalid_argument("model.arch: unknown architecture '" + o.arch + "' (choose adm or vdm)");
}

DenoiserNet make_model(const ModelOptions& o) {
  validate(o);
  if (o.arch == "vdm") return std::make_shared<VdmUNetImpl>(o.vdm);
  return std::make_shared<UNetImpl>(o.adm);
}

}  // namespace vdm
