// The augmented ELBO that a monotone weighting's loss bounds (Kingma & Gao 2023): with w = 1 it is
// the VLB's diffusion and prior terms; for sigmoid, v_mse and edm_monotonic the integration by
// parts behind it holds by quadrature, and the reported estimate agrees with the quadrature on a
// toy denoiser; a weighting that is not monotone reports nothing; evaluation reports it too.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "objectives/diffusion_terms.h"
#include "objectives/objective.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;

// eps_hat = 0.9 z_t: E||eps_hat - eps||^2 = 0.81 alpha^2 ||x||^2 + (1 - 0.9 sigma)^2 D, known at every
// lambda, small at low SNR and large at high SNR like a trained network's.
Denoiser shrinking() {
  return [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) { return 0.9 * in; };
}

torch::Tensor images(int64_t B) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(21);
  auto k = at::randint(0, 256, {B, 1, 4, 4}, g, kF64);
  return 2.0 * (k + 0.5) / 256.0 - 1.0;
}

Objective weighted(const std::string& weighting) {
  ObjectiveOptions o;
  o.name = "weighted";
  o.weighting.name = weighting;
  return make_objective(o, make_schedule(ScheduleOptions{}));  // linear: lambda in [-5, 13.3]
}

TEST(AugmentedElbo, ElboWeightingIsTheVlbLessReconstruction) {
  auto x = images(64);
  auto w1 = weighted("elbo");
  auto vlb = make_vlb(ObjectiveOptions{}, make_schedule(ScheduleOptions{}));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(4), g2 = at::make_generator<at::CPUGeneratorImpl>(4);
  auto a = w1->forward(shrinking(), x, {}, g1);
  auto b = vlb->forward(shrinking(), x, {}, g2);
  const double want =
      (b.terms.at("diffusion").item<double>() + b.terms.at("prior").item<double>()) * b.bpd_per_nat;
  EXPECT_TRUE(RelNear(a.terms.at("augmented_elbo_bpd").item<double>(), want, 1e-12));
  EXPECT_TRUE(RelNear(a.terms.at("loss_normalised").item<double>(), a.loss.item<double>(), 1e-12));
}

TEST(AugmentedElbo, NoneForAWeightingThatIsNotMonotone) {
  auto x = images(8);
  auto edm = weighted("edm");
  auto g = at::make_generator<at::CPUGeneratorImpl>(1);
  auto out = edm->forward(shrinking(), x, {}, g);
  EXPECT_FALSE(edm->monotone());
  EXPECT_EQ(out.terms.count("augmented_elbo_bpd"), 0u);
  EXPECT_EQ(out.terms.count("loss_normalised"), 0u);
}

// 0.5 integral of w m over [lo, hi] against w(hi) L(hi) + integral of -w' L, L(l) = 0.5 integral of
// m over [lo, l]: the mixture of noise-augmented bounds; then the objective's reported augmented
// ELBO against the quadrature of its expectation.
TEST(AugmentedElbo, MonotoneWeightingsAreMixturesOfAugmentedBounds) {
  const double lo = -5.0, hi = 13.3, D = 16;
  const int64_t n = 400001;
  auto l = torch::linspace(lo, hi, n, kF64);
  auto alpha2 = torch::sigmoid(l), sigma = torch::sqrt(torch::sigmoid(-l));
  auto x = images(512);
  auto norms = x.square().flatten(1).sum(1);  // ||x||^2 per image
  for (const char* name : {"sigmoid", "v_mse", "edm_monotonic"}) {
    SCOPED_TRACE(name);
    auto objective = weighted(name);
    ASSERT_TRUE(objective->monotone());
    auto w = objective->weighting(l);
    // Per image, m = 0.81 alpha^2 s + (1 - 0.9 sigma)^2 D is linear in s = ||x||^2: two integrals.
    auto m_x = 0.81 * alpha2, m_1 = torch::square(1.0 - 0.9 * sigma) * D;
    const double s = norms[0].item<double>();
    auto m = m_x * s + m_1;
    const double direct = 0.5 * torch::trapezoid(w * m, l).item<double>();
    auto L = 0.5 * torch::cat({torch::zeros({1}, kF64),
                               torch::cumulative_trapezoid(m, l)});  // L(l), 0 at lo
    // integral of -w' L: the increments of w against L at the midpoints (a kink in w is fine).
    auto dw = w.slice(0, 1) - w.slice(0, 0, -1);
    auto L_mid = 0.5 * (L.slice(0, 1) + L.slice(0, 0, -1));
    const double mixture = w[-1].item<double>() * L[-1].item<double>() - (dw * L_mid).sum().item<double>();
    EXPECT_TRUE(RelNear(direct, mixture, 1e-6)) << direct << " vs " << mixture;
    EXPECT_TRUE((dw <= 1e-12 * w.abs().max()).all().item<bool>());  // non-increasing

    // The estimator: many forwards of the batch; each reports mean(per_sample) / w(lo) + prior.
    const double A = 0.5 * torch::trapezoid(w * m_x, l).item<double>();
    const double B = 0.5 * torch::trapezoid(w * m_1, l).item<double>();
    const double w_min = w[0].item<double>(), per_nat = bpd_per_nat(int64_t(D));
    auto prior = prior_kl(x, torch::full({1}, -lo, kF64)).flatten(1).sum(1);
    const double want = ((A * norms + B).mean().item<double>() / w_min + prior.mean().item<double>()) * per_nat;
    auto g = at::make_generator<at::CPUGeneratorImpl>(8);
    std::vector<double> reported, normalised;
    for (int r = 0; r < 40; ++r) {
      auto out = objective->forward(shrinking(), x, {}, g);
      reported.push_back(out.terms.at("augmented_elbo_bpd").item<double>());
      normalised.push_back(out.terms.at("loss_normalised").item<double>() * w_min - out.loss.item<double>());
    }
    auto t = torch::tensor(reported, kF64);
    const double mean = t.mean().item<double>(), se = std::sqrt(t.var().item<double>() / double(t.numel()));
    EXPECT_NEAR(mean, want, 4 * se + 1e-12) << "se " << se;
    EXPECT_LT(se, 0.05 * want);
    for (double d : normalised) EXPECT_NEAR(d, 0.0, 1e-12);
  }
}

}  // namespace
}  // namespace vdm
