// The variational lower bound of VDM (Kingma et al. 2021): diffusion term in continuous time
// (0.5 gamma'(t) ||eps_hat - eps||^2) or with T steps ((T/2) expm1(gamma_t - gamma_s) ||.||^2),
// plus the prior KL at t=1 and the discretised decoder's reconstruction loss at t=0.
#include <torch/torch.h>

#include <stdexcept>

#include "objectives/diffusion_terms.h"
#include "objectives/objective.h"

namespace vdm {
namespace {

class VlbImpl : public ObjectiveImpl {
 public:
  VlbImpl(ObjectiveOptions options, NoiseSchedule schedule)
      : ObjectiveImpl(std::move(options), std::move(schedule)) {
    validate(options_);
    minimise_variance_ = schedule_->learned() && schedule_->options().minimise_variance;
    if (minimise_variance_ && options_.timesteps > 0)
      throw std::invalid_argument("schedule.minimise_variance needs continuous time "
                                  "(objective.timesteps=0): only there is the VLB invariant "
                                  "to the schedule's interior");
  }

  LossOutput forward(const Denoiser& denoiser, const torch::Tensor& x, const torch::Tensor& labels,
                     LossRng rng, const ProposalContext& ctx) override {
    const int64_t D = x[0].numel();
    auto s = draw_levels(x, rng.levels, ctx);
    auto gamma = s.t.defined() ? s.schedule.gamma : -s.lambda;  // the schedule's keeps its gradient
    auto d = diffuse_and_denoise(denoiser, x, labels, gamma, rng.noise);
    auto mse = squared_error(d.eps_hat, d.eps);

    torch::Tensor diffusion;
    if (options_.timesteps == 0) {
      // Under the schedule's own proposal 1/p(lambda) = gamma'(t), kept as a function of the
      // schedule so that a learned one gets its gradient; any other proposal (evaluation's
      // importance sampling) divides by its density.
      diffusion = s.t.defined() ? 0.5 * s.schedule.dgamma_dt * mse : 0.5 * mse / s.density;
    } else {
      const double T = double(options_.timesteps);
      auto gamma_s = schedule_->gamma(s.t - 1.0 / T);
      diffusion = 0.5 * T * torch::expm1(s.schedule.gamma - gamma_s) * mse;
    }
    if (minimise_variance_ && diffusion.requires_grad()) hook_variance_gradient(s, diffusion, D);
    proposal_->observe(s.lambda, 0.5 * mse.detach());  // the integrand in lambda (w = 1)

    auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(x.device());
    auto gamma_1 = schedule_->gamma(torch::ones({1}, f64));
    auto gamma_0 = schedule_->gamma(torch::zeros({1}, f64));
    auto prior = prior_kl(x, gamma_1).flatten(1).sum(1);
    auto x64 = x.to(torch::kFloat64);
    auto z_0 = torch::sqrt(torch::sigmoid(-gamma_0)) * x64 +
               torch::sqrt(torch::sigmoid(gamma_0)) * draw_normal(x.sizes(), rng.noise, f64);
    auto recon = reconstruction_nll(x, z_0, gamma_0).flatten(1).sum(1);

    LossOutput out;
    out.per_sample = diffusion + prior + recon;
    out.loss = out.per_sample.mean() / double(D);
    out.terms = {{"diffusion", diffusion.mean().detach()},
                 {"prior", prior.mean().detach()},
                 {"reconstruction", recon.mean().detach()}};
    out.lambda = s.lambda.detach();
    out.diffusion = diffusion.detach();
    out.bpd_per_nat = bpd_per_nat(D);
    out.likelihood = true;
    return out;
  }

  torch::Tensor weighting(const torch::Tensor& lambda) const override {
    return torch::ones_like(lambda, torch::kFloat64);
  }
  bool monotone() const override { return true; }

 private:
  // Variance minimisation (VDM App. I.2): the continuous-time loss does not depend on the
  // interior of gamma, so its gradient there is only noise; follow instead the gradient of
  // E[l^2] (l = per-example loss per dimension), which is 2 l dl/d(interior). Hooks on the
  // interior values rescale exactly the gradient paths through the interior; the endpoints
  // and the denoiser keep the plain VLB gradient.
  void hook_variance_gradient(const LambdaSample& s, const torch::Tensor& diffusion, int64_t D) {
    auto scale = (2.0 * diffusion.detach() / double(D)).to(torch::kFloat64);
    for (auto v : {s.schedule.interior, s.schedule.interior_rate}) {
      if (v.defined() && v.requires_grad())
        v.register_hook([scale](torch::Tensor g) { return g * scale.view(g.sizes()); });
    }
  }

  bool minimise_variance_ = false;
};

}  // namespace

Objective make_vlb(const ObjectiveOptions& options, NoiseSchedule schedule) {
  return std::make_shared<VlbImpl>(options, std::move(schedule));
}

}  // namespace vdm
