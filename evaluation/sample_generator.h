// One entry point for sampling a trained model: picks the sampler (VDM ancestral, DDIM, EDM
// Heun), runs it in batches with per-sample noise streams (sample_noise.h), optional
// classifier-free guidance, and returns 8-bit images or the unquantised data-space samples.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "objectives/objective.h"

namespace vdm {

// The samplers generate_samples runs.
const std::vector<std::string>& sampler_names();

struct SamplingOptions {
  std::string sampler = "ancestral";  // ancestral | ddim | heun
  int64_t steps = 256;  // ancestral, ddim: T steps on t = i/T; heun: N noise levels (2N - 1 evals)
  double eta = 1.0;     // ddim: 0 deterministic, 1 = ancestral
  double guidance = 0.0;     // classifier-free w: eps = (1 + w) eps(c) - w eps(null); 0: off
  int64_t null_label = -1;   // the null class (the net's num_classes), needed when guidance > 0
  // heun (EDM Algorithm 2). sigma_min/max <= 0: exp(gamma/2) at the schedule's ends t = 0, 1.
  double s_churn = 0.0, s_tmin = 0.0, s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0, rho = 7.0;
  double sigma_min = 0.0, sigma_max = 0.0;
  uint64_t seed = 0;         // sample i's noise: a generator seeded with sample_seed(seed, i)
  int64_t batch_size = 64;   // consecutive entries of sample_indices per network batch
  // Called after every network evaluation with (done, total) over the whole call.
  std::function<void(int64_t done, int64_t total)> progress;
};

// Network evaluations per batch for these options (the unit of `progress`).
int64_t evaluations_per_batch(const SamplingOptions& options);

// sample_shape: [C, H, W]. sample_indices: the global indices of the samples to make (any
// order, may be empty); each image depends only on (seed, index), the model and the options,
// never on which other indices share the call or its batches (up to the network's rounding,
// which may differ with the batch's size). labels: int64 [sample_indices.size()] or undefined.
// The network runs on tensor_options' device in its dtype (z is kept in at least float32);
// schedule maths is float64. Returns uint8 [N, C, H, W] on the CPU.
torch::Tensor generate_samples(const Denoiser& denoiser, NoiseScheduleImpl& schedule,
                               const Parameterisation& param, const std::vector<int64_t>& sample_shape,
                               const std::vector<int64_t>& sample_indices, const torch::Tensor& labels,
                               const SamplingOptions& options, torch::TensorOptions tensor_options);

// As generate_samples, but the samples before quantisation: x = z_0 / alpha_0 (ancestral,
// ddim) or the Heun ODE's end point, in data space, in z's dtype on the CPU.
torch::Tensor generate_samples_continuous(const Denoiser& denoiser, NoiseScheduleImpl& schedule,
                                          const Parameterisation& param,
                                          const std::vector<int64_t>& sample_shape,
                                          const std::vector<int64_t>& sample_indices,
                                          const torch::Tensor& labels, const SamplingOptions& options,
                                          torch::TensorOptions tensor_options);

}  // namespace vdm
