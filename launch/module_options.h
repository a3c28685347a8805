// Maps a validated RunConfig onto the plain options structs of the other modules, so that
// models/, objectives/ and the rest never see YAML.
#pragma once

#include "launch/config.h"
#include "data/dataset.h"
#include "models/model_presets.h"
#include "training/evaluator.h"

namespace vdm {

// The data's channel count as the model must see it (idx: grayscale; image folders: RGB).
int64_t data_channels(const DataConfig& data);
ModelOptions model_options(const RunConfig& cfg);
// data.split (training) or data.eval_split (held out).
DataOptions data_options(const RunConfig& cfg, bool held_out);
// The eval: section, plus the seed, run directory and data splits it needs.
EvaluatorOptions evaluator_options(const RunConfig& cfg, const std::string& run_dir);

}  // namespace vdm
