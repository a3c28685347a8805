// Training pieces with closed forms: the learning-rate schedule, the seed derivation, RNG
// stream state round trips and exit codes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "training/lr_schedule.h"
#include "training/stop_signal.h"
#include "training/train_state.h"
#include "training/trainer.h"

namespace vdm {
namespace {

TEST(LrSchedule, WarmupThenShapes) {
  LrScheduleOptions o;
  o.lr = 1e-3;
  o.warmup_steps = 10;
  o.total_steps = 110;
  EXPECT_DOUBLE_EQ(learning_rate(o, 0), 1e-4);
  EXPECT_DOUBLE_EQ(learning_rate(o, 9), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 50), 1e-3);
  o.shape = "linear";
  EXPECT_DOUBLE_EQ(learning_rate(o, 60), 0.5e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 110), 0.0);
  o.shape = "cosine";
  EXPECT_NEAR(learning_rate(o, 60), 0.5e-3, 1e-15);
  EXPECT_NEAR(learning_rate(o, 35), 1e-3 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  o.shape = "step";
  EXPECT_THROW(learning_rate(o, 50), std::invalid_argument);
}

TEST(TrainState, SeedsDifferByPurposeAndIndex) {
  EXPECT_EQ(derive_seed(1, 2, "noise"), derive_seed(1, 2, "noise"));
  EXPECT_NE(derive_seed(1, 2, "noise"), derive_seed(1, 2, "dropout"));
  EXPECT_NE(derive_seed(1, 2, "noise"), derive_seed(1, 3, "noise"));
  EXPECT_NE(derive_seed(1, 2, "noise"), derive_seed(2, 2, "noise"));
}

// Saving the streams and restoring them later replays exactly the same numbers, for both the
// noise generator and the default generator that dropout draws from.
TEST(TrainState, RngStreamsRoundTrip) {
  RngStreams rng(7, 1, c10::Device(c10::kCPU));
  const torch::Tensor saved = rng.state();
  const auto a = torch::randn({5}, rng.noise);
  const auto b = torch::rand({5});
  RngStreams other(8, 0, c10::Device(c10::kCPU));
  other.load(saved);
  EXPECT_TRUE(torch::equal(torch::randn({5}, other.noise), a));
  EXPECT_TRUE(torch::equal(torch::rand({5}), b));
  EXPECT_THROW(other.load(saved.narrow(0, 0, 10)), std::runtime_error);
}

TEST(TrainResult, ExitCodes) {
  EXPECT_EQ((TrainResult{TrainOutcome::Completed, 5}.exit_code()), kExitCompleted);
  EXPECT_EQ((TrainResult{TrainOutcome::Preempted, 5}.exit_code()), 75);
  EXPECT_EQ((TrainResult{TrainOutcome::Diverged, 5}.exit_code()), kExitDiverged);
}

}  // namespace
}  // namespace vdm
