// Model presets (see model_presets.h). Architectures follow the papers' descriptions:
// VDM CIFAR-10 (Kingma et al. 2021): 32 blocks of 128 channels, no downsampling, dropout 0.1;
// ADM ImageNet-64 (Dhariwal & Nichol 2021): base 192, mult 1,2,3,4, 3 blocks, attention at
// 32/16/8 px with 64-channel heads, dropout 0.1, scale-shift norm.
#include "models/model_presets.h"

#include <stdexcept>

#include "models/unet.h"
#include "models/vdm_unet.h"

namespace vdm {

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names{"tiny", "quickstart", "cifar10_vdm", "imagenet64_adm"};
  return names;
}

DenoiserNet make_model(const ModelOptions& o) {
  auto width = [&](int64_t preset) { return o.channels > 0 ? o.channels : preset; };
  auto drop = [&](double preset) { return o.dropout >= 0 ? o.dropout : preset; };
  const int64_t R = o.resolution;
  if (o.preset == "tiny")
    return std::make_shared<UNetImpl>(UNetOptions()
                                          .in_channels(o.in_channels)
                                          .resolution(R)
                                          .base_channels(width(8))
                                          .channel_mult({1, 2})
                                          .num_res_blocks(1)
                                          .attention_resolutions({R / 2})
                                          .num_heads(1)
                                          .dropout(drop(0.0))
                                          .num_classes(o.num_classes));
  if (o.preset == "quickstart")
    return std::make_shared<UNetImpl>(UNetOptions()
                                          .in_channels(o.in_channels)
                                          .resolution(R)
                                          .base_channels(width(32))
                                          .channel_mult({1, 2, 2})
                                          .num_res_blocks(1)
                                          .attention_resolutions({R / 4})
                                          .num_heads(2)
                                          .dropout(drop(0.1))
                                          .num_classes(o.num_classes));
  if (o.preset == "cifar10_vdm")
    return std::make_shared<VdmUNetImpl>(VdmUNetOptions()
                                             .in_channels(o.in_channels)
                                             .resolution(R)
                                             .channels(width(128))
                                             .num_blocks(32)
                                             .dropout(drop(0.1))
                                             .num_classes(o.num_classes));
  if (o.preset == "imagenet64_adm")
    return std::make_shared<UNetImpl>(UNetOptions()
                                          .in_channels(o.in_channels)
                                          .resolution(R)
                                          .base_channels(width(192))
                                          .channel_mult({1, 2, 3, 4})
                                          .num_res_blocks(3)
                                          .attention_resolutions({R / 2, R / 4, R / 8})
                                          .head_channels(64)
                                          .dropout(drop(0.1))
                                          .num_classes(o.num_classes));
  throw std::invalid_argument("unknown model preset '" + o.preset +
                              "' (choose tiny, quickstart, cifar10_vdm or imagenet64_adm)");
}

}  // namespace vdm
