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

// gamma(i / T) for i = 0..T, in float64 on the host.
std::vector<double> gamma_grid(NoiseScheduleImpl& schedule, int64_t T) {
  torch::NoGradGuard no_grad;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(schedule_device(schedule));
  auto t = torch::arange(T + 1, f64) / double(T);
  auto g = schedule.gamma(t).detach().to(torch::kCPU).contiguous();
  return std::vector<double>(g.data_ptr<double>(), g.data_ptr<double>() + g.numel());
}

}  // namespace

torch::Tensor to_pixels(const torch::Tensor& x) {
  auto k = torch::round((x.to(torch::kFloat64).clamp(-1.0, 1.0) + 1.0) * 128.0 - 0.5);
  return k.clamp(0, 255).to(torch::kUInt8).to(torch::kCPU);
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
  const auto net_options = z_options.dtype(net_dtype);
  const auto f64 = z_options.dtype(torch::kFloat64);
  const auto noise_options = z_options.device(gen.device());
  const auto y = labels.defined() ? labels.to(device, torch::kLong) : labels;
  const std::vector<double> gamma = gamma_grid(schedule, T);

  auto noise = [&]() { return at::randn(shape, gen, noise_options).to(device); };
  auto z = noise();
  const std::vector<int64_t> bshape{N, 1, 1, 1};
  for (int64_t i = T; i >= 1; --i) {
    const double g_t = gamma[i], g_s = gamma[i - 1];
    // As in ObjectiveImpl::diffuse_and_denoise: alpha, sigma from gamma (no 1 - alpha^2), cast
    // to the network dtype, c_noise from the float64 gamma.
    auto alpha = torch::full(bshape, std::sqrt(1.0 / (1.0 + std::exp(g_t))), net_options);
    auto sigma = torch::full(bshape, std::sqrt(1.0 / (1.0 + std::exp(-g_t))), net_options);
    auto zn = z.to(net_dtype);
    auto c_noise = noise_conditioning(torch::full({N}, g_t, f64), net_dtype);
    auto out = denoiser(param.network_input(zn, alpha, sigma), c_noise, y);
    if (out.sizes() != zn.sizes())
      throw std::runtime_error("ancestral sampler: the denoiser returned shape " +
                               c10::str(out.sizes()) + " for input " + c10::str(zn.sizes()));
    auto eps_hat = param.to_eps(out, zn, alpha, sigma).to(z_dtype);
    const auto c = ancestral_coefficients(g_s, g_t);
    z = c.c_z * z - c.c_eps * eps_hat;
    // The last step lands on z_0's posterior mean: x is decoded from it, not sampled.
    if (i > 1) z = z + c.noise_std * noise();
  }
  const double alpha_0 = std::sqrt(1.0 / (1.0 + std::exp(gamma[0])));
  return to_pixels(z / alpha_0);
}

}  // namespace vdm
