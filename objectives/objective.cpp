// The shared part of every objective (diffuse x to z_t, run the denoiser, get eps_hat) and
// the registry that makes objectives by name.
#include "objectives/objective.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "objectives/diffusion_terms.h"

namespace vdm {

ObjectiveImpl::ObjectiveImpl(ObjectiveOptions options, NoiseSchedule schedule)
    : options_(std::move(options)), schedule_(std::move(schedule)) {
  if (!schedule_) throw std::invalid_argument("objective: no noise schedule");
  if (options_.timesteps < 0) throw std::invalid_argument("objective: timesteps must be >= 0");
  register_module("schedule", schedule_);
  proposal_ = make_proposal(options_.proposal, schedule_, options_.timesteps);
  param_ = make_parameterisation(options_.parameterisation, options_.weighting.sigma_data);
}

ObjectiveImpl::Diffused ObjectiveImpl::diffuse_and_denoise(const Denoiser& denoiser,
                                                           const torch::Tensor& x,
                                                           const torch::Tensor& labels,
                                                           const torch::Tensor& gamma,
                                                           at::Generator& noise_gen) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  // alpha and sigma come from gamma directly (sigma^2 = sigmoid(gamma)): 1 - alpha^2 would
  // lose almost every digit at high SNR.
  auto alpha = torch::sqrt(torch::sigmoid(-gamma)).view(shape).to(x.scalar_type());
  auto sigma = torch::sqrt(torch::sigmoid(gamma)).view(shape).to(x.scalar_type());
  auto eps = draw_normal(x.sizes(), noise_gen, x.options());
  auto z = alpha * x + sigma * eps;
  return {eps, predict_eps(denoiser, *param_, z, alpha, sigma, noise_conditioning(gamma, x.scalar_type()), labels,
                           x.scalar_type())};
}

torch::Tensor predict_eps(const Denoiser& denoiser, const Parameterisation& param, const torch::Tensor& z,
                          const torch::Tensor& alpha, const torch::Tensor& sigma, const torch::Tensor& c_noise,
                          const torch::Tensor& labels, c10::ScalarType net_dtype) {
  const bool cast = z.scalar_type() != net_dtype;
  const auto input = cast ? param.network_input(z.to(net_dtype), alpha.to(net_dtype), sigma.to(net_dtype))
                          : param.network_input(z, alpha, sigma);
  const auto out = denoiser(input, c_noise, labels);
  if (out.sizes() != z.sizes())
    throw std::runtime_error("the denoiser returned shape " + c10::str(out.sizes()) + " for input " +
                             c10::str(z.sizes()));
  return param.to_eps(out.to(z.scalar_type()), z, alpha, sigma);
}

// Kingma & Gao (2023, Sec. 4): write L(lambda; x) for the diffusion loss over the levels from
// lambda_min up to lambda, which with the prior KL at lambda_min is the negative ELBO of x
// observed through z_lambda (data augmented with noise). For w non-increasing in lambda, integrating
// by parts gives L_w(x) = 0.5 integral of w ||eps_hat - eps||^2 = w(lambda_max) L(lambda_max; x) +
// integral of -w'(lambda) L(lambda; x) d lambda: a mixture of those bounds with total mass
// w(lambda_min). Divided by that mass, and with the prior added, it is an average of ELBOs of
// noise-augmented data, on the same scale for every weighting; for w = 1 it is the VLB less the
// reconstruction term.
void ObjectiveImpl::add_augmented_elbo(LossOutput& out, const torch::Tensor& x) {
  if (!monotone() || options_.timesteps > 0) return;  // the identity is about the continuous integral
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const double lambda_min = proposal_->range().first;
  const double w_min = weighting(torch::full({1}, lambda_min, f64)).item<double>();
  if (!(w_min > 0) || !std::isfinite(w_min)) return;
  auto prior = prior_kl(x.detach(), torch::full({1}, -lambda_min, f64.device(x.device()))).flatten(1).sum(1);
  out.terms["loss_normalised"] = out.loss.detach().to(torch::kFloat64) / w_min;
  out.terms["augmented_elbo_bpd"] =
      (out.per_sample.detach().to(torch::kFloat64).mean() / w_min + prior.mean()) * out.bpd_per_nat;
}

