// The weighted diffusion loss of Kingma & Gao (2023): 0.5 w(lambda)/p(lambda) ||eps_hat - eps||^2
// for any weighting and any proposal. With a monotone w it is an ELBO of noise-augmented data.
#include <torch/torch.h>

#include "objectives/diffusion_terms.h"
#include "objectives/objective.h"

namespace vdm {
namespace {

class WeightedLossImpl : public ObjectiveImpl {
 public:
  WeightedLossImpl(ObjectiveOptions options, NoiseSchedule schedule)
      : ObjectiveImpl(std::move(options), std::move(schedule)),
        weighting_(make_weighting(options_.weighting)) {
    validate(options_);
  }

  LossOutput forward(const Denoiser& denoiser, const torch::Tensor& x, const torch::Tensor& labels,
                     LossRng rng, const ProposalContext& ctx) override {
    const int64_t D = x[0].numel();
    auto s = draw_levels(x, rng.levels, ctx);
    // The schedule only shapes the proposal here: lambda is data, not a function of training.
    auto lambda = s.lambda.detach();
    auto d = diffuse_and_denoise(denoiser, x, labels, -lambda, rng.noise);
    auto mse = squared_error(d.eps_hat, d.eps);
    auto w = (*weighting_)(lambda);
    proposal_->observe(lambda, w * mse.detach());
    LossOutput out;
    out.per_sample = 0.5 * w / s.density * mse;
    out.loss = out.per_sample.mean() / double(D);
    out.terms = {{"diffusion", out.per_sample.mean().detach()}};
    out.lambda = lambda;
    out.bpd_per_nat = bpd_per_nat(D);
    add_augmented_elbo(out, x);
    return out;
  }

  torch::Tensor weighting(const torch::Tensor& lambda) const override {
    return (*weighting_)(lambda);
  }
  bool monotone() const override { return weighting_->monotone(); }

 private:
  WeightingPtr weighting_;
};

}  // namespace

Objective make_weighted_loss(const ObjectiveOptions& options, NoiseSchedule schedule) {
  return std::make_shared<WeightedLossImpl>(options, std::move(schedule));
}

}  // namespace vdm
