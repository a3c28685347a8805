// Noise schedules against ../shared/testvectors/objectives.md (linear and cosine), and the
// learned schedule's endpoints, monotonicity, derivative and inverse.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "objectives/noise_schedule.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;

ScheduleOptions opts(const std::string& name, double gmin, double gmax, double shift = 0.0) {
  ScheduleOptions o;
  o.name = name;
  o.gamma_min = gmin;
  o.gamma_max = gmax;
  o.shift = shift;
  o.hidden = 16;
  return o;
}

double gamma_at(NoiseScheduleImpl& s, double t) {
  return s.gamma(torch::tensor({t}, torch::kFloat64)).item<double>();
}

TEST(Schedule, LinearTestVectors) {
  auto s = make_schedule(opts("linear", -13.3, 5.0));
  struct Row { double t, gamma, snr, alpha2, sigma2; };
  for (const Row& r : {Row{0, -13.3, 597196, 0.999998326, 1.67449041e-6},
                       Row{0.5, -4.15, 63.434, 0.984480243, 0.0155197566},
                       Row{1, 5.0, 0.00673795, 0.00669285092, 0.993307149}}) {
    auto v = s->values(torch::tensor({r.t}, torch::kFloat64));
    const double g = v.gamma.item<double>();
    EXPECT_TRUE(RelNear(g, r.gamma, 1e-12));
    // The vectors carry 6-9 significant digits; 1e-6 relative is their precision.
    EXPECT_TRUE(RelNear(std::exp(-g), r.snr, 1e-6));
    EXPECT_TRUE(RelNear(1.0 / (1.0 + std::exp(g)), r.alpha2, 1e-6));
    EXPECT_TRUE(RelNear(torch::sigmoid(v.gamma).item<double>(), r.sigma2, 1e-6));
    EXPECT_TRUE(RelNear(v.dgamma_dt.item<double>(), 18.3, 1e-12));
  }
  EXPECT_TRUE(RelNear(0.5 * 18.3, 9.15, 1e-12));
  EXPECT_TRUE(RelNear(2.0 / 18.3, 0.10928962, 1e-6));  // L_simple / L_diffusion
}

TEST(Schedule, DiscreteTimeWeight) {
  auto s = make_schedule(opts("linear", -13.3, 5.0));
  for (auto [T, want] : {std::pair<int, double>{1000, 9.234235552}, {10, 26.169433293}}) {
    const double t = 0.5, u = t - 1.0 / T;
    const double weight = 0.5 * T * std::expm1(gamma_at(*s, t) - gamma_at(*s, u));
    EXPECT_TRUE(RelNear(weight, want, 1e-6)) << "T=" << T;
  }
}

TEST(Schedule, CosineUnshifted) {
  // Endpoints so far out that the truncation is invisible in float64.
  auto s = make_schedule(opts("cosine", -1000.0, 1000.0));
  EXPECT_TRUE(RelNear(-gamma_at(*s, 0.25), 1.762747174, 1e-6));
  EXPECT_NEAR(-gamma_at(*s, 0.5), 0.0, 1e-12);
  EXPECT_TRUE(RelNear(-gamma_at(*s, 0.75), -1.762747174, 1e-6));
}

TEST(Schedule, CosineTruncated) {
  auto s = make_schedule(opts("cosine", -15.0, 15.0));
  auto* cos = dynamic_cast<CosineScheduleImpl*>(s.get());
  ASSERT_NE(cos, nullptr);
  EXPECT_TRUE(RelNear(cos->u_min(), 5.530843137e-4, 1e-6));
  EXPECT_TRUE(RelNear(cos->u_max(), 1.570243242, 1e-6));
  auto v = s->values(torch::tensor({0.25, 0.5}, torch::kFloat64));
  EXPECT_TRUE(RelNear(-v.gamma[0].item<double>(), 1.761183, 1e-6));
  EXPECT_TRUE(RelNear(-v.dgamma_dt[0].item<double>(), -8.874601, 1e-6));
  EXPECT_NEAR(v.gamma[1].item<double>(), 0.0, 1e-12);
  EXPECT_TRUE(RelNear(-v.dgamma_dt[1].item<double>(), -6.278761, 1e-6));
  EXPECT_TRUE(RelNear(gamma_at(*s, 0.0), -15.0, 1e-12));
  EXPECT_TRUE(RelNear(gamma_at(*s, 1.0), 15.0, 1e-12));
}

TEST(Schedule, CosineShiftAddsToLogSnr) {
  const double shift = 2.0 * std::log(64.0 / 32.0);
  auto plain = make_schedule(opts("cosine", -1000.0, 1000.0));
  auto shifted = make_schedule(opts("cosine", -1000.0, 1000.0, shift));
  for (double t : {0.1, 0.4, 0.8})
    EXPECT_NEAR(-gamma_at(*shifted, t), -gamma_at(*plain, t) + shift, 1e-9);
}

