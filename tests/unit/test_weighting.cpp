// Weightings w(lambda) against ../shared/testvectors/objectives.md, and each weighting's
// monotonicity flag against a dense numerical check.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "objectives/weighting.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

struct Row {
  WeightingOptions options;
  double expected[4];  // lambda = -2, 0, 2, 5
  bool monotone;
};

WeightingOptions named(const std::string& name, double bias = 0.0, double k = 5.0) {
  WeightingOptions o;
  o.name = name;
  o.bias = bias;
  o.k = k;
  return o;
}

TEST(Weighting, TestVectors) {
  const std::vector<Row> rows = {
      {named("elbo"), {1, 1, 1, 1}, true},
      {named("sigmoid", 0.0), {0.880797, 0.5, 0.119203, 0.006693}, true},
      {named("sigmoid", 2.0), {0.982014, 0.880797, 0.5, 0.047426}, true},
      {named("iddpm"), {0.648054, 1, 0.648054, 0.163071}, false},
      {named("v_mse"), {2.718282, 1, 0.367879, 0.082085}, true},
      {named("edm"), {0.946112, 0.504106, 0.252677, 0.094930}, false},
      {named("edm_monotonic"), {0.946112, 0.504106, 0.252677, 0.094930}, true},
      {named("min_snr", 0.0, 5.0), {0.648054, 1, 0.438523, 0.005494}, false},
  };
  auto lambda = torch::tensor({-2.0, 0.0, 2.0, 5.0}, torch::kFloat64);
  for (const auto& row : rows) {
    auto w = make_weighting(row.options);
    auto got = (*w)(lambda);
    EXPECT_EQ(got.scalar_type(), torch::kFloat64);
    for (int i = 0; i < 4; ++i)
      // The vectors are printed to 6 decimals: compare to their last printed digit.
      EXPECT_NEAR(got[i].item<double>(), row.expected[i], 6e-7)
          << row.options.name << " at lambda index " << i;
    EXPECT_EQ(w->monotone(), row.monotone) << row.options.name;
  }
}

TEST(Weighting, EdmPeak) {
  WeightingOptions o = named("edm");
  const double peak = edm_weighting_peak(o);
  EXPECT_NEAR(peak, -3.3077775, 1e-6);
  auto w = make_weighting(o);
  EXPECT_NEAR((*w)(torch::tensor({peak}, torch::kFloat64)).item<double>(), 1.0841086, 1e-6);
  auto mono = make_weighting(named("edm_monotonic"));
  auto flat = (*mono)(torch::tensor({-20.0, -10.0, peak}, torch::kFloat64));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(flat[i].item<double>(), 1.0841086, 1e-6);
}

TEST(Weighting, MonotoneFlagMatchesNumericalCheck) {
  auto lambda = torch::linspace(-20.0, 20.0, 8001, torch::kFloat64);
  for (const char* name : {"elbo", "sigmoid", "edm", "edm_monotonic", "iddpm", "v_mse", "min_snr",
                           "p2", "flow_matching"}) {
    auto w = make_weighting(named(name));
    auto v = (*w)(lambda);
    auto step = v.slice(0, 1) - v.slice(0, 0, -1);
    const bool non_increasing = (step <= 1e-12).all().item<bool>();
    EXPECT_EQ(w->monotone(), non_increasing) << name;
    EXPECT_TRUE((v >= 0).all().item<bool>()) << name;
  }
}

TEST(Weighting, P2AndFlowMatching) {
  WeightingOptions o = named("p2");
  o.p2_k = 1.0;
  o.gamma = 0.5;
  auto w = make_weighting(o);
  const double l = 1.3;
  const double expected = (1.0 / std::cosh(l / 2)) / std::sqrt(1.0 + std::exp(l));
  EXPECT_NEAR((*w)(torch::tensor({l}, torch::kFloat64)).item<double>(), expected, 1e-14);
  auto fm = make_weighting(named("flow_matching"));
  EXPECT_NEAR((*fm)(torch::tensor({l}, torch::kFloat64)).item<double>(), std::exp(-l / 2), 1e-14);
}

TEST(Weighting, UnknownNameIsAnError) {
  EXPECT_THROW(make_weighting(named("edm_monotone")), std::invalid_argument);
}

}  // namespace
}  // namespace vdm
