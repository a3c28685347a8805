// A trained model loaded back from a run directory (its newest intact checkpoint) or from one
// checkpoint folder, with the run's config read from the checkpoint's config.yaml: the launch/
// half of training/trained_model.h (which finds, builds and loads), shared by `vdm sample` and
// `vdm eval`.
#pragma once

#include <cstdint>
#include <string>

#include "launch/config.h"
#include "models/denoiser_net.h"
#include "objectives/objective.h"

namespace vdm {

struct TrainedModel {
  RunConfig config;        // parsed from the checkpoint's config.yaml
  DenoiserNet model;       // on the CPU, in eval mode, gradients off
  Objective objective;     // the trained objective: its schedule and parameterisation
  int64_t step = 0;        // optimiser steps the checkpoint was taken after
  std::string checkpoint;  // the checkpoint folder read
  bool ema = false;        // the model holds the EMA weights
};

// run_or_checkpoint: a run directory (RUN/checkpoints/ holds the checkpoints; the newest one
// that verifies is used, corrupt newer ones are logged) or a checkpoint folder
// (RUN/checkpoints/step_XXXXXXXX). ema: load the exponential moving average of the weights
// (ema.pt) instead of the raw ones (model.pt). Throws std::runtime_error with a message naming
// the path and what is missing or wrong.
TrainedModel load_trained_model(const std::string& run_or_checkpoint, bool ema);

}  // namespace vdm
