// Prior KL, the discretised decoder (pointwise and its expectation over eps by quadrature),
// ancestral posterior coefficients and bits/dim against ../shared/testvectors/objectives.md.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "objectives/diffusion_terms.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;

double pixel(int k) { return 2.0 * (k + 0.5) / 256.0 - 1.0; }

TEST(DiffusionTerms, PriorKl) {
  struct Row { double gamma_1, x, want; };
  for (const Row& r : {Row{5, 0.0, 1.124878242e-5}, Row{5, 255.0 / 256, 3.331581358e-3},
                       Row{5, 1.0, 3.357674245e-3}, Row{6, 255.0 / 256, 1.228202749e-3}}) {
    auto kl = prior_kl(torch::tensor({r.x}, kF64), torch::tensor({r.gamma_1}, kF64));
    EXPECT_TRUE(RelNear(kl.item<double>(), r.want, 1e-6)) << "x=" << r.x << " gamma=" << r.gamma_1;
  }
}

double nll_at(double gamma_0, int k, double eps) {
  const double a = std::sqrt(1.0 / (1.0 + std::exp(gamma_0)));
  const double s = std::sqrt(1.0 / (1.0 + std::exp(-gamma_0)));
  auto x = torch::tensor({pixel(k)}, kF64);
  return reconstruction_nll(x, a * x + s * eps, torch::tensor({gamma_0}, kF64)).item<double>();
}

// E_eps[-log p(x | z_0)] by the trapezoid rule on eps in [-12, 12], fine enough that the
// smooth step where z_0 leaves the pixel's bin is resolved.
double expected_nll(double gamma_0, int k) {
  const int n = 48001;
  auto eps = torch::linspace(-12.0, 12.0, n, kF64);
  const double a = std::sqrt(1.0 / (1.0 + std::exp(gamma_0)));
  const double s = std::sqrt(1.0 / (1.0 + std::exp(-gamma_0)));
  auto x = torch::full({n}, pixel(k), kF64);
  auto nll = reconstruction_nll(x, a * x + s * eps, torch::tensor({gamma_0}, kF64));
  auto density = torch::exp(-0.5 * eps * eps) / std::sqrt(2 * M_PI);
  return torch::trapezoid(nll * density, eps).item<double>();
}

TEST(DiffusionTerms, ReconstructionPointwise) {
  EXPECT_TRUE(RelNear(nll_at(-13.3, 0, 0.0), 1.216183e-8, 1e-6));
  EXPECT_TRUE(RelNear(nll_at(-13.3, 0, 1.0), 5.093279e-6, 1e-6));
  EXPECT_TRUE(RelNear(nll_at(-13.3, 128, 0.0), 2.432365e-8, 1e-6));
  EXPECT_TRUE(RelNear(nll_at(-13.3, 128, 1.0), 5.093308e-6, 1e-6));
  EXPECT_TRUE(RelNear(nll_at(-10.0, 128, 0.0), 0.7709696, 1e-6));
  EXPECT_TRUE(RelNear(nll_at(-10.0, 128, 1.0), 1.270969, 1e-6));
}

TEST(DiffusionTerms, ReconstructionExpectation) {
  EXPECT_TRUE(RelNear(expected_nll(-13.3, 0), 3.622799e-3, 1e-6));
  EXPECT_TRUE(RelNear(expected_nll(-13.3, 128), 7.245598e-3, 1e-6));
  EXPECT_TRUE(RelNear(expected_nll(-10.0, 128), 1.270969, 1e-6));
}

TEST(DiffusionTerms, ReconstructionIsANormalisedDistribution) {
  // Summing p(x_k | z_0) over all 256 pixel values gives 1 for any z_0.
  auto grid = torch::arange(256, kF64);
  auto x = 2.0 * (grid + 0.5) / 256.0 - 1.0;
  auto z0 = torch::full({256}, 0.1234, kF64);
  auto p = torch::exp(-reconstruction_nll(x, z0, torch::tensor({-7.0}, kF64)));
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-12);
}

// The decoder over the whole 256-value grid, as it was computed before the window.
torch::Tensor full_grid_nll(const torch::Tensor& x, const torch::Tensor& z_0, double gamma_0) {
  const double alpha = std::sqrt(1.0 / (1.0 + std::exp(gamma_0)));
  auto rescaled = (z_0 / alpha).unsqueeze(-1);
  auto grid = 2.0 * (torch::arange(256, kF64) + 0.5) / 256.0 - 1.0;
  auto logits = -0.5 * std::exp(-gamma_0) * torch::square(rescaled - grid);
  auto k = torch::round((x + 1.0) * 128.0 - 0.5).to(torch::kLong).unsqueeze(-1);
  return torch::logsumexp(logits, -1) - logits.gather(-1, k).squeeze(-1);
}

TEST(DiffusionTerms, WindowedDecoderEqualsTheWholeGrid) {
  // Every pixel value, z_0 from noise up to 8 standard deviations (out of the grid at the ends),
  // at gamma_0 where the window is a few points wide (-13.3), wider (-6) and the whole grid (0).
  auto gen = at::detail::createCPUGenerator(3);
  auto x = (2.0 * (torch::arange(256, kF64) + 0.5) / 256.0 - 1.0).repeat({40});
  auto eps = at::randn({x.numel()}, gen, kF64) * 2.5;
  eps.slice(0, 0, 20).fill_(8.0);
  eps.slice(0, 20, 40).fill_(-8.0);
  for (double gamma_0 : {-13.3, -6.0, 0.0}) {
    const double a = std::sqrt(1.0 / (1.0 + std::exp(gamma_0)));
    const double s = std::sqrt(1.0 / (1.0 + std::exp(-gamma_0)));
    auto z0 = a * x + s * eps;
    auto got = reconstruction_nll(x, z0, torch::tensor({gamma_0}, kF64));
    auto want = full_grid_nll(x, z0, gamma_0);
    EXPECT_TRUE(torch::allclose(got, want, 1e-12, 1e-13)) << "gamma_0=" << gamma_0 << " max diff "
                                                         << (got - want).abs().max().item<double>();
  }
}

TEST(DiffusionTerms, AncestralStep) {
  const double gamma_t = 5.0, gamma_s = -13.3 + 18.3 * 0.999;
  EXPECT_TRUE(RelNear(gamma_s, 4.9817, 1e-9));
  EXPECT_TRUE(RelNear(-std::expm1(gamma_s - gamma_t), 0.018133572, 1e-6));
  auto c = ancestral_coefficients(gamma_s, gamma_t);
  EXPECT_TRUE(RelNear(c.c_z, 1.009129624, 1e-6));
  EXPECT_TRUE(RelNear(c.c_eps, 0.018237785, 1e-6));
  EXPECT_TRUE(RelNear(c.noise_std, 0.134201268, 1e-6));
}

TEST(DiffusionTerms, BitsPerDim) {
  EXPECT_TRUE(RelNear(bpd_per_nat(32 * 32 * 3), 4.696272920e-4, 1e-9));
  EXPECT_TRUE(RelNear(bpd_per_nat(64 * 64 * 3), 1.174068230e-4, 1e-9));
}

TEST(DiffusionTerms, PixelEncoding) {
  auto k = torch::tensor({0, 127, 255}, torch::kUInt8);
  auto x = encode_pixels(k);
  EXPECT_FLOAT_EQ(x[0].item<float>(), -1.0f + 1.0f / 256);
  EXPECT_FLOAT_EQ(x[1].item<float>(), -1.0f / 256);
  EXPECT_FLOAT_EQ(x[2].item<float>(), 1.0f - 1.0f / 256);
}

}  // namespace
}  // namespace vdm
