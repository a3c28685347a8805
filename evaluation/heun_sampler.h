// EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2) on the VP model seen as a VE
// process: x = z / alpha with noise level sigma = exp(gamma / 2), denoiser D(x; sigma) =
// x - sigma eps_hat(alpha x, gamma = 2 log sigma), Karras noise levels, optional churn.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <limits>

#include "evaluation/eps_predictor.h"
#include "evaluation/sample_noise.h"

namespace vdm {

struct HeunOptions {
  int64_t steps = 18;       // N noise levels (karras_sigmas), N steps: N - 1 Heun + a last Euler
                            // step to sigma = 0; 2N - 1 network evaluations
  double sigma_min = 0.002;  // VE noise levels; samplers take them from the schedule's range
  double sigma_max = 80.0;
  double rho = 7.0;
  double s_churn = 0.0;     // EDM's S_churn (0: the deterministic sampler, Algorithm 1)
  double s_tmin = 0.0, s_tmax = std::numeric_limits<double>::infinity(), s_noise = 1.0;
};

// z: z_1 ~ N(0, I) of the VP prior, so x starts as z / alpha(sigma_max) (variance
// 1 + sigma_max^2, the VP prior seen as VE; EDM's sigma_max^2 ignores the data's own variance).
// Churn noise comes from `noise`. Returns x at sigma = 0 in data space, unquantised, in z's dtype.
torch::Tensor heun_sample(const EpsFn& eps, const HeunOptions& options, torch::Tensor z,
                          const NoiseFn& noise);

}  // namespace vdm