TEST(Schedule, CosineShiftsAfterTruncating) {
  // Kingma & Gao 2023 (App. C) truncate the cosine schedule to [-gamma_max, -gamma_min] and then
  // shift it, so the endpoints move with the shift (here a 256 px model's, 2 log(64/256)).
  const double shift = 2.0 * std::log(64.0 / 256.0);
  auto plain = make_schedule(opts("cosine", -15.0, 15.0));
  auto shifted = make_schedule(opts("cosine", -15.0, 15.0, shift));
  for (double t : {0.0, 0.3, 1.0}) EXPECT_NEAR(-gamma_at(*shifted, t), -gamma_at(*plain, t) + shift, 1e-9);
  EXPECT_NEAR(gamma_at(*shifted, 0.0), -15.0 - shift, 1e-9);
  EXPECT_NEAR(shifted->gamma_at_0(), -15.0 - shift, 1e-12);
  EXPECT_NEAR(shifted->gamma_at_1(), 15.0 - shift, 1e-12);
}

// dgamma/dt of every schedule agrees with a central difference of gamma.
TEST(Schedule, DerivativeMatchesFiniteDifference) {
  for (const char* name : {"linear", "cosine", "learned"}) {
    auto s = make_schedule(opts(name, -13.3, 5.0));
    for (double t : {0.05, 0.3, 0.7, 0.95}) {
      const double h = 1e-6;
      const double fd = (gamma_at(*s, t + h) - gamma_at(*s, t - h)) / (2 * h);
      const double an = s->values(torch::tensor({t}, torch::kFloat64)).dgamma_dt.item<double>();
      EXPECT_TRUE(RelNear(an, fd, 1e-6)) << name << " t=" << t;
    }
  }
}

TEST(Schedule, LearnedEndpointsAndMonotone) {
  auto s = make_schedule(opts("learned", -13.3, 5.0));
  EXPECT_TRUE(s->learned());
  EXPECT_NEAR(gamma_at(*s, 0.0), -13.3, 1e-12);
  EXPECT_NEAR(gamma_at(*s, 1.0), 5.0, 1e-12);
  EXPECT_EQ(s->parameters().size(), 7u);  // 2 endpoints + l1 (w, b) + l2 (w, b) + l3 (w)
  // Perturb the network: still monotone, endpoints still exact.
  {
    torch::NoGradGuard g;
    for (auto& p : s->named_parameters())
      if (p.key().rfind("l", 0) == 0) p.value().add_(torch::randn_like(p.value()));
  }
  auto v = s->values(torch::linspace(0, 1, 1001, torch::kFloat64));
  EXPECT_TRUE((v.gamma.slice(0, 1) - v.gamma.slice(0, 0, -1) >= 0).all().item<bool>());
  EXPECT_TRUE((v.dgamma_dt > 0).all().item<bool>());
  EXPECT_NEAR(v.gamma[0].item<double>(), -13.3, 1e-12);
  EXPECT_NEAR(v.gamma[-1].item<double>(), 5.0, 1e-12);
  EXPECT_EQ(v.gamma.scalar_type(), torch::kFloat64);
}

// VDM's initialisation: the first layer is the linear schedule and the second bias is zero, so at
// initialisation the learned schedule is close to linear in t (issue 15).
TEST(Schedule, LearnedStartsNearTheLinearSchedule) {
  auto s = make_schedule(opts("learned", -13.3, 5.0));
  const auto params = s->named_parameters();
  EXPECT_DOUBLE_EQ(params["l1_weight"].item<double>(), 5.0 - -13.3);
  EXPECT_DOUBLE_EQ(params["l1_bias"].item<double>(), -13.3);
  EXPECT_EQ(params["l2_bias"].abs().max().item<double>(), 0.0);
  const auto t = torch::linspace(0, 1, 101, torch::kFloat64);
  const auto gamma = s->values(t).gamma;
  const auto linear = -13.3 + 18.3 * t;
  EXPECT_LT((gamma - linear).abs().max().item<double>() / 18.3, 0.05);
}

TEST(Schedule, LearnedFixedEndpointsAreBuffers) {
  auto o = opts("learned", -10.0, 4.0);
  o.learn_endpoints = false;
  auto s = make_schedule(o);
  EXPECT_EQ(s->parameters().size(), 5u);
  EXPECT_EQ(s->buffers().size(), 2u);
}

TEST(Schedule, InverseRoundTrip) {
  for (const char* name : {"linear", "cosine", "learned"}) {
    auto s = make_schedule(opts(name, -13.3, 5.0));
    auto t = torch::tensor({0.0, 0.1, 0.5, 0.9, 1.0}, torch::kFloat64);
    auto back = s->t_of_gamma(s->gamma(t).detach());
    EXPECT_TRUE(torch::allclose(back, t, 0, 1e-12)) << name;
    auto outside = s->t_of_gamma(torch::tensor({-20.0, 6.0}, torch::kFloat64));
    EXPECT_TRUE(torch::isnan(outside).all().item<bool>()) << name;
  }
}

TEST(Schedule, BadOptions) {
  EXPECT_THROW(make_schedule(opts("linear", 5.0, -13.3)), std::invalid_argument);
  EXPECT_THROW(make_schedule(opts("quadratic", -13.3, 5.0)), std::invalid_argument);
}

}  // namespace
}  // namespace vdm
