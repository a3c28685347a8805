// DDIM (Song et al. 2021) in VDM notation on the T-step grid t = i/T:
// z_s = alpha_s x_hat + sqrt(sigma_s^2 - s^2) eps_hat + s xi with s^2 = eta^2 times the
// variance of the true posterior q(z_s | z_t, x). eta = 0 is the deterministic sampler,
// eta = 1 the ancestral one (the same update as ancestral_sampler.h).
#pragma once

#include <torch/types.h>

#include <vector>

#include "evaluation/eps_predictor.h"
#include "evaluation/sample_noise.h"

namespace vdm {

// z_s = c_z z_t - c_eps eps_hat + noise_std xi, for gamma_s < gamma_t and eta >= 0.
struct DdimCoefficients {
  double c_z, c_eps, noise_std;
};
DdimCoefficients ddim_coefficients(double gamma_s, double gamma_t, double eta);

// As ancestral_sample (same grid, same use of `noise`, no noise on the last step, returns
// z_0 / alpha_0 unquantised); noise is drawn only when eta > 0.
torch::Tensor ddim_sample(const EpsFn& eps, const std::vector<double>& gamma, torch::Tensor z,
                          double eta, const NoiseFn& noise);

}  // namespace vdm
