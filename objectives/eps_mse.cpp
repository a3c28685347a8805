// L_simple (Ho et al. 2020): ||eps_hat - eps||^2 with t ~ U(0, 1) through the schedule. As a
// weighted loss 0.5 w/p ||.||^2 it has w(lambda) = 2 p(lambda), the schedule's own density.
#include <torch/torch.h>

#include <stdexcept>

#include "objectives/diffusion_terms.h"
#include "objectives/objective.h"

namespace vdm {
namespace {

class EpsMseImpl : public ObjectiveImpl {
 public:
  EpsMseImpl(ObjectiveOptions options, NoiseSchedule schedule)
      : ObjectiveImpl(std::move(options), std::move(schedule)) {
    validate(options_);
    monotone_ = is_non_increasing(*this);
  }

  LossOutput forward(const Denoiser& denoiser, const torch::Tensor& x, const torch::Tensor& labels,
                     LossRng rng, const ProposalContext& ctx) override {
    const int64_t D = x[0].numel();
    auto s = draw_levels(x, rng.levels, ctx);
    auto d = diffuse_and_denoise(denoiser, x, labels, s.schedule.gamma.detach(), rng.noise);
    LossOutput out;
    out.per_sample = squared_error(d.eps_hat, d.eps);
    out.loss = out.per_sample.mean() / double(D);
    out.terms = {{"mse", out.per_sample.mean().detach()}};
    out.lambda = s.lambda.detach();
    out.bpd_per_nat = bpd_per_nat(D);
    add_augmented_elbo(out, x);
    return out;
  }

  torch::Tensor weighting(const torch::Tensor& lambda) const override {
    return 2.0 * proposal_->density(lambda);
  }
  bool monotone() const override { return monotone_; }

 private:
  // w = 2 p has no closed form for every schedule: check it on a dense grid of the schedule's
  // lambda range instead.
  static bool is_non_increasing(EpsMseImpl& self) {
    torch::NoGradGuard no_grad;
    auto t = torch::linspace(0.0, 1.0, 2001, torch::kFloat64);
    auto lambda = -self.schedule().gamma(t).detach();
    auto w = self.weighting(lambda);  // lambda decreases along t: w must not decrease along t
    auto step = w.slice(0, 1) - w.slice(0, 0, -1);
    return (step >= -1e-9 * w.abs().max()).all().item<bool>();
  }

  bool monotone_ = false;
};

}  // namespace

Objective make_eps_mse(const ObjectiveOptions& options, NoiseSchedule schedule) {
  return std::make_shared<EpsMseImpl>(options, std::move(schedule));
}

}  // namespace vdm
