// VDM's ancestral sampler (Kingma et al. 2021, eq. 32-33): T steps of the true posterior
// q(z_s | z_t, x = x_hat) from z_1 ~ N(0, I) down to z_0, then the decoder's mode as 8-bit
// pixels. Other samplers (DDIM, Heun) live beside it and share to_pixels().
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "objectives/objective.h"

namespace vdm {

struct AncestralSamplerOptions {
  int64_t steps = 256;  // T: t runs over i/T for i = T..0
};

// Draws shape[0] images of shape [N, C, H, W] and returns them as uint8 on the CPU.
// labels: int64 [N] or undefined (unconditional / null class). The network runs on
// tensor_options' device in its dtype; the schedule maths runs in float64. Noise comes from
// gen on gen's device (a CPU generator works for any device, at the price of a copy per step),
// so the same generator state gives the same images.
torch::Tensor sample_ancestral(const Denoiser& denoiser, NoiseScheduleImpl& schedule,
                               const Parameterisation& param, std::vector<int64_t> shape,
                               const torch::Tensor& labels, const AncestralSamplerOptions& options,
                               at::Generator& gen, torch::TensorOptions tensor_options);

// x in data space (about [-1, 1]) -> the nearest of 256 levels x_k = 2 (k + 1/2)/256 - 1, as
// uint8 k on the CPU. This is the mode of VDM's discretised decoder given x = z_0 / alpha_0.
torch::Tensor to_pixels(const torch::Tensor& x);

}  // namespace vdm
