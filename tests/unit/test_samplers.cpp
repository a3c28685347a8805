// The samplers behind generate_samples: DDIM with eta = 1 is the ancestral sampler; Heun and
// deterministic DDIM driven by the exact denoiser of Gaussian data reach that data's mean and
// variance; an image depends on (seed, index) only, not on the batch or call that made it;
// classifier-free guidance combines the conditional and null-class predictions as specified.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "evaluation/ancestral_sampler.h"
#include "evaluation/ddim_sampler.h"
#include "evaluation/sample_generator.h"
#include "evaluation/sample_noise.h"
#include "objectives/diffusion_terms.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);

std::vector<int64_t> range(int64_t lo, int64_t hi, int64_t step = 1) {
  std::vector<int64_t> out;
  for (int64_t i = lo; i < hi; i += step) out.push_back(i);
  return out;
}

// A fixed nonlinear "network" that acts on each sample alone (so batching cannot change it).
Denoiser toy_net() {
  return [](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor&) {
    return 0.5 * torch::tanh(in) + 0.1 * c.view({-1, 1, 1, 1}) * in;
  };
}

// Data x ~ N(m, s^2) independently per channel of a [C, 1, 1] sample. The VP marginal is
// z ~ N(alpha m, alpha^2 s^2 + sigma^2), whose exact eps prediction E[eps | z] is
// sigma (z - alpha m) / (alpha^2 s^2 + sigma^2); it is returned as an eps-parameterised
// network output, gamma recovered from c_noise = gamma / 8.
Denoiser gaussian_oracle(torch::Tensor m, torch::Tensor s) {
  m = m.view({1, -1, 1, 1});
  s = s.view({1, -1, 1, 1});
  return [m, s](const torch::Tensor& z, const torch::Tensor& c, const torch::Tensor&) {
    auto gamma = (8.0 * c.to(torch::kFloat64)).view({-1, 1, 1, 1});
    auto a2 = torch::sigmoid(-gamma), s2 = torch::sigmoid(gamma);
    auto zz = z.to(torch::kFloat64);
    return (torch::sqrt(s2) * (zz - torch::sqrt(a2) * m) / (a2 * s * s + s2)).to(z.scalar_type());
  };
}

TEST(Samplers, DdimCoefficientsAtEtaOneAreTheAncestralOnes) {
  for (double gs : {-13.3, -5.0, 0.0, 3.0})
    for (double dg : {1e-4, 0.05, 1.0, 8.0}) {
      const auto a = ancestral_coefficients(gs, gs + dg);
      const auto d = ddim_coefficients(gs, gs + dg, 1.0);
      EXPECT_TRUE(RelNear(d.c_z, a.c_z, 1e-15));
      EXPECT_TRUE(RelNear(d.c_eps, a.c_eps, 1e-14));
      EXPECT_TRUE(RelNear(d.noise_std, a.noise_std, 1e-15));
      // eta = 0: no noise, and the mean of z_s matches the DDIM formula written out naively.
      const auto z = ddim_coefficients(gs, gs + dg, 0.0);
      EXPECT_EQ(z.noise_std, 0.0);
      auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
      const double as = std::sqrt(sig(-gs)), at = std::sqrt(sig(-gs - dg));
      const double ss = std::sqrt(sig(gs)), st = std::sqrt(sig(gs + dg));
      EXPECT_TRUE(RelNear(z.c_eps, as / at * st - ss, 1e-9, 1e-15)) << gs << " " << dg;
    }
}

TEST(Samplers, DdimWithEtaOneIsTheAncestralSampler) {
  auto schedule = make_schedule(ScheduleOptions{});
  auto param = make_parameterisation("eps");
  SamplingOptions o;
  o.steps = 50;
  o.seed = 11;
  const auto idx = range(0, 5);
  o.sampler = "ancestral";
  auto anc = generate_samples_continuous(toy_net(), *schedule, *param, {2, 4, 4}, idx, {}, o, kF64);
  o.sampler = "ddim";
  o.eta = 1.0;
  auto ddim = generate_samples_continuous(toy_net(), *schedule, *param, {2, 4, 4}, idx, {}, o, kF64);
  EXPECT_TRUE(torch::allclose(anc, ddim, 1e-10, 1e-12)) << (anc - ddim).abs().max().item<double>();
  o.eta = 0.5;
  auto other = generate_samples_continuous(toy_net(), *schedule, *param, {2, 4, 4}, idx, {}, o, kF64);
  EXPECT_FALSE(torch::allclose(anc, other, 1e-3, 1e-3));
  // As 8-bit images, in float32.
  o.eta = 1.0;
  auto ddim8 = generate_samples(toy_net(), *schedule, *param, {2, 4, 4}, idx, {}, o, kF32);
  o.sampler = "ancestral";
  auto anc8 = generate_samples(toy_net(), *schedule, *param, {2, 4, 4}, idx, {}, o, kF32);
  EXPECT_LE((anc8.to(torch::kInt) - ddim8.to(torch::kInt)).abs().max().item<int>(), 1);
  EXPECT_LE((anc8 != ddim8).sum().item<int64_t>(), 2);
}

