// Maps a validated RunConfig onto the plain options structs of the other modules, so that
// models/, objectives/ and the rest never see YAML.
#pragma once

#include "launch/config.h"
#include "models/model_presets.h"

namespace vdm {

// The data's channel count as the model must see it (idx: grayscale; image folders: RGB).
int64_t data_channels(const DataConfig& data);
ModelOptions model_options(const RunConfig& cfg);

}  // namespace vdm
