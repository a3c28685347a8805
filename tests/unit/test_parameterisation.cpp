// EDM preconditioning and Karras sigmas against ../shared/testvectors/objectives.md, and the
// eps / x / v / F conversions (each output that encodes eps decodes back to it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "evaluation/karras_sigmas.h"
#include "objectives/parameterisation.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;

TEST(Parameterisation, EdmCoefficients) {
  auto a = edm_coefficients(0.5);
  EXPECT_TRUE(RelNear(a.c_skip, 0.5, 1e-12));
  EXPECT_TRUE(RelNear(a.c_out, 0.353553, 0, 5e-7));  // printed to 6 decimals
  EXPECT_TRUE(RelNear(a.c_in, 1.414214, 1e-6));
  EXPECT_TRUE(RelNear(a.c_noise, -0.173287, 1e-5));
  EXPECT_TRUE(RelNear(a.loss_weight, 8.0, 1e-12));
  auto b = edm_coefficients(1.0);
  EXPECT_TRUE(RelNear(b.c_skip, 0.2, 1e-12));
  EXPECT_TRUE(RelNear(b.c_out, 0.447214, 1e-6));
  EXPECT_TRUE(RelNear(b.c_in, 0.894427, 1e-6));
  EXPECT_NEAR(b.c_noise, 0.0, 1e-15);
  EXPECT_TRUE(RelNear(b.loss_weight, 5.0, 1e-12));
}

TEST(Parameterisation, NoiseConditioningIsEdmCNoise) {
  // sigma_VE = exp(gamma/2)  =>  ln(sigma_VE)/4 = gamma/8.
  const double sigma = 0.5, gamma = 2.0 * std::log(sigma);
  auto c = noise_conditioning(torch::tensor({gamma}, torch::kFloat64));
  EXPECT_NEAR(c.item<float>(), edm_coefficients(sigma).c_noise, 1e-7);
}

TEST(Parameterisation, KarrasSigmas) {
  auto s = karras_sigmas(18);
  ASSERT_EQ(s.size(), 18u);
  EXPECT_TRUE(RelNear(s[0], 80.0, 1e-12));
  EXPECT_TRUE(RelNear(s[1], 57.585985, 1e-6));
  EXPECT_TRUE(RelNear(s[2], 40.785574, 1e-6));
  EXPECT_TRUE(RelNear(s[16], 0.007528, 1e-4));  // printed to 4 significant digits
  EXPECT_TRUE(RelNear(s[17], 0.002, 1e-12));
}

TEST(Parameterisation, RoundTripsThroughEps) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto gamma = torch::tensor({-10.0, -2.0, 0.0, 3.0}, opts);
  auto alpha = torch::sqrt(torch::sigmoid(-gamma)).view({4, 1, 1, 1});
  auto sigma = torch::sqrt(torch::sigmoid(gamma)).view({4, 1, 1, 1});
  auto x = at::rand({4, 1, 3, 3}, gen, opts) * 2 - 1;
  auto eps = at::randn({4, 1, 3, 3}, gen, opts);
  auto z = alpha * x + sigma * eps;
  for (const char* name : {"eps", "x", "v", "F"}) {
    auto p = make_parameterisation(name);
    auto out = p->from_eps(eps, z, alpha, sigma);
    EXPECT_TRUE(torch::allclose(p->to_eps(out, z, alpha, sigma), eps, 1e-9, 1e-9)) << name;
  }
  // The ideal outputs are the named quantities themselves.
  EXPECT_TRUE(torch::allclose(make_parameterisation("x")->from_eps(eps, z, alpha, sigma), x, 1e-9, 1e-9));
  EXPECT_TRUE(torch::allclose(make_parameterisation("v")->from_eps(eps, z, alpha, sigma),
                              alpha * eps - sigma * x, 1e-9, 1e-9));
  // EDM: c_in makes the network input unit-variance for data of std sigma_data.
  auto f = make_parameterisation("F");
  auto ve = (sigma / alpha);
  EXPECT_TRUE(torch::allclose(f->network_input(z, alpha, sigma),
                              (z / alpha) / torch::sqrt(ve * ve + 0.25), 1e-12, 1e-12));
  EXPECT_THROW(make_parameterisation("score"), std::invalid_argument);
}

}  // namespace
}  // namespace vdm
