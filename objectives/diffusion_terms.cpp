// Prior KL, discretised-decoder reconstruction, ancestral posterior coefficients, bits/dim.
#include "objectives/diffusion_terms.h"

#include <torch/torch.h>

#include <cmath>

namespace vdm {

torch::Tensor prior_kl(const torch::Tensor& x, const torch::Tensor& gamma_1) {
  auto x64 = x.to(torch::kFloat64);
  auto g = gamma_1.to(torch::kFloat64);
  auto alpha2 = torch::sigmoid(-g);
  // log sigma^2 = -softplus(-gamma) and sigma^2 - 1 = -alpha^2: no cancellation anywhere.
  return 0.5 * (alpha2 * (x64 * x64 - 1.0) + torch::softplus(-g));
}

torch::Tensor reconstruction_nll(const torch::Tensor& x, const torch::Tensor& z_0,
                                 const torch::Tensor& gamma_0, int64_t vocab_size) {
  auto g = gamma_0.to(torch::kFloat64);
  auto alpha = torch::sqrt(torch::sigmoid(-g));
  auto rescaled = (z_0.to(torch::kFloat64) / alpha).unsqueeze(-1);  // [..., 1]
  auto grid = (2.0 * (torch::arange(vocab_size, g.options()) + 0.5) / double(vocab_size)) - 1.0;
  auto inv_var = torch::exp(-g).unsqueeze(-1);
  auto logits = -0.5 * inv_var * torch::square(rescaled - grid);  // [..., V]
  auto k = torch::round((x.to(torch::kFloat64) + 1.0) * double(vocab_size) / 2.0 - 0.5)
               .clamp(0, vocab_size - 1)
               .to(torch::kLong)
               .unsqueeze(-1);
  return torch::logsumexp(logits, -1) - logits.gather(-1, k).squeeze(-1);
}

AncestralCoefficients ancestral_coefficients(double gamma_s, double gamma_t) {
  auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  const double alpha_s = std::sqrt(sigmoid(-gamma_s)), alpha_t = std::sqrt(sigmoid(-gamma_t));
  const double sigma_t = std::sqrt(sigmoid(gamma_t)), sigma2_s = sigmoid(gamma_s);
  const double c = -std::expm1(gamma_s - gamma_t);
  return {alpha_s / alpha_t, alpha_s / alpha_t * sigma_t * c, std::sqrt(sigma2_s * c)};
}

double bpd_per_nat(int64_t dims) { return 1.0 / (double(dims) * std::log(2.0)); }

torch::Tensor encode_pixels(const torch::Tensor& images, int64_t vocab_size) {
  return 2.0 * (images.to(torch::kFloat32) + 0.5) / double(vocab_size) - 1.0;
}

}  // namespace vdm
