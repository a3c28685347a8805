// eps_hat at a noise level gamma (see eps_predictor.h); alpha and sigma come from gamma directly
// (sigma^2 = sigmoid(gamma)), as in ObjectiveImpl::diffuse_and_denoise.
#include "evaluation/eps_predictor.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace vdm {

EpsFn make_eps_fn(const Denoiser& denoiser, const Parameterisation& param, torch::Tensor labels,
                  double guidance, int64_t null_label, c10::ScalarType net_dtype) {
  if (!(guidance >= 0) || !std::isfinite(guidance))
    throw std::invalid_argument("sampler: guidance must be a finite number >= 0");
  const bool guided = labels.defined() && guidance > 0;
  if (guided && null_label < 0)
    throw std::invalid_argument("sampler: guidance needs the null class label (num_classes)");
  torch::Tensor y = labels;
  if (guided) y = torch::cat({labels, torch::full_like(labels, null_label)});
  return [&denoiser, &param, y, guided, guidance, net_dtype](const torch::Tensor& z, double gamma) {
    const int64_t B = z.size(0);
    const int64_t n = guided ? 2 * B : B;
    if (y.defined() && y.size(0) != n)
      throw std::invalid_argument("sampler: labels must be [" + std::to_string(B) + "]");
    std::vector<int64_t> bshape(z.dim(), 1);
    bshape[0] = n;
    const double a = std::sqrt(1.0 / (1.0 + std::exp(gamma))), s = std::sqrt(1.0 / (1.0 + std::exp(-gamma)));
    const auto zz = guided ? torch::cat({z, z}) : z;
    auto c_noise = noise_conditioning(torch::full({n}, gamma, z.options().dtype(torch::kFloat64)), net_dtype);
    auto eps = predict_eps(denoiser, param, zz, torch::full(bshape, a, z.options()), torch::full(bshape, s, z.options()),
                           c_noise, y, net_dtype);
    if (!guided) return eps;
    auto cond = eps.narrow(0, 0, B), uncond = eps.narrow(0, B, B);
    return (1.0 + guidance) * cond - guidance * uncond;
  };
}

}  // namespace vdm