struct Moments {
  torch::Tensor mean, var;
};
Moments moments(const torch::Tensor& x) {  // x: [N, C, 1, 1] -> per channel
  auto flat = x.to(torch::kFloat64).flatten(1);
  return {flat.mean(0), flat.var(0, /*unbiased=*/true)};
}

void expect_gaussian_moments(const torch::Tensor& x, const torch::Tensor& m, const torch::Tensor& s,
                             const std::string& what) {
  const auto got = moments(x);
  const int64_t N = x.size(0);
  for (int64_t c = 0; c < m.size(0); ++c) {
    const double sd = s[c].item<double>();
    // 4.5 standard errors of the estimates (fixed seeds, so not flaky), plus a little for the
    // discretisation.
    EXPECT_TRUE(RelNear(got.mean[c].item<double>(), m[c].item<double>(), 0, 4.5 * sd / std::sqrt(N) + 0.01 * sd))
        << what << " mean, channel " << c;
    EXPECT_TRUE(RelNear(got.var[c].item<double>(), sd * sd, 4.5 * std::sqrt(2.0 / N) + 0.02))
        << what << " variance, channel " << c;
  }
}

TEST(Samplers, HeunAndDeterministicDdimReachTheGaussianTarget) {
  const auto m = torch::tensor({0.3, -0.5, 0.0, 0.4}, kF64);
  const auto s = torch::tensor({0.5, 0.2, 1.0, 0.1}, kF64);
  const auto net = gaussian_oracle(m, s);
  auto param = make_parameterisation("eps");
  const auto idx = range(0, 4000);
  for (const std::string schedule_name : {"linear", "cosine"}) {
    ScheduleOptions so;
    so.name = schedule_name;
    auto schedule = make_schedule(so);
    SamplingOptions o;
    o.batch_size = 4000;
    o.seed = 5;
    o.sampler = "heun";
    o.steps = 32;
    expect_gaussian_moments(generate_samples_continuous(net, *schedule, *param, {4, 1, 1}, idx, {}, o, kF64), m, s,
                            "heun, " + schedule_name);
    o.s_churn = 10;
    o.s_tmin = 0.05;
    o.s_tmax = 5;
    expect_gaussian_moments(generate_samples_continuous(net, *schedule, *param, {4, 1, 1}, idx, {}, o, kF64), m, s,
                            "heun with churn, " + schedule_name);
    o.sampler = "ddim";
    o.eta = 0.0;
    o.steps = 200;
    expect_gaussian_moments(generate_samples_continuous(net, *schedule, *param, {4, 1, 1}, idx, {}, o, kF64), m, s,
                            "ddim eta=0, " + schedule_name);
    // The ancestral sampler decodes through x_hat = E[x | z_t], which forgets the spread of x
    // given z_t: narrow data come out too narrow by O(step in lambda). The linear grid is fine
    // enough at 200 steps; cosine's is ~3x coarser at the SNRs that matter here.
    if (schedule_name != "linear") continue;
    o.sampler = "ancestral";
    expect_gaussian_moments(generate_samples_continuous(net, *schedule, *param, {4, 1, 1}, idx, {}, o, kF64), m, s,
                            "ancestral, " + schedule_name);
  }
}

