// Sampler dispatch and batching (see sample_generator.h).
#include "evaluation/sample_generator.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "evaluation/ancestral_sampler.h"
#include "evaluation/ddim_sampler.h"
#include "evaluation/eps_predictor.h"
#include "evaluation/heun_sampler.h"
#include "evaluation/sample_noise.h"

namespace vdm {

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names{"ancestral", "ddim", "heun"};
  return names;
}

namespace {

void check_options(const SamplingOptions& o) {
  if (o.sampler != "ancestral" && o.sampler != "ddim" && o.sampler != "heun")
    throw std::invalid_argument("unknown sampler '" + o.sampler + "' (choose ancestral, ddim or heun)");
  if (o.steps < (o.sampler == "heun" ? 2 : 1))
    throw std::invalid_argument("sampler " + o.sampler + ": steps must be >= " +
                                (o.sampler == "heun" ? "2" : "1"));
  if (o.batch_size < 1) throw std::invalid_argument("sampler: batch_size must be >= 1");
}

// Runs `make` (uint8 or continuous) over the indices in batches and concatenates.
torch::Tensor run_batches(const Denoiser& denoiser, NoiseScheduleImpl& schedule, const Parameterisation& param,
                          const std::vector<int64_t>& sample_shape, const std::vector<int64_t>& indices,
                          const torch::Tensor& labels, const SamplingOptions& o, torch::TensorOptions topts,
                          bool quantise) {
  check_options(o);
  if (sample_shape.size() != 3) throw std::invalid_argument("sampler: sample_shape must be [C, H, W]");
  const int64_t N = int64_t(indices.size());
  if (labels.defined() && (labels.dim() != 1 || labels.size(0) != N))
    throw std::invalid_argument("sampler: labels must be [" + std::to_string(N) + "], one per index");
  torch::NoGradGuard no_grad;
  const auto device = topts.device();
  const auto net_dtype = c10::typeMetaToScalarType(topts.dtype());
  // z accumulates many small updates: keep it in at least float32 even for a bf16/fp16 network.
  const auto z_dtype = c10::promoteTypes(net_dtype, torch::kFloat32);
  const auto z_options = torch::TensorOptions().dtype(z_dtype).device(device);
  std::vector<int64_t> full{N};
  full.insert(full.end(), sample_shape.begin(), sample_shape.end());
  if (N == 0) return torch::zeros(full, quantise ? torch::TensorOptions(torch::kUInt8) : z_options.device(torch::kCPU));

  std::vector<double> gamma;
  if (o.sampler != "heun") gamma = gamma_grid(schedule, o.steps);
  HeunOptions heun;
  if (o.sampler == "heun") {
    heun.steps = o.steps;
    heun.sigma_min = o.sigma_min > 0 ? o.sigma_min : std::exp(0.5 * schedule.gamma_at_0());
    heun.sigma_max = o.sigma_max > 0 ? o.sigma_max : std::exp(0.5 * schedule.gamma_at_1());
    heun.rho = o.rho;
    heun.s_churn = o.s_churn;
    heun.s_tmin = o.s_tmin;
    heun.s_tmax = o.s_tmax;
    heun.s_noise = o.s_noise;
  }
  const int64_t batches = (N + o.batch_size - 1) / o.batch_size;
  const int64_t per_batch = evaluations_per_batch(o);
  int64_t done = 0;

  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t lo = b * o.batch_size, n = std::min(o.batch_size, N - lo);
    const std::vector<int64_t> idx(indices.begin() + lo, indices.begin() + lo + n);
    torch::Tensor y;
    if (labels.defined()) y = labels.narrow(0, lo, n).to(device);
    EpsFn net = make_eps_fn(denoiser, param, y, o.guidance, o.null_label, net_dtype);
    EpsFn eps = net;
    if (o.progress)
      eps = [&](const torch::Tensor& z, double g) {
        auto e = net(z, g);
        o.progress(++done, batches * per_batch);
        return e;
      };
    SampleNoise noise(idx, o.seed, sample_shape, z_options);
    // Every sampler starts from z_1 ~ N(0, I), the first draw of each sample's stream.
    auto z = noise.next();
    torch::Tensor x;
    if (o.sampler == "ancestral") x = ancestral_sample(eps, gamma, z, noise.fn());
    else if (o.sampler == "ddim") x = ddim_sample(eps, gamma, z, o.eta, noise.fn());
    else x = heun_sample(eps, heun, z, noise.fn());
    out.push_back(quantise ? to_pixels(x) : x.to(torch::kCPU));
  }
  return torch::cat(out);
}

}  // namespace

int64_t evaluations_per_batch(const SamplingOptions& o) {
  return o.sampler == "heun" ? 2 * o.steps - 1 : o.steps;
}

torch::Tensor generate_samples(const Denoiser& denoiser, NoiseScheduleImpl& schedule, const Parameterisation& param,
                               const std::vector<int64_t>& sample_shape, const std::vector<int64_t>& sample_indices,
                               const torch::Tensor& labels, const SamplingOptions& options,
                               torch::TensorOptions tensor_options) {
  return run_batches(denoiser, schedule, param, sample_shape, sample_indices, labels, options, tensor_options, true);
}

torch::Tensor generate_samples_continuous(const Denoiser& denoiser, NoiseScheduleImpl& schedule,
                                          const Parameterisation& param, const std::vector<int64_t>& sample_shape,
                                          const std::vector<int64_t>& sample_indices, const torch::Tensor& labels,
                                          const SamplingOptions& options, torch::TensorOptions tensor_options) {
  return run_batches(denoiser, schedule, param, sample_shape, sample_indices, labels, options, tensor_options, false);
}

}  // namespace vdm
