// Prior KL, discretised-decoder reconstruction, ancestral posterior coefficients, bits/dim.
#include "objectives/diffusion_terms.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace vdm {

torch::Tensor prior_kl(const torch::Tensor& x, const torch::Tensor& gamma_1) {
  auto x64 = x.to(torch::kFloat64);
  auto g = gamma_1.to(torch::kFloat64);
  auto alpha2 = torch::sigmoid(-g);
  // log sigma^2 = -softplus(-gamma) and sigma^2 - 1 = -alpha^2: no cancellation anywhere.
  return 0.5 * (alpha2 * (x64 * x64 - 1.0) + torch::softplus(-g));
}

// -log p(x_k | z_0) = logsumexp_j l_j - l_k with l_j = -(z_0/alpha_0 - x_j)^2 / (2 e^{gamma_0}). At the
// small gamma_0 of any useful schedule the Gaussian is a fraction of a grid step wide, so all but a
// few grid values lie hundreds of nats below the nearest one: the sum runs over a window of
// grid points around z_0/alpha_0 wide enough that what it leaves out is below e^-60 of the
// total (far under float64's rounding), which spares a [..., vocab] tensor per pixel. Wide
// Gaussians (large gamma_0) take the whole grid.
torch::Tensor reconstruction_nll(const torch::Tensor& x, const torch::Tensor& z_0,
                                 const torch::Tensor& gamma_0, int64_t vocab_size) {
  auto g = gamma_0.to(torch::kFloat64);
  auto alpha = torch::sqrt(torch::sigmoid(-g));
  auto rescaled = z_0.to(torch::kFloat64) / alpha;
  auto inv_var = torch::exp(-g);
  const double V = double(vocab_size), step = 2.0 / V;
  auto grid_index = [&](const torch::Tensor& v) {
    return torch::round((v + 1.0) * V / 2.0 - 0.5).clamp(0, vocab_size - 1);
  };
  auto value_of = [&](const torch::Tensor& index) { return (index + 0.5) * step - 1.0; };
  auto own = -0.5 * inv_var * torch::square(rescaled - value_of(grid_index(x.to(torch::kFloat64))));

  const double widest_std = std::exp(0.5 * g.max().item<double>());
  const int64_t half = int64_t(std::ceil(std::sqrt(120.0) * widest_std / step + 0.5)) + 1;
  torch::Tensor candidates;
  if (2 * half + 1 >= vocab_size) {
    candidates = torch::arange(vocab_size, g.options());  // the whole grid, broadcast
  } else {
    auto offsets = torch::arange(-half, half + 1, g.options());
    candidates = grid_index(rescaled).unsqueeze(-1) + offsets;  // [..., 2 half + 1]
  }
  auto inside = (candidates >= 0) & (candidates <= V - 1);
  auto logits = -0.5 * inv_var.unsqueeze(-1) * torch::square(rescaled.unsqueeze(-1) - value_of(candidates));
  logits = logits.masked_fill(~inside, -std::numeric_limits<double>::infinity());
  return torch::logsumexp(logits, -1) - own;
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
