// Evaluation: the ancestral sampler with an oracle denoiser (data = one known image, so every
// sample must decode to it) and its determinism, sample grids read back from PNG, and test-set
// bits/dim against the objective's own per-sample VLB, split across (simulated) ranks.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "data/image_codec.h"
#include "evaluation/ancestral_sampler.h"
#include "evaluation/bpd_evaluator.h"
#include "evaluation/image_grid.h"
#include "objectives/diffusion_terms.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;
using testing::RelNear;
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);

torch::Tensor random_pixels(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(0, 256, shape, g, torch::TensorOptions().dtype(torch::kLong)).to(torch::kUInt8);
}

// The exact denoiser for a point mass at x0: eps_hat = (z - alpha x0) / sigma, handed over in
// the parameterisation's own output. gamma comes back from c_noise = gamma / 8, and z from the
// network input (which only F rescales).
Denoiser oracle(const Parameterisation& param, const torch::Tensor& x0) {
  return [&param, x0](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor&) {
    auto gamma = (8.0 * c.to(torch::kFloat64)).view({-1, 1, 1, 1});
    auto a = torch::sqrt(torch::sigmoid(-gamma)), s = torch::sqrt(torch::sigmoid(gamma));
    auto input = in.to(torch::kFloat64);
    auto z = param.name() == "F" ? input * a * torch::sqrt(torch::square(s / a) + 0.25) : input;
    auto eps = (z - a * x0) / s;
    return param.from_eps(eps, z, a, s).to(in.scalar_type());
  };
}

TEST(AncestralSampler, OracleDenoiserReproducesThePointMass) {
  auto pixels = random_pixels({3, 4, 4}, 1);
  auto x0 = encode_pixels(pixels).to(torch::kFloat64);
  auto schedule = make_schedule(ScheduleOptions{});
  for (const std::string name : {"eps", "x", "v", "F"}) {
    auto param = make_parameterisation(name);
    auto gen = at::detail::createCPUGenerator(3);
    auto out = sample_ancestral(oracle(*param, x0), *schedule, *param, {6, 3, 4, 4}, {},
                                AncestralSamplerOptions{100}, gen, kF64);
    ASSERT_EQ(out.scalar_type(), torch::kUInt8);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{6, 3, 4, 4}));
    EXPECT_TRUE(torch::equal(out, pixels.unsqueeze(0).expand({6, 3, 4, 4}))) << name;
  }
  // In float32 the network's rounding may move a pixel now and then, not more.
  auto param = make_parameterisation("eps");
  auto gen = at::detail::createCPUGenerator(4);
  auto out = sample_ancestral(oracle(*param, x0), *schedule, *param, {6, 3, 4, 4}, {},
                              AncestralSamplerOptions{100}, gen, kF32);
  auto wrong = (out != pixels.unsqueeze(0)).sum().item<int64_t>();
  EXPECT_LE(wrong, 3) << "pixels off by a level or more, of " << out.numel();
}

TEST(AncestralSampler, SameGeneratorStateSameImages) {
  auto schedule = make_schedule(ScheduleOptions{});
  auto param = make_parameterisation("eps");
  Denoiser net = [](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor&) {
    return 0.5 * torch::tanh(in) + 0.1 * c.view({-1, 1, 1, 1});
  };
  auto draw = [&](uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    return sample_ancestral(net, *schedule, *param, {2, 1, 8, 8}, {}, AncestralSamplerOptions{20},
                            gen, kF32);
  };
  auto a = draw(7), b = draw(7), c = draw(8);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_FALSE(torch::equal(a[0], a[1]));
}

TEST(AncestralSampler, ToPixelsRoundsToTheNearestLevel) {
  auto levels = encode_pixels(torch::arange(256).to(torch::kUInt8)).to(torch::kFloat64);
  EXPECT_TRUE(torch::equal(to_pixels(levels), torch::arange(256).to(torch::kUInt8)));
  // Just inside a level's bin still rounds to it; out of range clamps.
  auto x = torch::tensor({-5.0, -1.0 + 1.0 / 128 - 1e-9, -1.0 + 1.0 / 128 + 1e-9, 1.0, 5.0}, kF64);
  auto k = to_pixels(x);
  EXPECT_EQ(k[0].item<int>(), 0);
  EXPECT_EQ(k[1].item<int>(), 0);
  EXPECT_EQ(k[2].item<int>(), 1);
  EXPECT_EQ(k[3].item<int>(), 255);
  EXPECT_EQ(k[4].item<int>(), 255);
}

