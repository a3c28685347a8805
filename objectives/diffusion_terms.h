// The closed-form pieces of the VLB that do not involve the network: the prior KL at t=1,
// the discretised decoder's -log p(x | z_0), the Gaussian posterior q(z_s | z_t, x) used by
// the ancestral sampler, and the nats <-> bits/dim conversion.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace vdm {

// KL(q(z_1|x) || N(0, I)) per element, nats: 0.5 (alpha_1^2 (x^2 - 1) + softplus(-gamma_1)).
// gamma_1 broadcastable to x; computed in float64 and returned in float64.
torch::Tensor prior_kl(const torch::Tensor& x, const torch::Tensor& gamma_1);

// -log p(x | z_0) per element for VDM's decoder: a softmax over the vocab grid values
// x_k = 2(k + 1/2)/vocab - 1 with logits -(z_0/alpha_0 - x_k)^2 / (2 e^{gamma_0}).
// x must lie on the grid. float64 out.
torch::Tensor reconstruction_nll(const torch::Tensor& x, const torch::Tensor& z_0,
                                 const torch::Tensor& gamma_0, int64_t vocab_size = 256);

// z_s = c_z z_t - c_eps eps_hat + noise_std xi, for gamma_s < gamma_t (VDM eq. 32-33).
struct AncestralCoefficients {
  double c_z, c_eps, noise_std;
};
AncestralCoefficients ancestral_coefficients(double gamma_s, double gamma_t);

// 1 / (D ln 2): multiply nats per example by this to get bits per dimension.
double bpd_per_nat(int64_t dims);

// 8-bit pixel k in [0, 255] -> x = 2 (k + 1/2) / 256 - 1.
torch::Tensor encode_pixels(const torch::Tensor& uint8_images, int64_t vocab_size = 256);

}  // namespace vdm
