// vdm::group_norm_silu against LibTorch's group_norm, affine and silu in float64: values and
// the gradients of x, scale and shift, in NCHW and channels-last, for shapes whose channels and
// pixels are not multiples of the eight lanes, data far from zero mean, any thread count, and
// with both kernel sets (AVX2+FMA and the baseline).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/group_norm_silu.h"

namespace vdm {
namespace {

struct Case {
  int64_t n, c, h, w, groups;
  bool channels_last, silu;
  double offset;  // added to x: tests the shifted sums
};

torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift,
                        int64_t groups, bool silu) {
  auto z = torch::group_norm(x, groups, {}, {}, 1e-6) * scale.unsqueeze(-1).unsqueeze(-1) +
           shift.unsqueeze(-1).unsqueeze(-1);
  return silu ? torch::silu(z) : z;
}

void check(const Case& k) {
  SCOPED_TRACE(::testing::Message() << "N" << k.n << " C" << k.c << " " << k.h << "x" << k.w << " G" << k.groups
                                    << (k.channels_last ? " NHWC" : " NCHW") << (k.silu ? " silu" : "")
                                    << " offset " << k.offset);
  torch::manual_seed(7);
  auto x = (torch::randn({k.n, k.c, k.h, k.w}) * 2 + k.offset);
  if (k.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  x.requires_grad_(true);
  auto scale = (torch::randn({k.n, k.c}) * 0.5 + 1).requires_grad_(true);
  auto shift = torch::randn({k.n, k.c}).requires_grad_(true);
  const auto dy = torch::randn({k.n, k.c, k.h, k.w});

  const auto y = group_norm_silu(x, scale, shift, {k.groups, 1e-6, k.silu});
  EXPECT_EQ(y.is_contiguous(torch::MemoryFormat::ChannelsLast) && !y.is_contiguous(), k.channels_last && k.h * k.w > 1);
  y.backward(dy);

  auto x64 = x.detach().to(torch::kFloat64).requires_grad_(true);
  auto s64 = scale.detach().to(torch::kFloat64).requires_grad_(true);
  auto b64 = shift.detach().to(torch::kFloat64).requires_grad_(true);
  const auto y64 = reference(x64, s64, b64, k.groups, k.silu);
  y64.backward(dy.to(torch::kFloat64));

  auto close = [](const torch::Tensor& got, const torch::Tensor& want, double tol) {
    const double err = (got.to(torch::kFloat64) - want).abs().max().item<double>();
    const double size = want.abs().max().item<double>();
    EXPECT_LT(err, tol * std::max(size, 1.0)) << "max error " << err << " against values up to " << size;
  };
  close(y, y64, 2e-5);
  close(x.grad(), x64.grad(), 5e-5);
  close(scale.grad(), s64.grad(), 5e-5);
  close(shift.grad(), b64.grad(), 5e-5);
}

TEST(GroupNormSilu, MatchesGroupNormAffineSiluInBothLayouts) {
  for (bool channels_last : {false, true})
    for (bool silu : {true, false}) {
      check({3, 32, 8, 8, 32, channels_last, silu, 0.0});   // one channel per group, rows of 8
      check({2, 12, 5, 3, 4, channels_last, silu, 0.0});   // channels and pixels off the lanes
      check({2, 64, 16, 16, 32, channels_last, silu, 0.0});
      check({1, 40, 1, 1, 8, channels_last, silu, 0.0});   // one pixel: the group spans channels only
    }
}

// The baseline (non-AVX2) kernel set, which the machines CI runs on would otherwise never take.
TEST(GroupNormSilu, BaselineKernelsMatchToo) {
  torch::manual_seed(1);
  const auto x = torch::randn({2, 64, 16, 16}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto scale = torch::randn({2, 64}), shift = torch::randn({2, 64});
  const auto vectorised = group_norm_silu(x, scale, shift, {32, 1e-6, true});
  group_norm_silu_force_baseline(true);
  const auto baseline = group_norm_silu(x, scale, shift, {32, 1e-6, true});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))  // FMA rounds differently: the switch took
    EXPECT_FALSE(torch::equal(vectorised, baseline));
  EXPECT_TRUE(torch::allclose(vectorised, baseline, 1e-5, 1e-6));
  for (bool channels_last : {false, true}) {
    check({2, 12, 5, 3, 4, channels_last, true, 0.0});
    check({2, 64, 16, 16, 32, channels_last, true, 0.0});
    check({2, 16, 6, 6, 4, channels_last, false, 300.0});
  }
  group_norm_silu_force_baseline(false);
}

TEST(GroupNormSilu, StatisticsSurviveALargeMean) {
  for (bool channels_last : {false, true}) check({2, 16, 6, 6, 4, channels_last, true, 300.0});
}

TEST(GroupNormSilu, SameResultForAnyThreadCount) {
  const int threads = torch::get_num_threads();
  torch::manual_seed(3);
  const auto x = torch::randn({4, 24, 7, 7}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto scale = torch::randn({4, 24}), shift = torch::randn({4, 24});
  torch::set_num_threads(1);
  const auto one = group_norm_silu(x, scale, shift, {8, 1e-6, true});
  torch::set_num_threads(2);
  const auto two = group_norm_silu(x, scale, shift, {8, 1e-6, true});
  torch::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
}

TEST(GroupNormSilu, RefusesWhatItCannotRun) {
  const auto ok = torch::randn({2, 8, 4, 4});
  const auto nc = torch::ones({2, 8});
  EXPECT_FALSE(group_norm_silu_supported(ok.to(torch::kBFloat16)));
  EXPECT_FALSE(group_norm_silu_supported(ok.transpose(2, 3)));
  EXPECT_FALSE(group_norm_silu_supported(ok.flatten(2)));
  EXPECT_THROW(group_norm_silu(ok, nc, nc, {3, 1e-6, true}), c10::Error);  // 8 channels, 3 groups
  EXPECT_THROW(group_norm_silu(ok, torch::ones({8}), nc, {4, 1e-6, true}), c10::Error);
}

}  // namespace
}  // namespace vdm
