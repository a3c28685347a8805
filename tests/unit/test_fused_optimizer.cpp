// FusedOptimizer against the per-parameter code it replaces: from the same gradients,
// torch::optim::AdamW, clipping each gradient and EmaImpl::update give the same bits over several
// steps (channels-last weights and weight decay included), also after a checkpoint load has
// replaced every tensor's storage. (The gradients themselves are fed from one rig to the other:
// oneDNN's kernels may round differently for weights at other addresses.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <sstream>

#include "distributed/self_communicator.h"
#include "training/fused_optimizer.h"

namespace vdm {
namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)));
    head = register_module("head", torch::nn::Linear(4, 3));
    scale = register_parameter("scale", torch::ones({3}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return head(torch::silu(conv(x)).mean({2, 3})) * scale;
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor scale;
};
TORCH_MODULE(Net);

// One training set-up: model, AdamW, EMA and reducer, and optionally the fused optimiser.
struct Rig {
  explicit Rig(bool fused, bool channels_last = false) {
    torch::manual_seed(7);
    net = Net();
    if (channels_last) {
      torch::NoGradGuard no_grad;
      auto& w = net->conv->weight;
      w.set_data(w.contiguous(torch::MemoryFormat::ChannelsLast));
    }
    adamw = std::make_unique<torch::optim::AdamW>(
        net->parameters(), torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).weight_decay(0.05));
    ema = Ema(*net, EmaOptions{});
    reducer = std::make_unique<GradientReducer>(GradientReducer::named(net->named_parameters()),
                                                std::make_shared<SelfCommunicator>(),
                                                GradientReducerOptions{2e-4, 1e-4});  // several buckets
    if (fused) this->fused = std::make_unique<FusedOptimizer>(*reducer, *adamw, ema, *net);
  }

  void backward(int64_t k) {
    torch::manual_seed(uint64_t(100 + k));
    auto x = torch::randn({5, 2, 6, 6});
    reducer->zero_grad();
    net->forward(x).square().sum().backward();
    reducer->finish();
  }

  void copy_gradients(Rig& from) {
    torch::NoGradGuard no_grad;
    const auto mine = net->parameters(), theirs = from.net->parameters();
    for (size_t i = 0; i < mine.size(); ++i) mine[i].mutable_grad().copy_(theirs[i].grad());
  }

  // Global norm, clipping by half (when clip), AdamW, EMA; returns the norm.
  double update(int64_t k, bool clip = true) {
    torch::NoGradGuard no_grad;
    double norm = 0;
    if (fused) {
      norm = fused->grad_norm();
      if (clip) fused->scale_gradients(0.5);
      fused->step();
      fused->update_ema(k + 1);
    } else {
      for (const auto& p : net->parameters()) norm += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
      norm = std::sqrt(norm);
      if (clip)
        for (const auto& p : net->parameters()) p.mutable_grad().mul_(0.5);
      adamw->step();
      ema->update(*net, k + 1);
    }
    return norm;
  }

  Net net{nullptr};
  std::unique_ptr<torch::optim::AdamW> adamw;
  Ema ema{nullptr};
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<FusedOptimizer> fused;
};

// One step of each rig from the plain one's gradients; returns the relative difference of the
// global norms they computed.
// With pending_scale, the fused rig holds the gradients divided by it (as the reducer's sum
// over ranks is the average divided by 1/world) and is told to apply it.
double step_both(Rig& plain, Rig& fused, int64_t k, double pending_scale = 1, bool clip = true) {
  plain.backward(k);
  fused.backward(k);
  fused.copy_gradients(plain);
  if (pending_scale != 1) {
    torch::NoGradGuard no_grad;
    for (auto& p : fused.net->parameters()) p.mutable_grad().div_(pending_scale);
    fused.fused->set_gradient_scale(pending_scale);
  }
  const double a = plain.update(k, clip), b = fused.update(k, clip);
  return std::abs(a - b) / a;
}

