// vdm::Dropout: the counter-hash keep mask has the right share and scale, is the same for any
// number of threads, differs between seeds with no visible correlation between neighbours, and
// the module draws its seed from LibTorch's default generator (reproducible from its state).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/dropout.h"

namespace vdm {
namespace {

TEST(Dropout, KeepMaskHasTheShareAndScale) {
  const double p = 0.1;
  const auto mask = dropout_keep_mask({1 << 20}, p, 12345);
  const auto kept = (mask > 0).to(torch::kFloat64);
  const double share = kept.mean().item<double>();
  EXPECT_NEAR(share, 1 - p, 5 * std::sqrt(p * (1 - p) / double(1 << 20)));
  EXPECT_TRUE(torch::allclose(mask.masked_select(mask > 0), torch::full({1}, float(1 / (1 - p)))));
  EXPECT_NEAR(mask.to(torch::kFloat64).mean().item<double>(), 1.0, 0.002);  // E[x * mask] = x
  // Neighbours and seeds: correlations at the level of chance (1/sqrt(n) ~ 0.001).
  const auto a = kept.narrow(0, 0, (1 << 20) - 1) - share, b = kept.narrow(0, 1, (1 << 20) - 1) - share;
  EXPECT_LT(std::abs((a * b).mean().item<double>() / (share * (1 - share))), 0.005);
  const auto other = (dropout_keep_mask({1 << 20}, p, 12346) > 0).to(torch::kFloat64) - share;
  EXPECT_LT(std::abs(((kept - share) * other).mean().item<double>() / (share * (1 - share))), 0.005);
}

TEST(Dropout, MaskIsTheSameForAnyThreadCount) {
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  const auto one = dropout_keep_mask({3, 70000}, 0.3, 99);
  torch::set_num_threads(2);
  const auto two = dropout_keep_mask({3, 70000}, 0.3, 99);
  torch::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_FALSE(torch::equal(one, dropout_keep_mask({3, 70000}, 0.3, 100)));
}

TEST(Dropout, SeedComesFromTheDefaultGeneratorAndEvalIsIdentity) {
  Dropout drop(0.25);
  const auto x = torch::randn({4, 8, 5, 5}, torch::requires_grad());
  torch::manual_seed(5);
  const auto y1 = drop(x);
  torch::manual_seed(5);
  const auto y2 = drop(x);
  EXPECT_TRUE(torch::equal(y1, y2));
  EXPECT_FALSE(torch::equal(y1, drop(x)));
  y1.sum().backward();  // the gradient is the mask itself
  EXPECT_TRUE(torch::equal(x.grad() != 0, y1 != 0));
  drop->eval();
  EXPECT_TRUE(torch::equal(drop(x), x));
}

// On channels-last input the mask is made in that layout, so the product stays NHWC (a mixed
// product would be strided and slow); the kept share is the same.
TEST(Dropout, ChannelsLastInputKeepsItsLayout) {
  Dropout drop(0.2);
  const auto x = torch::ones({4, 16, 9, 9}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto y = drop(x);
  EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_FALSE(y.is_contiguous());
  const double kept = (y > 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.8, 5 * std::sqrt(0.2 * 0.8 / double(x.numel())));
}

}  // namespace
}  // namespace vdm