void ObjectiveImpl::set_proposal(ProposalPtr proposal) {
  if (options_.timesteps > 0 && proposal->name() != "schedule")
    throw std::invalid_argument("objective: proposal '" + proposal->name() + "' needs continuous time (timesteps=0)");
  proposal_ = std::move(proposal);
}

LambdaSample ObjectiveImpl::draw_levels(const torch::Tensor& x, at::Generator& levels_gen,
                                       const ProposalContext& ctx) {
  if (levels_gen.device().type() != c10::DeviceType::CPU)
    throw std::invalid_argument("objective: noise levels need a CPU generator, got one on " +
                                levels_gen.device().str());
  ProposalContext on_device = ctx;
  on_device.device = x.device();
  return proposal_->sample(x.size(0), levels_gen, on_device);
}

torch::Tensor draw_normal(at::IntArrayRef sizes, at::Generator& gen, const torch::TensorOptions& options) {
  if (gen.device() == options.device()) return at::randn(sizes, gen, options);
  return at::randn(sizes, gen, options.device(gen.device())).to(options.device());
}

torch::Tensor squared_error(const torch::Tensor& eps_hat, const torch::Tensor& eps) {
  return torch::square(eps_hat - eps).flatten(1).sum(1).to(torch::kFloat64);
}

const std::vector<std::string>& objective_names() {
  static const std::vector<std::string> names{"vlb", "eps_mse", "weighted"};
  return names;
}

OptionsProblem check_options(const ObjectiveOptions& o) {
  if ((o.name == "vlb" || o.name == "eps_mse") && o.proposal.name != "schedule")
    return {"proposal.name", "objective " + o.name + " draws t through the noise schedule, so its proposal must be "
                             "'schedule' (got '" + o.proposal.name + "'); set objective.proposal.name=schedule, "
                             "or objective.name=weighted for a weighted loss under another proposal"};
  // The weighted loss estimates a continuous-time integral over lambda with the density p(lambda).
  // On a T-step grid the draws of t would snap to grid points while the weight kept the
  // continuous density: a biased sum, neither that integral nor a T-step bound.
  if (o.name == "weighted" && o.timesteps > 0)
    return {"timesteps", "the weighted loss is a continuous-time integral over lambda, so it needs "
                         "objective.timesteps=0 (got " + std::to_string(o.timesteps) + "); use "
                         "objective.name=vlb for the T-step VLB"};
  // Kingma & Gao 2023, App. D.3: flow matching on the OT path is w = e^{-lambda/2} (v_mse's
  // weighting) under the rectified-flow density of lambda; any other proposal makes it v_mse.
  if (o.name == "weighted" && o.weighting.name == "flow_matching" && o.proposal.name != "rectified_flow")
    return {"proposal.name", "weighting flow_matching is the flow-matching loss only under the rectified-flow "
                             "path's density of lambda: set objective.proposal.name=rectified_flow (got '" +
                             o.proposal.name + "'), or use weighting v_mse for e^{-lambda/2} under another proposal"};
  return {};
}

void validate(const ObjectiveOptions& options) {
  if (const auto problem = check_options(options))
    throw std::invalid_argument("objective." + problem.key + ": " + problem.fix);
}

Objective make_objective(const ObjectiveOptions& options, NoiseSchedule schedule) {
  if (options.name == "vlb") return make_vlb(options, std::move(schedule));
  if (options.name == "eps_mse") return make_eps_mse(options, std::move(schedule));
  if (options.name == "weighted") return make_weighted_loss(options, std::move(schedule));
  throw std::invalid_argument("unknown objective '" + options.name +
                              "' (choose vlb, eps_mse or weighted)");
}

}  // namespace vdm