TEST(ImageGrid, TilesReadBackFromPng) {
  auto images = random_pixels({5, 3, 4, 4}, 9);
  const auto path =
      (fs::temp_directory_path() / ("vdm_grid_" + std::to_string(::getpid()) + ".png")).string();
  write_image_grid(path, images, /*columns=*/3, /*padding=*/1);
  auto png = read_image_file(path, 3);
  fs::remove(path);
  ASSERT_EQ(png.width, 3 * 4 + 4);
  ASSERT_EQ(png.height, 2 * 4 + 3);
  auto grid = torch::from_blob(png.pixels.data(), {png.height, png.width, 3}, torch::kUInt8)
                  .permute({2, 0, 1});
  for (int64_t n = 0; n < 5; ++n) {
    const int64_t y = 1 + (n / 3) * 5, x = 1 + (n % 3) * 5;
    EXPECT_TRUE(torch::equal(grid.slice(1, y, y + 4).slice(2, x, x + 4), images[n])) << n;
  }
  // Padding rows and the unused sixth tile are the pad colour.
  EXPECT_TRUE((grid.select(1, 0) == 255).all().item<bool>());
  EXPECT_TRUE((grid.slice(1, 6, 10).slice(2, 11, 15) == 255).all().item<bool>());
}

TEST(ImageGrid, DefaultColumnsAndGray) {
  auto grid = make_grid(random_pixels({5, 1, 6, 6}, 2), 0, 2);
  EXPECT_EQ(grid.channels, 1);
  EXPECT_EQ(grid.width, 3 * 6 + 4 * 2);   // ceil(sqrt(5)) = 3 columns
  EXPECT_EQ(grid.height, 2 * 6 + 3 * 2);  // 2 rows
  EXPECT_THROW(make_grid(torch::zeros({2, 2, 4, 4}, torch::kUInt8)), std::invalid_argument);
  EXPECT_THROW(make_grid(torch::zeros({2, 3, 4, 4})), std::invalid_argument);
}

// Random 1x4x4 images held in memory.
class MemoryDataset : public Dataset {
 public:
  explicit MemoryDataset(int64_t n, int64_t classes = 0)
      : images_(random_pixels({n, 1, 4, 4}, 17).contiguous()), classes_(classes) {}
  int64_t size() const override { return images_.size(0); }
  int64_t channels() const override { return 1; }
  int64_t resolution() const override { return 4; }
  int64_t num_classes() const override { return classes_; }
  int64_t label(int64_t index) const override { return classes_ > 0 ? index % classes_ : 0; }
  void read(int64_t index, uint8_t* out) const override {
    std::memcpy(out, images_[index].data_ptr<uint8_t>(), sample_bytes());
  }
  std::string source(int64_t index) const override { return "memory #" + std::to_string(index); }
  const torch::Tensor& images() const { return images_; }

 private:
  torch::Tensor images_;
  int64_t classes_;
};

// A rank's view of an all-reduce: `add` (the other ranks' sums) is added in place; every
// call's input is recorded.
class FakeCommunicator : public Communicator {
 public:
  FakeCommunicator(int rank, int world) : rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "mpi"; }
  void all_reduce(torch::Tensor& t, ReduceOp) override {
    seen.push_back(t.clone());
    if (add.defined()) t += add;
  }
  WorkPtr all_reduce_async(torch::Tensor&, ReduceOp) override { throw std::logic_error("unused"); }
  void broadcast(torch::Tensor&, int) override { throw std::logic_error("unused"); }
  torch::Tensor all_gather(const torch::Tensor&) override { throw std::logic_error("unused"); }
  void reduce(torch::Tensor&, int, ReduceOp) override { throw std::logic_error("unused"); }
  void barrier() override {}
  std::vector<torch::Tensor> seen;
  torch::Tensor add;

 private:
  int rank_, world_;
};

