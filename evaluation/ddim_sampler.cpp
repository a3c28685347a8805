// DDIM coefficients in a cancellation-free float64 form, and the sampling loop.
#include "evaluation/ddim_sampler.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace vdm {

DdimCoefficients ddim_coefficients(double gamma_s, double gamma_t, double eta) {
  auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  const double alpha_s = std::sqrt(sigmoid(-gamma_s)), alpha_t = std::sqrt(sigmoid(-gamma_t));
  const double sigma_t = std::sqrt(sigmoid(gamma_t)), sigma2_s = sigmoid(gamma_s);
  // c = 1 - SNR_t / SNR_s; the posterior variance is sigma_s^2 c.
  const double c = -std::expm1(gamma_s - gamma_t);
  const double e2 = eta * eta;
  // With x_hat = (z_t - sigma_t eps_hat) / alpha_t the eps_hat coefficient is
  // (alpha_s / alpha_t) sigma_t (1 - sqrt((1 - c)(1 - eta^2 c))); written as below it needs no
  // subtraction of nearly equal numbers, and eta = 1 gives VDM's c_eps = (alpha_s/alpha_t) sigma_t c.
  const double root = std::sqrt((1.0 - c) * std::max(0.0, 1.0 - e2 * c));
  const double c_eps = alpha_s / alpha_t * sigma_t * c * (1.0 + e2 * (1.0 - c)) / (1.0 + root);
  return {alpha_s / alpha_t, c_eps, eta * std::sqrt(sigma2_s * c)};
}

torch::Tensor ddim_sample(const EpsFn& eps, const std::vector<double>& gamma, torch::Tensor z,
                          double eta, const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  const int64_t T = int64_t(gamma.size()) - 1;
  if (T < 1) throw std::invalid_argument("ddim sampler: steps must be >= 1");
  if (!(eta >= 0) || eta > 1)
    throw std::invalid_argument("ddim sampler: eta must lie in [0, 1]");
  for (int64_t i = T; i >= 1; --i) {
    const auto c = ddim_coefficients(gamma[i - 1], gamma[i], eta);
    z = c.c_z * z - c.c_eps * eps(z, gamma[i]);
    // As the ancestral sampler: the last step ends on the mean, which the decoder reads.
    if (i > 1 && eta > 0) z = z + c.noise_std * noise();
  }
  return z / std::sqrt(1.0 / (1.0 + std::exp(gamma[0])));
}

}  // namespace vdm
