// The network as every sampler sees it: eps_hat(z, gamma) for a batch at one noise level,
// called exactly as the objectives call it (alpha, sigma and c_noise from the float64 gamma,
// the parameterisation's input scaling and conversion), with optional classifier-free guidance.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>

#include "objectives/objective.h"

namespace vdm {

// z: [B, ...] in the sampler's dtype; returns eps_hat in z's dtype and device.
using EpsFn = std::function<torch::Tensor(const torch::Tensor& z, double gamma)>;

// labels: int64 [B] on the network's device, or undefined (unconditional, or the null class of
// a class-conditional net). guidance w > 0 with labels: eps = (1 + w) eps(c) - w eps(null),
// null = null_label (models/embedding.h: num_classes), both halves in one network call;
// w = 0 (or no labels) is the plain conditional eps. net_dtype: the dtype the network runs in.
EpsFn make_eps_fn(const Denoiser& denoiser, const Parameterisation& param, torch::Tensor labels,
                  double guidance, int64_t null_label, c10::ScalarType net_dtype);

}  // namespace vdm
