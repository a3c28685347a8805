// Exponential moving average of a model's parameters, with a fixed decay or k-diffusion's
// warmup (decay_t = 1 - (1 + t / inv_gamma)^-power, capped at `decay`), so early averages are
// not dominated by the random initialisation. The shadow weights are buffers of this module,
// so they are saved and loaded with it.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace vdm {

struct EmaOptions {
  double decay = 0.9999;      // the decay after warmup (and the cap during it)
  std::string warmup = "power";  // power | none
  double inv_gamma = 1.0;
  double power = 2.0 / 3.0;   // k-diffusion: 2/3 for short runs, 3/4 for long ones
  int64_t start_step = 0;     // before this the average just copies the model
};

class EmaImpl : public torch::nn::Module {
 public:
  EmaImpl(torch::nn::Module& model, EmaOptions options);
  // Folds the model's current parameters in; step = optimiser steps taken so far.
  void update(torch::nn::Module& model, int64_t step);
  double decay_at(int64_t step) const;
  // Copies the averaged weights into model (e.g. a second instance used for sampling).
  void copy_to(torch::nn::Module& model) const;
  // Exchanges the model's weights with the average: call twice to restore.
  void swap_with(torch::nn::Module& model);
  const EmaOptions& options() const { return options_; }
  // The averages, one per model parameter in the model's order; an optimiser that keeps them in
  // flat buffers (training/fused_optimizer.h) re-points them with set_data.
  const std::vector<torch::Tensor>& averages() const { return shadow_; }

 private:
  std::vector<torch::Tensor> shadow_;
  EmaOptions options_;
};
TORCH_MODULE(Ema);

}  // namespace vdm