Denoiser zero_network() {
  return [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) {
    return torch::zeros_like(in);
  };
}

// The schedule estimator with one draw is the VLB objective's per-sample value at the split's
// lattice uniforms, batch by batch.
TEST(Bpd, MatchesTheObjectivesPerSampleVlb) {
  MemoryDataset data(20);
  auto vlb = make_vlb(ObjectiveOptions{}, make_schedule(ScheduleOptions{}));
  BpdOptions options;
  options.batch_size = 8;
  options.seed = 5;
  options.estimator = "schedule";
  options.draws = 1;
  auto result = evaluate_bpd(*vlb, zero_network(), data, nullptr, 0, 1, options, kF32);

  // The same batches (8, 8, 4) through the objective with rank 0's generator (seed itself).
  auto gen = at::detail::createCPUGenerator(5);
  std::vector<torch::Tensor> bpd;
  for (int64_t i = 0; i < 20; i += 8) {
    const int64_t end = std::min<int64_t>(i + 8, 20);
    auto x = encode_pixels(data.images().slice(0, i, end));
    std::vector<int64_t> indices;
    for (int64_t j = i; j < end; ++j) indices.push_back(j);
    ProposalContext ctx;
    ctx.uniforms = split_uniforms(5, indices, 1);
    auto out = vlb->forward(zero_network(), x, {}, LossRng{gen, gen}, ctx);
    bpd.push_back(out.per_sample.to(torch::kFloat64) * out.bpd_per_nat);
  }
  auto all = torch::cat(bpd);
  const double mean = all.mean().item<double>();
  const double stderr_want = std::sqrt(all.var().item<double>() / 20.0);
  EXPECT_EQ(result.samples, 20);
  EXPECT_EQ(result.estimator, "schedule");
  EXPECT_TRUE(RelNear(result.bpd, mean, 1e-12));
  EXPECT_TRUE(RelNear(result.bpd_stderr, stderr_want, 1e-9));
  EXPECT_TRUE(std::isnan(result.mc_stderr));
  EXPECT_GT(result.bpd, 0);
  double terms = 0;
  for (const auto& [name, value] : result.terms_bpd) terms += value;
  EXPECT_EQ(result.terms_bpd.size(), 3u);
  EXPECT_TRUE(RelNear(terms, result.bpd, 1e-12));

  auto again = evaluate_bpd(*vlb, zero_network(), data, nullptr, 0, 1, options, kF32);
  EXPECT_EQ(again.bpd, result.bpd);

  // T-step VLB and max_samples; the importance estimator needs continuous time, so a T-step
  // objective runs the schedule's.
  ObjectiveOptions discrete;
  discrete.timesteps = 10;
  auto vlb10 = make_vlb(discrete, make_schedule(ScheduleOptions{}));
  options.max_samples = 7;
  options.estimator = "importance";
  auto r10 = evaluate_bpd(*vlb10, zero_network(), data, nullptr, 0, 1, options, kF32);
  EXPECT_EQ(r10.samples, 7);
  EXPECT_EQ(r10.estimator, "schedule");
  EXPECT_TRUE(std::isfinite(r10.bpd) && r10.bpd > 0);
}

// The lattice: u = frac(u0 + n phi + k / draws), the same offset for every index.
TEST(Bpd, SplitUniformsAreOneShiftedLattice) {
  auto u = split_uniforms(9, {0, 1, 7}, 2);
  ASSERT_EQ(u.numel(), 6);
  const double phi = (std::sqrt(5.0) - 1.0) / 2.0, u0 = u[0].item<double>();
  EXPECT_NEAR(u[1].item<double>(), std::fmod(u0 + 0.5, 1.0), 1e-12);
  EXPECT_NEAR(u[2].item<double>(), std::fmod(u0 + phi, 1.0), 1e-12);
  EXPECT_NEAR(u[4].item<double>(), std::fmod(u0 + std::fmod(7 * phi, 1.0), 1.0), 1e-12);
  EXPECT_TRUE(torch::equal(split_uniforms(9, {7}, 2), u.slice(0, 4, 6)));
  EXPECT_FALSE(torch::equal(split_uniforms(10, {0}, 1), u.slice(0, 0, 1)));
}