TEST(Samplers, ASampleDependsOnlyOnSeedAndIndex) {
  auto schedule = make_schedule(ScheduleOptions{});
  auto param = make_parameterisation("v");
  for (const std::string name : {"ancestral", "ddim", "heun"}) {
    SamplingOptions o;
    o.sampler = name;
    o.steps = 8;
    o.eta = 0.7;
    o.s_churn = 5;  // so that Heun draws noise on the way too
    o.seed = 3;
    const std::vector<int64_t> shape{1, 4, 4};
    auto all = generate_samples_continuous(toy_net(), *schedule, *param, shape, range(0, 6), {}, o, kF32);
    auto even = generate_samples_continuous(toy_net(), *schedule, *param, shape, range(0, 6, 2), {}, o, kF32);
    auto odd = generate_samples_continuous(toy_net(), *schedule, *param, shape, range(1, 6, 2), {}, o, kF32);
    for (int64_t i = 0; i < 6; ++i)
      EXPECT_TRUE(torch::equal(all[i], (i % 2 ? odd : even)[i / 2])) << name << " sample " << i;
    o.batch_size = 4;  // batches {0..3}, {4, 5}
    EXPECT_TRUE(torch::equal(all, generate_samples_continuous(toy_net(), *schedule, *param, shape, range(0, 6), {}, o,
                                                              kF32)))
        << name;
    EXPECT_FALSE(torch::equal(all[0], all[1])) << name;
    // uint8 output is the quantised continuous one, and the seed matters.
    auto pixels = generate_samples(toy_net(), *schedule, *param, shape, range(0, 6), {}, o, kF32);
    EXPECT_TRUE(torch::equal(pixels, to_pixels(all))) << name;
    o.seed = 4;
    EXPECT_FALSE(torch::equal(all, generate_samples_continuous(toy_net(), *schedule, *param, shape, range(0, 6), {},
                                                               o, kF32)))
        << name;
  }
  EXPECT_NE(sample_seed(0, 1), sample_seed(1, 0));
  EXPECT_NE(sample_seed(0, 0), sample_seed(0, 1));
}

TEST(Samplers, ClassifierFreeGuidance) {
  auto schedule = make_schedule(ScheduleOptions{});
  auto param = make_parameterisation("eps");
  // eps is affine in the label, so guidance w with class c and null class n must equal the
  // plain net at the "label" (1 + w) c - w n.
  Denoiser net = [](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor& y) {
    EXPECT_TRUE(y.defined());
    return 0.5 * torch::tanh(in) + 0.01 * y.to(in.scalar_type()).view({-1, 1, 1, 1});
  };
  const auto labels = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  const auto idx = range(10, 14);
  SamplingOptions o;
  o.steps = 10;
  o.null_label = 4;
  const auto plain = generate_samples_continuous(net, *schedule, *param, {1, 2, 2}, idx, labels, o, kF64);
  o.guidance = 0.0;  // off: exactly the unguided sampler
  EXPECT_TRUE(torch::equal(plain, generate_samples_continuous(net, *schedule, *param, {1, 2, 2}, idx, labels, o, kF64)));
  o.guidance = 1.5;
  const auto guided = generate_samples_continuous(net, *schedule, *param, {1, 2, 2}, idx, labels, o, kF64);
  o.guidance = 0.0;
  const auto expected = generate_samples_continuous(net, *schedule, *param, {1, 2, 2}, idx,
                                                    2.5 * labels.to(torch::kFloat64) - 1.5 * 4, o, kF64);
  EXPECT_TRUE(torch::allclose(guided, expected, 1e-9, 1e-12)) << (guided - expected).abs().max().item<double>();
  EXPECT_FALSE(torch::allclose(guided, plain, 1e-3, 1e-3));
  // Guidance needs the null class.
  o.guidance = 1.0;
  o.null_label = -1;
  EXPECT_THROW(generate_samples(net, *schedule, *param, {1, 2, 2}, idx, labels, o, kF64), std::invalid_argument);
}

TEST(Samplers, RejectsBadOptions) {
  auto schedule = make_schedule(ScheduleOptions{});
  auto param = make_parameterisation("eps");
  SamplingOptions o;
  o.sampler = "euler";
  EXPECT_THROW(generate_samples(toy_net(), *schedule, *param, {1, 2, 2}, {0}, {}, o, kF32), std::invalid_argument);
  o.sampler = "heun";
  o.steps = 1;
  EXPECT_THROW(generate_samples(toy_net(), *schedule, *param, {1, 2, 2}, {0}, {}, o, kF32), std::invalid_argument);
  o.sampler = "ddim";
  o.steps = 4;
  o.eta = 1.5;
  EXPECT_THROW(generate_samples(toy_net(), *schedule, *param, {1, 2, 2}, {0}, {}, o, kF32), std::invalid_argument);
  // No indices (a rank left without samples): an empty batch, no error.
  o.eta = 0;
  EXPECT_EQ(generate_samples(toy_net(), *schedule, *param, {1, 2, 2}, {}, {}, o, kF32).sizes(),
            (std::vector<int64_t>{0, 1, 2, 2}));
}

}  // namespace
}  // namespace vdm
