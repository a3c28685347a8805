// VDM ancestral sampling: z_s = c_z z_t - c_eps eps_hat + noise_std xi on the grid t = i/T,
// the network called exactly as the objectives call it, and the decoder's mode at t = 0.
#include "evaluation/ancestral_sampler.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "objectives/diffusion_terms.h"

namespace vdm {
namespace {

// The device the schedule's own tensors live on (a learned schedule may have been moved with
// the model); parameter-free schedules compute anywhere, so the CPU.
torch::Device schedule_device(NoiseScheduleImpl& schedule) {
  for (const auto& p : schedule.parameters()) return p.device();
  for (const auto& b : schedule.buffers()) return b.device();
  return torch::kCPU;
}

}  // namespace

std::vector<double> gamma_grid(NoiseScheduleImpl& schedule, int64_t T) {
  torch::NoGradGuard no_grad;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(schedule_device(schedule));
  auto t = torch::arange(T + 1, f64) / double(T);
  auto g = schedule.gamma(t).detach().to(torch::kCPU).contiguous();
  return std::vector<double>(g.data_ptr<double>(), g.data_ptr<double>() + g.numel());
}

torch::Tensor to_pixels(const torch::Tensor& x) {
  auto k = torch::round((x.to(torch::kFloat64).clamp(-1.0, 1.0) + 1.0) * 128.0 - 0.5);
  return k.clamp(0, 255).to(torch::kUInt8).to(torch::kCPU);
}

torch::Tensor ancestral_sample(const EpsFn& eps, const std::vector<double>& gamma, torch::Tensor z,
                               const NoiseFn& noise) {
  torch::NoGradGuard no_grad;
  const int64_t T = int64_t(gamma.size()) - 1;
  if (T < 1) throw std::invalid_argument("ancestral sampler: steps must be >= 1");
  for (int64_t i = T; i >= 1; --i) {
    const auto c = ancestral_coefficients(gamma[i - 1], gamma[i]);
    z = c.c_z * z - c.c_eps * eps(z, gamma[i]);
    if (i > 1) z = z + c.noise_std * noise();
  }
  return z / std::sqrt(1.0 / (1.0 + std::exp(gamma[0])));
}

torch::Tensor sample_ancestral(const Denoiser& denoiser, NoiseScheduleImpl& schedule,
                               const Parameterisation& param, std::vector<int64_t> shape,
                               const torch::Tensor& labels, const AncestralSamplerOptions& options,
                               at::Generator& gen, torch::TensorOptions tensor_options) {
  const int64_t T = options.steps;
  if (T < 1) throw std::invalid_argument("ancestral sampler: steps must be >= 1");
  if (shape.size() != 4 || shape[0] < 1)
    throw std::invalid_argument("ancestral sampler: shape must be [N, C, H, W] with N >= 1");
  const int64_t N = shape[0];
  if (labels.defined() && (labels.dim() != 1 || labels.size(0) != N))
    throw std::invalid_argument("ancestral sampler: labels must be [N]");
  torch::NoGradGuard no_grad;

  const auto device = tensor_options.device();
  const auto net_dtype = c10::typeMetaToScalarType(tensor_options.dtype());
  // z accumulates T small updates: keep it in at least float32 even for a bf16/fp16 network.
  const auto z_dtype = c10::promoteTypes(net_dtype, torch::kFloat32);
  const auto z_options = torch::TensorOptions().dtype(z_dtype).device(device);
  const auto noise_options = z_options.device(gen.device());
  const auto y = labels.defined() ? labels.to(device, torch::kLong) : labels;

  NoiseFn noise = [&]() { return at::randn(shape, gen, noise_options).to(device); };
  auto z = noise();
  auto x = ancestral_sample(make_eps_fn(denoiser, param, y, 0.0, -1, net_dtype), gamma_grid(schedule, T),
                            z, noise);
  return to_pixels(x);
}

}  // namespace vdm