// Parameters, EMA averages and AdamW's moments and step counts, bit for bit.
void expect_same_state(Rig& a, Rig& b) {
  const auto pa = a.net->parameters(), pb = b.net->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    EXPECT_TRUE(torch::equal(a.ema->averages()[i], b.ema->averages()[i])) << "EMA " << i;
    const auto* sa = FusedOptimizer::state_of(*a.adamw, pa[i]);
    const auto* sb = FusedOptimizer::state_of(*b.adamw, pb[i]);
    ASSERT_TRUE(sa && sb) << "parameter " << i;
    EXPECT_EQ(sa->step(), sb->step());
    EXPECT_TRUE(torch::equal(sa->exp_avg(), sb->exp_avg())) << "exp_avg " << i;
    EXPECT_TRUE(torch::equal(sa->exp_avg_sq(), sb->exp_avg_sq())) << "exp_avg_sq " << i;
  }
}

TEST(FusedOptimizer, EqualsAdamWClippingAndEmaBitForBit) {
  for (bool channels_last : {false, true}) {
    Rig plain(false, channels_last), fused(true, channels_last);
    ASSERT_GT(fused.reducer->bucket_count(), 1);
    // The weight keeps its layout inside the flat buffer.
    EXPECT_EQ(fused.net->conv->weight.is_contiguous(torch::MemoryFormat::ChannelsLast), channels_last);
    for (int64_t k = 0; k < 6; ++k) {
      EXPECT_NEAR(step_both(plain, fused, k), 0, 1e-12) << "step " << k;
    }
    expect_same_state(plain, fused);
    EXPECT_FALSE(torch::equal(plain.net->conv->weight, Rig(false).net->conv->weight));  // it did train
  }
}

// The reducer's sum over two ranks and a scale of 1/2: folded into clipping, or into AdamW's
// moment updates when there is no clipping, it gives the same bits as averaged gradients
// (scaling by powers of two is exact).
TEST(FusedOptimizer, FoldsAPendingGradientScale) {
  Rig plain(false), fused(true);
  for (int64_t k = 0; k < 6; ++k)
    EXPECT_NEAR(step_both(plain, fused, k, 0.5, /*clip=*/k % 2 == 0), 0, 1e-15) << "step " << k;
  expect_same_state(plain, fused);
}

TEST(FusedOptimizer, RelinksTensorsThatALoadReplaced) {
  Rig plain(false, true), fused(true, true);
  for (int64_t k = 0; k < 3; ++k) step_both(plain, fused, k);
  // A checkpoint round trip of the EMA and the optimiser: Module::load and Optimizer::load give
  // those tensors fresh storage outside the flat buffers. (The trainer loads the weights before
  // it builds the reducer and this optimiser; a parameter given new storage is simulated with
  // set_data.)
  auto round_trip = [](auto save, auto load) {
    torch::serialize::OutputArchive out;
    save(out);
    std::ostringstream bytes;
    out.save_to(bytes);
    std::istringstream in_bytes(bytes.str());
    torch::serialize::InputArchive in;
    in.load_from(in_bytes);
    load(in);
  };
  round_trip([&](auto& a) { fused.ema->save(a); }, [&](auto& a) { fused.ema->load(a); });
  round_trip([&](auto& a) { fused.adamw->save(a); }, [&](auto& a) { fused.adamw->load(a); });
  {
    torch::NoGradGuard no_grad;
    for (auto& p : fused.net->parameters()) p.set_data(p.clone());
  }
  const auto before = fused.net->conv->weight.data_ptr();
  for (int64_t k = 3; k < 6; ++k) {
    EXPECT_NEAR(step_both(plain, fused, k), 0, 1e-12) << "step " << k;
  }
  EXPECT_NE(fused.net->conv->weight.data_ptr(), before);  // back in its flat buffer
  expect_same_state(plain, fused);
}

}  // namespace
}  // namespace vdm
