// TrainStep built from C++ with a one-convolution denoiser and a deterministic loss: clipping at a
// known norm, a denoiser that returns NaN (update skipped, counted, stop after K), and gradient
// accumulation over micro-batches equal to one big batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <memory>

#include "distributed/self_communicator.h"
#include "distributed/watchdog.h"
#include "training/train_step.h"

namespace vdm {
namespace {

// One 3x3 convolution; `poison` multiplies its output by NaN.
struct ConvDenoiserImpl : DenoiserNetImpl {
  explicit ConvDenoiserImpl(bool poison) : poison(poison) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 1, 3).padding(1)));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&, const torch::Tensor& labels) override {
    if (labels.defined()) seen_labels = labels.clone();
    auto y = conv(x);
    return poison ? y * std::numeric_limits<double>::quiet_NaN() : y;
  }
  std::string describe() const override { return "conv"; }
  bool poison;
  torch::nn::Conv2d conv{nullptr};
  torch::Tensor seen_labels;
};

// A loss without randomness: the denoiser maps x to x (per sample: summed squares; the loss:
// the batch mean per dimension), so micro-batches can be compared with one batch exactly.
struct IdentityLossImpl : ObjectiveImpl {
  IdentityLossImpl() : ObjectiveImpl(ObjectiveOptions{"eps_mse"}, make_schedule(ScheduleOptions{})) {}
  LossOutput forward(const Denoiser& denoiser, const torch::Tensor& x, const torch::Tensor& labels, LossRng,
                     const ProposalContext&) override {
    LossOutput out;
    out.per_sample = torch::square(denoiser(x, torch::zeros({x.size(0)}), labels) - x).flatten(1).sum(1);
    out.loss = out.per_sample.mean() / double(x[0].numel());
    return out;
  }
  torch::Tensor weighting(const torch::Tensor& lambda) const override { return torch::ones_like(lambda); }
  bool monotone() const override { return true; }
};

Batch batch_of(int64_t first, int64_t n) {
  torch::manual_seed(uint64_t(first) + 100);
  Batch b;
  b.images = torch::randint(0, 256, {n, 1, 6, 6}, torch::kUInt8);
  b.labels = torch::zeros({n}, torch::kInt64);
  b.state_after.consumed = first + n;
  return b;
}

// Everything a TrainStep works on, with plain SGD so that an update is -lr * gradient.
struct Rig {
  explicit Rig(bool poison = false, double clip = 0, int64_t accum = 1, double label_dropout = -1) {
    torch::manual_seed(1);
    model = std::make_shared<ConvDenoiserImpl>(poison);
    ema = Ema(*model, EmaOptions{});
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(1.0));
    reducer = std::make_unique<GradientReducer>(GradientReducer::named(model->named_parameters()), comm);
    TrainStepOptions o;
    o.grad_clip = clip;
    o.grad_accum = accum;
    if (label_dropout >= 0) {
      o.class_conditional = true;
      o.num_classes = 10;
      o.label_dropout = label_dropout;
    }
    step = std::make_unique<TrainStep>(o, TrainStepParts{model, objective, ema, *optimizer, *reducer, *comm, *comm,
                                                         watchdog, rng});
  }
  torch::Tensor weights() const { return model->conv->weight.detach().clone(); }
  StepResult run(std::vector<Batch> batches, double lr = 1.0) {
    size_t i = 0;
    return step->run(0, lr, [&] { return batches.at(i++); });
  }
  std::shared_ptr<ConvDenoiserImpl> model;
  Objective objective = std::make_shared<IdentityLossImpl>();
  Ema ema{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer;
  CommunicatorPtr comm = std::make_shared<SelfCommunicator>();
  std::unique_ptr<GradientReducer> reducer;
  Watchdog watchdog{0};
  RngStreams rng{0, 0, c10::kCPU};
  std::unique_ptr<TrainStep> step;
};

TEST(TrainStep, ClipsToTheGivenGlobalNorm) {
  Rig free_run;
  const auto before = free_run.weights();
  const StepResult unclipped = free_run.run({batch_of(0, 8)});
  ASSERT_TRUE(unclipped.finite);
  ASSERT_GT(unclipped.grad_norm, 0.1);
  const auto full_update = free_run.weights() - before;

  // Clipping at half the norm halves the update (scale = clip / (norm + 1e-6)), and the reported
  // norm is the one before clipping.
  Rig clipped(false, unclipped.grad_norm / 2);
  const StepResult r = clipped.run({batch_of(0, 8)});
  EXPECT_DOUBLE_EQ(r.grad_norm, unclipped.grad_norm);
  const double scale = (unclipped.grad_norm / 2) / (unclipped.grad_norm + 1e-6);
  EXPECT_LT(((clipped.weights() - before) - full_update * scale).abs().max().item<double>(), 1e-6);
  // The update's norm (bias included) is the clip.
  double sq = 0;
  for (const auto& p : clipped.model->parameters()) sq += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), unclipped.grad_norm / 2, 1e-5);
}

TEST(TrainStep, NonFiniteDenoiserSkipsTheUpdateAndTheGuardStopsAfterK) {
  Rig rig(/*poison=*/true);
  const auto before = rig.weights();
  TrainCounters counters;
  const int64_t limit = 3;
  for (int64_t k = 1; k <= limit; ++k) {
    const StepResult r = rig.run({batch_of(0, 4)});
    EXPECT_FALSE(r.finite);
    EXPECT_TRUE(torch::equal(rig.weights(), before)) << "a non-finite step must not change the weights";
    EXPECT_EQ(count_nonfinite(counters, r.finite, limit), k == limit);
  }
  EXPECT_EQ(counters.skipped_steps, limit);
  EXPECT_EQ(counters.nonfinite_in_row, limit);
  // A finite step resets the run of non-finite ones but not the total.
  EXPECT_FALSE(count_nonfinite(counters, true, limit));
  EXPECT_EQ(counters.nonfinite_in_row, 0);
  EXPECT_EQ(counters.skipped_steps, limit);
}

TEST(TrainStep, AccumulationEqualsOneBigBatch) {
  const Batch big = batch_of(0, 8);
  Rig one;
  const StepResult r1 = one.run({big});
  Rig two(false, 0, /*accum=*/2);
  const StepResult r2 = two.run({Batch{big.images.narrow(0, 0, 4), big.labels.narrow(0, 0, 4)},
                                 Batch{big.images.narrow(0, 4, 4), big.labels.narrow(0, 4, 4)}});
  EXPECT_EQ(r2.micro_batches, 2);
  EXPECT_NEAR(r2.grad_norm, r1.grad_norm, 1e-6 * r1.grad_norm);
  EXPECT_LT((two.weights() - one.weights()).abs().max().item<double>(), 1e-6);
  EXPECT_NEAR(r2.loss / 2, r1.loss, 1e-6 * r1.loss);  // the window divides sums by micro-batches
}

// Class-conditional training sends the null label (num_classes) for a label_dropout share of the
// examples, so that the unconditional bits/dim and guidance have a trained null class.
TEST(TrainStep, LabelDropoutTrainsTheNullClass) {
  for (double p : {0.0, 0.5}) {
    Rig rig(false, 0, 1, p);
    rig.run({batch_of(0, 400)});
    ASSERT_TRUE(rig.model->seen_labels.defined());
    const double nulls = (rig.model->seen_labels == 10).to(torch::kFloat64).mean().item<double>();
    const double others = (rig.model->seen_labels == 0).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(nulls, p, 0.08) << p;
    EXPECT_NEAR(nulls + others, 1.0, 1e-12);
  }
}

}  // namespace
}  // namespace vdm