// eps_hat = 0.9 z: the error grows from ~0.1 eps at low SNR to ~0.9 x - eps at high SNR, a lambda
// profile as lopsided as a trained model's.
Denoiser shrinking_network() {
  return [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) { return 0.9 * in; };
}

// Both estimators are unbiased for the same VLB; importance sampling in lambda has a far smaller
// standard error at equal cost, and with several draws reports the Monte-Carlo part of it.
TEST(Bpd, ImportanceSamplingIsUnbiasedAndSharper) {
  MemoryDataset data(600);
  auto vlb = make_vlb(ObjectiveOptions{}, make_schedule(ScheduleOptions{}));
  BpdOptions options;
  options.batch_size = 256;
  options.seed = 3;
  options.estimator = "schedule";
  options.draws = 64;
  auto truth = evaluate_bpd(*vlb, shrinking_network(), data, nullptr, 0, 1, options, kF32);
  options.draws = 2;
  auto plain = evaluate_bpd(*vlb, shrinking_network(), data, nullptr, 0, 1, options, kF32);
  options.estimator = "importance";
  options.pilot = 512;
  auto importance = evaluate_bpd(*vlb, shrinking_network(), data, nullptr, 0, 1, options, kF32);
  EXPECT_EQ(importance.estimator, "importance");
  // The Monte-Carlo error of the 64-draw reference and of the importance estimate; the images
  // are the same, so their spread cancels between the two.
  const double se = std::hypot(truth.mc_stderr, importance.mc_stderr);
  EXPECT_NEAR(importance.bpd, truth.bpd, 4 * se) << "se " << se;
  EXPECT_LT(importance.mc_stderr, 0.5 * plain.mc_stderr);
  EXPECT_LT(importance.bpd_stderr, plain.bpd_stderr);
  EXPECT_GT(importance.mc_stderr, 0);
  EXPECT_LE(importance.mc_stderr, importance.bpd_stderr * (1 + 1e-12));
}

// Given the training weighting, the same draws estimate the augmented ELBO; with w = 1 it is the
// bits/dim less the reconstruction term, draw for draw.
TEST(Bpd, AugmentedElboOfTheTrainingWeighting) {
  MemoryDataset data(40);
  auto vlb = make_vlb(ObjectiveOptions{}, make_schedule(ScheduleOptions{}));
  BpdOptions options;
  options.pilot = 64;
  options.weighting = [](const torch::Tensor& lambda) { return torch::ones_like(lambda); };
  options.weighting_range = {-5.0, 13.3};
  auto r = evaluate_bpd(*vlb, shrinking_network(), data, nullptr, 0, 1, options, kF32);
  EXPECT_TRUE(RelNear(r.augmented_elbo_bpd, r.bpd - r.terms_bpd.at("reconstruction"), 1e-9));
  EXPECT_TRUE(RelNear(r.loss_normalised, r.terms_bpd.at("diffusion") * std::log(2.0), 1e-9));
  EXPECT_GT(r.augmented_elbo_stderr, 0);
  // Without a weighting nothing is estimated.
  options.weighting = nullptr;
  EXPECT_TRUE(std::isnan(evaluate_bpd(*vlb, shrinking_network(), data, nullptr, 0, 1, options, kF32).augmented_elbo_bpd));
}

