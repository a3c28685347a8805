// The network and its objective (with the noise schedule) built from options exactly as the
// trainer builds them, and loaded back from a checkpoint (training or EMA weights): what
// `vdm sample` and `vdm eval` evaluate. Finding the checkpoint of a run directory lives here too.
#pragma once

#include <string>

#include "models/model_presets.h"
#include "objectives/objective.h"
#include "training/checkpoint_store.h"

namespace vdm {

struct Network {
  DenoiserNet model;
  Objective objective;  // its schedule and parameterisation
};

// On the CPU, freshly initialised (the caller seeds LibTorch's generator first).
Network build_network(const ModelOptions& model, const ScheduleOptions& schedule, const ObjectiveOptions& objective);

// run_or_checkpoint: a run directory (the newest checkpoint in RUN/checkpoints/ that verifies;
// corrupt newer ones are logged) or one checkpoint folder (RUN/checkpoints/step_XXXXXXXX).
// Throws std::runtime_error naming the path and what is missing or wrong.
LoadedCheckpoint find_checkpoint(const std::string& run_or_checkpoint);

// The network of the options with the checkpoint's weights: ema loads the exponential moving
// average (ema.pt) instead of the raw weights (model.pt). On the CPU (a checkpoint written on a
// GPU loads on a box without one), in eval mode, gradients off.
Network load_network(const LoadedCheckpoint& checkpoint, const ModelOptions& model, const ScheduleOptions& schedule,
                     const ObjectiveOptions& objective, bool ema);

}  // namespace vdm
