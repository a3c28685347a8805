// VDM's ancestral sampler (Kingma et al. 2021, eq. 32-33): T steps of the true posterior
// q(z_s | z_t, x = x_hat) from z_1 ~ N(0, I) down to z_0, then the decoder's mode as 8-bit
// pixels. DDIM and Heun live beside it (ddim_sampler.h, heun_sampler.h) and share to_pixels().
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "evaluation/eps_predictor.h"
#include "evaluation/sample_noise.h"
#include "objectives/objective.h"

namespace vdm {

struct AncestralSamplerOptions {
  int64_t steps = 256;  // T: t runs over i/T for i = T..0
};

// Draws shape[0] images of shape [N, C, H, W] and returns them as uint8 on the CPU.
// labels: int64 [N] or undefined (unconditional / null class). The network runs on
// tensor_options' device in its dtype; the schedule maths runs in float64. Noise comes from
// gen on gen's device (a CPU generator works for any device, at the price of a copy per step),
// so the same generator state gives the same images. (The batch shares one stream; for images
// that depend only on their index, use generate_samples in sample_generator.h.)
torch::Tensor sample_ancestral(const Denoiser& denoiser, NoiseScheduleImpl& schedule,
                               const Parameterisation& param, std::vector<int64_t> shape,
                               const torch::Tensor& labels, const AncestralSamplerOptions& options,
                               at::Generator& gen, torch::TensorOptions tensor_options);

// gamma(i / T) for i = 0..T, in float64 on the host: the grid of the T-step samplers.
std::vector<double> gamma_grid(NoiseScheduleImpl& schedule, int64_t T);

// The ancestral loop itself on a given grid (gamma[0] < ... < gamma[T]) from z_1 = z (which it
// may overwrite), drawing the noise of steps T..2 from `noise`. The last step lands on z_0's
// posterior mean, which is not sampled; returns x = z_0 / alpha_0 in data space, unquantised,
// in z's dtype.
torch::Tensor ancestral_sample(const EpsFn& eps, const std::vector<double>& gamma, torch::Tensor z,
                               const NoiseFn& noise);

// x in data space (about [-1, 1]) -> the nearest of 256 levels x_k = 2 (k + 1/2)/256 - 1, as
// uint8 k on the CPU. This is the mode of VDM's discretised decoder given x = z_0 / alpha_0.
torch::Tensor to_pixels(const torch::Tensor& x);

}  // namespace vdm