// Class-conditional models are scored on the null label unless -log p(x | y) is asked for.
TEST(Bpd, NullLabelUnlessConditional) {
  MemoryDataset data(12, 3);
  auto vlb = make_vlb(ObjectiveOptions{}, make_schedule(ScheduleOptions{}));
  std::vector<int64_t> seen;
  const Denoiser recording = [&seen](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor& labels) {
    EXPECT_TRUE(labels.defined());
    for (int64_t i = 0; i < labels.numel(); ++i) seen.push_back(labels[i].item<int64_t>());
    return torch::zeros_like(in);
  };
  BpdOptions options;
  options.null_label = 3;
  options.pilot = 8;
  auto r = evaluate_bpd(*vlb, recording, data, nullptr, 0, 1, options, kF32);
  EXPECT_FALSE(r.conditional);
  ASSERT_FALSE(seen.empty());
  for (int64_t l : seen) EXPECT_EQ(l, 3);
  seen.clear();
  options.conditional = true;
  options.pilot = 0;
  options.draws = 1;
  options.batch_size = 12;
  r = evaluate_bpd(*vlb, recording, data, nullptr, 0, 1, options, kF32);
  EXPECT_TRUE(r.conditional);
  ASSERT_EQ(seen.size(), 12u);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(seen[size_t(i)], i % 3);
}

TEST(Bpd, RanksShareTheSplitAndReduceOnce) {
  MemoryDataset data(20);
  auto vlb = make_vlb(ObjectiveOptions{}, make_schedule(ScheduleOptions{}));
  BpdOptions options;
  options.batch_size = 4;
  options.estimator = "schedule";
  options.draws = 1;
  // world 3 over 20 samples: 7, 7, 6.
  std::vector<BpdResult> local;
  std::vector<torch::Tensor> sums;
  for (int r = 0; r < 3; ++r) {
    FakeCommunicator comm(r, 3);
    local.push_back(evaluate_bpd(*vlb, zero_network(), data, &comm, r, 3, options, kF32));
    ASSERT_EQ(comm.seen.size(), 1u);
    sums.push_back(comm.seen[0]);
  }
  EXPECT_EQ(local[0].samples, 7);
  EXPECT_EQ(local[1].samples, 7);
  EXPECT_EQ(local[2].samples, 6);
  EXPECT_NE(local[0].bpd, local[1].bpd);

  FakeCommunicator comm(0, 3);
  comm.add = sums[1] + sums[2];
  auto total = evaluate_bpd(*vlb, zero_network(), data, &comm, 0, 3, options, kF32);
  EXPECT_EQ(total.samples, 20);
  const double want = (7 * local[0].bpd + 7 * local[1].bpd + 6 * local[2].bpd) / 20;
  EXPECT_TRUE(RelNear(total.bpd, want, 1e-12));
  for (const auto& [name, value] : total.terms_bpd) {
    const double w = (7 * local[0].terms_bpd.at(name) + 7 * local[1].terms_bpd.at(name) +
                      6 * local[2].terms_bpd.at(name)) / 20;
    EXPECT_TRUE(RelNear(value, w, 1e-12)) << name;
  }

  // A rank left without samples still takes part in the reduction.
  options.max_samples = 2;
  FakeCommunicator idle(2, 3);
  auto none = evaluate_bpd(*vlb, zero_network(), data, &idle, 2, 3, options, kF32);
  ASSERT_EQ(idle.seen.size(), 1u);
  EXPECT_EQ(none.samples, 0);
  EXPECT_EQ(idle.seen[0].sum().item<double>(), 0.0);

  // The importance estimator reduces its pilot histogram first, on every rank, idle ones too.
  options.estimator = "importance";
  FakeCommunicator idle2(2, 3);
  evaluate_bpd(*vlb, zero_network(), data, &idle2, 2, 3, options, kF32);
  EXPECT_EQ(idle2.seen.size(), 2u);
}

TEST(Bpd, MeanAndStandardError) {
  // 1, 2, 3, 4: mean 2.5, unbiased variance 5/3, standard error sqrt(5/12).
  auto s = mean_and_stderr(10, 30, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_TRUE(RelNear(s.standard_error, std::sqrt(5.0 / 12.0), 1e-14));
  EXPECT_EQ(mean_and_stderr(3, 9, 1).standard_error, 0.0);
  EXPECT_TRUE(std::isnan(mean_and_stderr(0, 0, 0).mean));
}

}  // namespace
}  // namespace vdm
