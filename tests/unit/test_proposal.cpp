// Proposals: antithetic and stratified times (alone and across ranks), discretisation, the
// schedule, log-normal and rectified-flow densities on the schedule's range, given uniforms, and
// the adaptive histogram (both targets).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "objectives/proposal.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;

at::Generator gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

std::vector<double> vec(const torch::Tensor& t) {
  auto c = t.contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

TEST(Proposal, AntitheticTestVector) {
  auto g = gen(0);
  ProposalContext ctx;
  ctx.shared_offset = 0.3;
  auto t = sample_times(4, "antithetic", g, ctx);
  auto want = std::vector<double>{0.3, 0.55, 0.8, 0.05};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(vec(t)[i], want[i], 1e-15);
  auto d = discretise_times(t, 10);
  auto want_d = std::vector<double>{0.3, 0.6, 0.8, 0.1};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(vec(d)[i], want_d[i], 1e-15);
}

TEST(Proposal, AntitheticAcrossRanksTilesTheUnitInterval) {
  // Three ranks with a shared offset together form the lattice of 3 B points.
  const int B = 5, world = 3;
  std::vector<double> all;
  for (int r = 0; r < world; ++r) {
    auto g = gen(100 + r);  // per-rank generators: the shared offset must win
    ProposalContext ctx{r, world, 0.17};
    for (double v : vec(sample_times(B, "antithetic", g, ctx))) all.push_back(v);
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i) EXPECT_NEAR(all[i] - all[i - 1], 1.0 / (B * world), 1e-12);
}

TEST(Proposal, StratifiedOnePointPerStratum) {
  const int B = 8, world = 2;
  std::vector<int> hits(B * world, 0);
  for (int r = 0; r < world; ++r) {
    auto g = gen(7 + r);
    for (double v : vec(sample_times(B, "stratified", g, {r, world, -1.0})))
      hits[int(std::floor(v * B * world))]++;
  }
  for (int h : hits) EXPECT_EQ(h, 1);
}

TEST(Proposal, ScheduleDensityIsInverseRate) {
  ScheduleOptions so;
  so.name = "cosine";
  so.gamma_min = -1000;  // the unshifted, untruncated cosine
  so.gamma_max = 1000;
  auto p = make_proposal(ProposalOptions{}, make_schedule(so));
  auto d = p->density(torch::tensor({0.0, 2.0}, torch::kFloat64));
  EXPECT_TRUE(RelNear(d[0].item<double>(), 0.159154943, 1e-6));
  EXPECT_TRUE(RelNear(d[1].item<double>(), 0.103141041, 1e-6));
  // sech(lambda/2) / (2 pi) everywhere
  auto l = torch::linspace(-10, 10, 41, torch::kFloat64);
  auto want = 1.0 / torch::cosh(l / 2) / (2 * M_PI);
  EXPECT_TRUE(torch::allclose(p->density(l), want, 1e-9, 0));
}

TEST(Proposal, ScheduleDensityIntegratesToOneAndVanishesOutside) {
  for (const char* name : {"linear", "cosine"}) {
    ScheduleOptions so;
    so.name = name;
    auto p = make_proposal(ProposalOptions{}, make_schedule(so));
    auto l = torch::linspace(-5.0, 13.3, 20001, torch::kFloat64);
    EXPECT_NEAR(torch::trapezoid(p->density(l), l).item<double>(), 1.0, 1e-6) << name;
    EXPECT_EQ(p->density(torch::tensor({-6.0, 14.0}, torch::kFloat64)).abs().sum().item<double>(), 0.0);
  }
}

TEST(Proposal, ScheduleSampleMatchesSchedule) {
  ScheduleOptions so;
  auto sched = make_schedule(so);
  auto p = make_proposal(ProposalOptions{}, sched, /*timesteps=*/10);
  auto g = gen(1);
  auto s = p->sample(6, g, {});
  EXPECT_TRUE(torch::allclose(s.t * 10, torch::round(s.t * 10)));
  EXPECT_TRUE(torch::allclose(s.lambda, -sched->gamma(s.t)));
  EXPECT_TRUE(torch::allclose(s.density, torch::full({6}, 1.0 / 18.3, torch::kFloat64)));
}

TEST(Proposal, EdmLogNormal) {
  ProposalOptions o;
  o.name = "edm_lognormal";
  auto p = make_proposal(o, make_schedule(ScheduleOptions{}));
  auto g = gen(5);
  auto s = p->sample(200000, g, {});
  EXPECT_NEAR(s.lambda.mean().item<double>(), 2.4, 0.03);
  EXPECT_NEAR(s.lambda.std().item<double>(), 2.4, 0.03);
  // median sigma = exp(p_mean)
  auto sigma = torch::exp(-s.lambda / 2);
  EXPECT_NEAR(sigma.median().item<double>(), 0.301194, 0.003);
  // Truncated to the schedule's range [-5, 13.3] (lambda = -gamma) and renormalised.
  const double mass = 0.5 * (std::erf((13.3 - 2.4) / (2.4 * M_SQRT2)) - std::erf((-5.0 - 2.4) / (2.4 * M_SQRT2)));
  EXPECT_TRUE(RelNear(p->density(torch::tensor({2.4}, torch::kFloat64)).item<double>(),
                      1.0 / (2.4 * std::sqrt(2 * M_PI)) / mass, 1e-12));
  EXPECT_EQ(p->density(torch::tensor({-5.1, 13.4}, torch::kFloat64)).abs().sum().item<double>(), 0.0);
  EXPECT_GE(s.lambda.min().item<double>(), -5.0);
  EXPECT_LE(s.lambda.max().item<double>(), 13.3);
  EXPECT_TRUE(torch::allclose(s.density, p->density(s.lambda)));
}

// The proposals that draw lambda directly integrate over the schedule's lambda range by default,
// the one the samplers use; a range reaching outside it is refused, one inside it is kept.
TEST(Proposal, RangeDefaultsToTheSchedulesAndIsChecked) {
  auto schedule = make_schedule(ScheduleOptions{});  // linear, gamma in [-13.3, 5]
  for (const char* name : {"edm_lognormal", "adaptive", "rectified_flow"}) {
    ProposalOptions o;
    o.name = name;
    auto p = make_proposal(o, schedule);
    EXPECT_DOUBLE_EQ(p->range().first, -5.0) << name;
    EXPECT_DOUBLE_EQ(p->range().second, 13.3) << name;
    auto l = torch::linspace(-5.0, 13.3, 200001, torch::kFloat64);
    EXPECT_NEAR(torch::trapezoid(p->density(l), l).item<double>(), 1.0, 1e-3) << name;
    o.lambda_min = -15.0;
    try {
      make_proposal(o, schedule);
      ADD_FAILURE() << name << ": a range beyond the schedule's was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("objective.proposal.lambda_min"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("[-5, 13.3]"), std::string::npos) << e.what();
    }
    o.lambda_min = -2.0;
    o.lambda_max = 10.0;
    EXPECT_DOUBLE_EQ(make_proposal(o, schedule)->range().first, -2.0);
  }
  ProposalOptions bad;
  bad.name = "adaptive";
  bad.lambda_min = 3.0;
  bad.lambda_max = 1.0;
  EXPECT_THROW(make_proposal(bad, schedule), std::invalid_argument);
}

// Rectified flow: t uniform on z = (1 - t) x + t eps, so lambda = 2 log((1 - t) / t) has the logistic
// density sech^2(lambda / 4) / 8 (Kingma & Gao 2023, App. D.3), here on a range wide enough that
// the truncation is invisible.
TEST(Proposal, RectifiedFlowIsUniformTimeOnTheFlowPath) {
  ScheduleOptions so;
  so.gamma_min = -60.0;
  so.gamma_max = 60.0;
  ProposalOptions o;
  o.name = "rectified_flow";
  o.time_sampling = "iid";
  auto p = make_proposal(o, make_schedule(so));
  for (double l : {-3.0, 0.0, 1.5, 7.0})
    EXPECT_TRUE(RelNear(p->density(torch::tensor({l}, torch::kFloat64)).item<double>(),
                        std::pow(1.0 / std::cosh(l / 4.0), 2) / 8.0, 1e-12)) << l;
  auto g = gen(4);
  auto s = p->sample(200000, g, {});
  // t = sigmoid(-lambda / 2) is uniform on (0, 1): mean 1/2, variance 1/12.
  auto t = torch::sigmoid(-0.5 * s.lambda);
  EXPECT_NEAR(t.mean().item<double>(), 0.5, 0.003);
  EXPECT_NEAR(t.var().item<double>(), 1.0 / 12.0, 0.001);
  EXPECT_TRUE(torch::allclose(s.density, p->density(s.lambda)));
}

// Given uniforms replace the proposal's own draws (evaluation's lattice); each proposal maps them
// through its inverse CDF, so u = 0.5 is the median.
TEST(Proposal, GivenUniformsGoThroughTheInverseCdf) {
  ScheduleOptions so;
  so.gamma_min = -60.0;
  so.gamma_max = 60.0;
  ProposalContext ctx;
  ctx.uniforms = torch::tensor({0.5, 0.25}, torch::kFloat64);
  auto g = gen(0);
  ProposalOptions o;
  o.name = "rectified_flow";
  auto s = make_proposal(o, make_schedule(so))->sample(2, g, ctx);
  EXPECT_NEAR(s.lambda[0].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(s.lambda[1].item<double>(), 2.0 * std::log(0.25 / 0.75), 1e-12);
  o.name = "edm_lognormal";
  s = make_proposal(o, make_schedule(so))->sample(2, g, ctx);
  EXPECT_NEAR(s.lambda[0].item<double>(), 2.4, 1e-9);
  o.name = "schedule";
  s = make_proposal(o, make_schedule(so))->sample(2, g, ctx);
  EXPECT_NEAR(s.t[0].item<double>(), 0.5, 0);
  EXPECT_THROW(make_proposal(o, make_schedule(so))->sample(3, g, ctx), std::invalid_argument);
}

// target rms: p proportional to sqrt(E f^2) per bin, the minimiser of Var[f / p].
TEST(Proposal, AdaptiveRmsTarget) {
  ScheduleOptions so;
  so.gamma_min = -4.0;
  so.gamma_max = 4.0;
  ProposalOptions o;
  o.name = "adaptive";
  o.bins = 2;
  o.uniform_mix = 0.0;
  o.adaptive_target = "rms";
  auto p = make_proposal(o, make_schedule(so));
  // Bin 1: f = 0 or 4 (E|f| = 2, rms = sqrt 8); bin 2: f = 2 (both 2).
  p->observe(torch::tensor({-3.0, -2.0, 1.0}, torch::kFloat64), torch::tensor({0.0, 4.0, 2.0}, torch::kFloat64));
  p->commit(p->pending_histogram());
  const double r = std::sqrt(8.0);
  auto d = p->density(torch::tensor({-1.0, 1.0}, torch::kFloat64));
  EXPECT_TRUE(RelNear(d[0].item<double>(), r / (r + 2.0) / 4.0, 1e-12));
  EXPECT_TRUE(RelNear(d[1].item<double>(), 2.0 / (r + 2.0) / 4.0, 1e-12));
  o.adaptive_target = "mean_abs";
  auto q = make_proposal(o, make_schedule(so));
  q->observe(torch::tensor({-3.0, -2.0, 1.0}, torch::kFloat64), torch::tensor({0.0, 4.0, 2.0}, torch::kFloat64));
  q->commit(q->pending_histogram());
  EXPECT_TRUE(RelNear(q->density(torch::tensor({-1.0}, torch::kFloat64)).item<double>(), 0.5 / 4.0, 1e-12));
}

TEST(Proposal, AdaptiveFollowsTheLoss) {
  ProposalOptions o;
  o.name = "adaptive";
  o.bins = 4;
  o.lambda_min = -4;
  o.lambda_max = 4;
  o.uniform_mix = 0.2;
  auto p = make_proposal(o, make_schedule(ScheduleOptions{}));  // inside its range [-5, 13.3]
  // Uniform before any observation: density 1/8 on [-4, 4], 0 outside.
  EXPECT_TRUE(torch::allclose(p->density(torch::tensor({-3.0, 3.9, 5.0}, torch::kFloat64)),
                              torch::tensor({0.125, 0.125, 0.0}, torch::kFloat64)));
  // Loss magnitudes 3:1:0:0 in the four bins (the last two unseen).
  p->observe(torch::tensor({-3.5, -3.0, -1.0}, torch::kFloat64),
             torch::tensor({3.0, 3.0, 1.0}, torch::kFloat64));
  auto pending = p->pending_histogram();
  EXPECT_TRUE(torch::allclose(pending, torch::tensor({{6.0, 1.0, 0.0, 0.0}, {2.0, 1.0, 0.0, 0.0}},
                                                     torch::kFloat64)));
  p->commit(pending);
  EXPECT_EQ(p->pending_histogram().abs().sum().item<double>(), 0.0);
  // Unseen bins take the mean of the seen ones (2): masses 3:1:2:2 of 8, mixed with uniform.
  auto bins = torch::tensor({-3.0, -1.0, 1.0, 3.0}, torch::kFloat64);
  auto want = (0.2 * 0.25 + 0.8 * torch::tensor({3.0, 1.0, 2.0, 2.0}, torch::kFloat64) / 8.0) / 2.0;
  EXPECT_TRUE(torch::allclose(p->density(bins), want, 1e-12, 0));
  auto l = torch::linspace(-4, 4 - 1e-9, 80001, torch::kFloat64);
  EXPECT_NEAR(torch::trapezoid(p->density(l), l).item<double>(), 1.0, 1e-3);
  // Sampling follows the density.
  auto g = gen(9);
  auto s = p->sample(100000, g, {});
  const double share = (s.lambda < -2).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(share, 0.2 * 0.25 + 0.8 * 3.0 / 8.0, 0.01);
  EXPECT_TRUE(torch::allclose(s.density, p->density(s.lambda)));
}

TEST(Proposal, Errors) {
  ProposalOptions o;
  o.name = "adaptive";
  EXPECT_THROW(make_proposal(o, make_schedule(ScheduleOptions{}), 10), std::invalid_argument);
  o.name = "beta";
  EXPECT_THROW(make_proposal(o, make_schedule(ScheduleOptions{})), std::invalid_argument);
  auto g = gen(0);
  EXPECT_THROW(sample_times(4, "sobol", g, {}), std::invalid_argument);
}

}  // namespace
}  // namespace vdm
