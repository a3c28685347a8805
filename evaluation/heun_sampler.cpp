// The Heun loop on VE noise levels; dx/dsigma = (x - D(x; sigma)) / sigma = eps_hat, so the
// network's eps prediction is the ODE's slope directly.
#include "evaluation/heun_sampler.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "evaluation/karras_sigmas.h"

namespace vdm {

torch::Tensor heun_sample(const EpsFn& eps, const HeunOptions& o, torch::Tensor z, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  if (o.steps < 2) throw std::invalid_argument("heun sampler: steps must be >= 2");
  if (!(o.s_churn >= 0) || !(o.s_noise >= 0))
    throw std::invalid_argument("heun sampler: s_churn and s_noise must be >= 0");
  std::vector<double> sigmas = karras_sigmas(o.steps, o.sigma_min, o.sigma_max, o.rho);
  sigmas.push_back(0.0);
  // The VE slope at sigma: eps_hat of the VP model at gamma = 2 log sigma, fed z = alpha x.
  auto slope = [&](const torch::Tensor& x, double sigma) {
    const double gamma = 2.0 * std::log(sigma);
    return eps(x / std::sqrt(1.0 + sigma * sigma), gamma);
  };
  const int64_t N = o.steps;
  const double churn = std::min(o.s_churn / double(N), std::sqrt(2.0) - 1.0);
  auto x = z * std::sqrt(1.0 + sigmas[0] * sigmas[0]);
  for (int64_t i = 0; i < N; ++i) {
    const double sigma = sigmas[i], next = sigmas[i + 1];
    double sigma_hat = sigma;
    if (churn > 0 && o.s_tmin <= sigma && sigma <= o.s_tmax) {
      sigma_hat = sigma * (1.0 + churn);
      x = x + std::sqrt(sigma_hat * sigma_hat - sigma * sigma) * o.s_noise * noise();
    }
    auto d = slope(x, sigma_hat);
    auto x_next = x + (next - sigma_hat) * d;
    // The last step, to sigma = 0, stays Euler: the slope is not defined there.
    if (next > 0) x_next = x + (next - sigma_hat) * 0.5 * (d + slope(x_next, next));
    x = x_next;
  }
  return x;
}

}  // namespace vdm
