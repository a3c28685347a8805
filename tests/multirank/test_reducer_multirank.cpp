// GradientReducer across real MPI ranks: the averaged gradient equals the gradient of one process
// on the whole global batch, for any bucket size and with or without overlap; parameters stay
// bitwise identical; no_sync accumulates; unused parameters and mismatched models fail clearly.
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "distributed/gradient_reducer.h"
#include "distributed/mpi_communicator.h"
#include "tests/multirank/mpi_gtest_main.h"

namespace vdm {
namespace {

// A tiny conv net in float64 so that reduced and single-process gradients agree to 1e-10.
// `extra` exists only when asked, and takes part in the output only when forward is told so:
// the unused-parameter cases.
struct NetImpl : torch::nn::Module {
  NetImpl(int64_t hidden, bool with_extra) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)));
    fc1 = register_module("fc1", torch::nn::Linear(4 * 6 * 6, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, 3));
    if (with_extra) extra = register_module("extra", torch::nn::Linear(hidden, 3));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_extra = false) {
    auto h = torch::tanh(conv(x)).flatten(1);
    h = torch::tanh(fc1(h));
    auto out = fc2(h);
    if (use_extra) out = out + extra(h);
    return out;
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, extra{nullptr};
};
TORCH_MODULE(Net);

constexpr int64_t kGlobalBatch = 24;  // divisible by 1, 2, 3 and 4 ranks

struct Batch {
  torch::Tensor x, y;
};

CommunicatorPtr world_comm() { return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD); }

// Each rank starts from different weights (seed + rank): the reducer's broadcast must fix that.
Net make_net(uint64_t seed, int64_t hidden = 16, bool with_extra = false) {
  torch::manual_seed(seed);
  Net net(hidden, with_extra);
  net->to(torch::kFloat64);
  return net;
}

// The same global batch on every rank.
Batch global_batch(uint64_t seed, int64_t n = kGlobalBatch) {
  torch::manual_seed(seed);
  Batch b;
  b.x = torch::randn({n, 2, 6, 6}, torch::kFloat64);
  b.y = torch::randn({n, 3}, torch::kFloat64);
  return b;
}

Batch slice(const Batch& b, int rank, int world) {
  const int64_t per = b.x.size(0) / world;
  return {b.x.narrow(0, rank * per, per), b.y.narrow(0, rank * per, per)};
}

torch::Tensor loss_of(Net& net, const Batch& b, bool use_extra = false) {
  return torch::mse_loss(net->forward(b.x, use_extra), b.y);
}

std::vector<torch::Tensor> grads(Net& net) {
  std::vector<torch::Tensor> out;
  for (auto& p : net->parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}

// Gradients of a fresh single-process copy of `net` (same weights) for sum_r w_r * loss_r.
template <typename LossFn>
std::vector<torch::Tensor> single_process_grads(Net& net, bool with_extra, LossFn loss_fn) {
  Net copy = make_net(7, net->fc1->options.out_features(), with_extra);
  {
    torch::NoGradGuard no_grad;
    auto src = net->parameters();
    auto dst = copy->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  loss_fn(copy).backward();
  return grads(copy);
}

double max_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].defined(), b[i].defined()) << "parameter #" << i;
    if (a[i].defined() && b[i].defined()) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  }
  return worst;
}

// Every rank's flattened parameters equal rank 0's, bit for bit.
void expect_identical_across_ranks(Net& net, Communicator& comm) {
  std::vector<torch::Tensor> flat;
  for (auto& p : net->parameters()) flat.push_back(p.detach().flatten());
  auto all = comm.all_gather(torch::cat(flat));
  for (int r = 1; r < comm.world(); ++r) EXPECT_TRUE(torch::equal(all[r], all[0])) << "rank " << r << " differs";
}

GradientReducerOptions opts(double bucket_mb, double first_mb, bool overlap = true, bool find_unused = false) {
  GradientReducerOptions o;
  o.bucket_mb = bucket_mb;
  o.first_bucket_mb = first_mb;
  o.overlap = overlap;
  o.find_unused = find_unused;
  return o;
}

// Forwards to MPI and records the all-reduces (kind and size), to see when buckets are launched.
class RecordingComm : public Communicator {
 public:
  struct Call {
    std::string kind;  // "async" | "blocking"
    int64_t numel;
  };
  explicit RecordingComm(CommunicatorPtr inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int world() const override { return inner_->world(); }
  std::string backend() const override { return inner_->backend(); }
  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    log.push_back({"blocking", t.numel()});
    inner_->all_reduce(t, op);
  }
  WorkPtr all_reduce_async(torch::Tensor& t, ReduceOp op) override {
    log.push_back({"async", t.numel()});
    return inner_->all_reduce_async(t, op);
  }
  void broadcast(torch::Tensor& t, int root) override { inner_->broadcast(t, root); }
  torch::Tensor all_gather(const torch::Tensor& t) override { return inner_->all_gather(t); }
  void reduce(torch::Tensor& t, int root, ReduceOp op) override { inner_->reduce(t, root, op); }
  void barrier() override { inner_->barrier(); }
  std::vector<Call> log;

 private:
  CommunicatorPtr inner_;
};

class Reducer : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
  CommunicatorPtr comm = world_comm();
  int rank = comm->rank();
  int world = comm->world();
};

TEST_F(Reducer, BroadcastsRankZerosParameters) {
  Net net = make_net(100 + uint64_t(rank));
  Net rank0 = make_net(100);
  GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm);
  expect_identical_across_ranks(net, *comm);
  auto a = net->parameters(), b = rank0->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
}

// The core property, for bucket sizes from 1 KiB (every parameter alone or nearly) to 64 MiB
// (one bucket), a first bucket from 256 bytes up, with and without overlap.
TEST_F(Reducer, AveragedGradientEqualsGlobalBatchGradientForAnyBucketing) {
  const Batch global = global_batch(1);
  struct Case {
    double bucket_mb, first_mb;
    bool overlap;
  };
  const std::vector<Case> cases{{1.0 / 1024, 1.0 / 4096, true}, {1.0 / 1024, 1.0 / 1024, false},
                                {4.0 / 1024, 1.0 / 4096, true}, {16.0 / 1024, 2.0 / 1024, true},
                                {25, 1, true},                  {64, 64, true},
                                {64, 64, false}};
  std::vector<int64_t> counts;
  for (const Case& c : cases) {
    Net net = make_net(200 + uint64_t(rank));
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm,
                            opts(c.bucket_mb, c.first_mb, c.overlap));
    counts.push_back(reducer.bucket_count());
    const auto expected = single_process_grads(net, false, [&](Net& m) { return loss_of(m, global); });
    loss_of(net, slice(global, rank, world)).backward();
    reducer.finish();
    EXPECT_LT(max_diff(grads(net), expected), 1e-10) << "bucket_mb " << c.bucket_mb << " overlap " << c.overlap;
    expect_identical_across_ranks(net, *comm);

    // Layout: byte sizes add up; a bucket exceeds its cap only when it holds one parameter;
    // the first bucket starts with the last registered parameter (reverse order).
    int64_t total = 0;
    for (auto& p : net->parameters()) total += p.numel() * 8;
    const auto sizes = reducer.bucket_sizes_bytes();
    const auto names = reducer.bucket_parameter_names();
    int64_t sum = 0;
    for (size_t b = 0; b < sizes.size(); ++b) {
      sum += sizes[b];
      const double cap = (b == 0 ? c.first_mb : c.bucket_mb) * 1024 * 1024;
      if (double(sizes[b]) > cap) EXPECT_EQ(names[b].size(), 1u) << "bucket " << b;
    }
    EXPECT_EQ(sum, total);
    EXPECT_EQ(names.front().front(), "fc2.bias");
    EXPECT_EQ(names.back().back(), "conv.weight");
    if (&c == &cases.front()) {
      // 256 B first bucket: fc2.bias (24 B) alone, as fc2.weight (384 B) would overflow it;
      // then 1 KiB buckets: fc2.weight + fc1.bias (512 B), fc1.weight (18 KiB) alone, and
      // conv.bias + conv.weight (608 B).
      const std::vector<std::vector<std::string>> expected{
          {"fc2.bias"}, {"fc2.weight", "fc1.bias"}, {"fc1.weight"}, {"conv.bias", "conv.weight"}};
      EXPECT_EQ(names, expected);
    }
  }
  EXPECT_EQ(counts.front(), 4);  // 1 KiB: see below
  EXPECT_EQ(counts.back(), 1);   // 64 MiB: one
}

// average=false leaves the sum over ranks: times gradient_scale() (1/world) it is the average,
// one bucket or several, with or without overlap.
TEST_F(Reducer, SumTimesGradientScaleIsTheAverage) {
  const Batch global = global_batch(1);
  for (double bucket_mb : {1.0 / 1024, 64.0})
    for (bool overlap : {true, false}) {
      Net net = make_net(400 + uint64_t(rank));
      GradientReducerOptions o = opts(bucket_mb, bucket_mb / 4, overlap);
      o.average = false;
      GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm, o);
      EXPECT_DOUBLE_EQ(reducer.gradient_scale(), 1.0 / world);
      const auto expected = single_process_grads(net, false, [&](Net& m) { return loss_of(m, global); });
      loss_of(net, slice(global, rank, world)).backward();
      reducer.finish();
      auto scaled = grads(net);
      for (auto& g : scaled) g = g * reducer.gradient_scale();
      EXPECT_LT(max_diff(scaled, expected), 1e-10) << "bucket_mb " << bucket_mb << " overlap " << overlap;
    }
}

// With overlap, every bucket is launched (non-blocking) during backward, before finish(), in
// index order; without it, finish() reduces them in the same order with blocking calls. The
// step status (one count, find_unused=false) rides at the end of the last bucket: a healthy
// step makes no other collective.
TEST_F(Reducer, OverlapLaunchesDuringBackwardInBucketOrder) {
  const Batch global = global_batch(2);
  for (bool overlap : {true, false}) {
    auto rec = std::make_shared<RecordingComm>(comm);
    Net net = make_net(300);
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), rec, opts(2.0 / 1024, 1.0 / 4096, overlap));
    for (int step = 0; step < 2; ++step) {
      rec->log.clear();
      loss_of(net, slice(global, rank, world)).backward();
      const size_t launched_in_backward = rec->log.size();
      reducer.finish();
      const auto sizes = reducer.bucket_sizes_bytes();
      const size_t bucket_calls = world > 1 ? sizes.size() : 0;  // one rank: nothing to reduce
      EXPECT_EQ(launched_in_backward, overlap ? bucket_calls : 0u);
      EXPECT_EQ(rec->log.size(), bucket_calls);
      if (rec->log.size() != bucket_calls) continue;  // (no ASSERT: keep reaching the collectives)
      for (size_t b = 0; b < bucket_calls; ++b) {
        EXPECT_EQ(rec->log[b].kind, overlap ? "async" : "blocking");
        EXPECT_EQ(rec->log[b].numel * 8, sizes[b] + (b + 1 == sizes.size() ? 8 : 0)) << "bucket " << b;
      }
    }
  }
}

// Five optimiser steps (SGD, then Adam) keep every rank's parameters bit-identical, and each
// step's gradient is the global-batch gradient, whichever way the gradients were zeroed.
TEST_F(Reducer, ParametersStayIdenticalOverSteps) {
  for (int which = 0; which < 2; ++which) {
    Net net = make_net(400 + uint64_t(rank));
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm, opts(4.0 / 1024, 1.0 / 1024));
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (which == 0)
      opt = std::make_unique<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    else
      opt = std::make_unique<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-2));
    for (int step = 0; step < 5; ++step) {
      // Zeroing in place (Optimizer::zero_grad detaches and zeroes .grad, which must therefore
      // not be an autograd view) and setting to none must both work.
      if (step % 2 == 0)
        opt->zero_grad();
      else
        for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
      const Batch global = global_batch(1000 + uint64_t(step));
      const auto expected = single_process_grads(net, false, [&](Net& m) { return loss_of(m, global); });
      loss_of(net, slice(global, rank, world)).backward();
      reducer.finish();
      EXPECT_LT(max_diff(grads(net), expected), 1e-10) << "optimiser " << which << " step " << step;
      opt->step();
      expect_identical_across_ranks(net, *comm);
    }
  }
}

// k micro-batches: k-1 backward passes inside no_sync (no communication at all), the last one
// synchronised: the result equals one backward over the whole global batch.
TEST_F(Reducer, NoSyncAccumulatesLikeOneBigBatch) {
  const int k = 4;
  const Batch global = global_batch(3, int64_t(world) * k * 2);  // 2 samples per micro-batch
  for (bool overlap : {true, false}) {
    auto rec = std::make_shared<RecordingComm>(comm);
    Net net = make_net(500 + uint64_t(rank));
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), rec, opts(2.0 / 1024, 1.0 / 4096, overlap));
    const auto expected = single_process_grads(net, false, [&](Net& m) { return loss_of(m, global); });
    for (int step = 0; step < 2; ++step) {  // twice: the buffers are reused after a finish()
      for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
      const Batch mine = slice(global, rank, world);
      rec->log.clear();
      for (int m = 0; m < k - 1; ++m) {
        auto guard = reducer.no_sync();
        EXPECT_TRUE(reducer.in_no_sync());
        (loss_of(net, slice(mine, m, k)) / k).backward();
        reducer.finish();  // a no-op inside no_sync
      }
      EXPECT_FALSE(reducer.in_no_sync());
      EXPECT_TRUE(rec->log.empty()) << "no_sync communicated";
      (loss_of(net, slice(mine, k - 1, k)) / k).backward();
      reducer.finish();
      EXPECT_LT(max_diff(grads(net), expected), 1e-10) << "overlap " << overlap << " step " << step;
    }
  }
}

// The trainer zeroes through the reducer, never through Optimizer::zero_grad(), whose default
// changed in LibTorch 2.0 (set_to_none). A parameter used in one step and unused everywhere in
// the next must keep a zero gradient inside its bucket, so that AdamW keeps applying its
// momentum, as 1.13's in-place zeroing did; 2.x's set_to_none (imitated here) would leave it
// without a gradient and AdamW would skip it.
TEST_F(Reducer, ZeroGradIsTheSameOnEveryLibTorch) {
  const Batch global = global_batch(5);
  auto run = [&](bool reducer_zeroes) {
    Net net = make_net(800, 16, true);
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm,
                            opts(1.0 / 1024, 1.0 / 4096, true, true));
    torch::optim::AdamW adam(net->parameters(), torch::optim::AdamWOptions(1e-2));
    for (int step = 0; step < 2; ++step) {
      if (reducer_zeroes) {
        reducer.zero_grad();
      } else {
        for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();  // set_to_none
      }
      loss_of(net, slice(global, rank, world), /*use_extra=*/step == 0).backward();
      reducer.finish();
      if (step == 0) continue;
      const auto& g = net->extra->weight.grad();
      if (reducer_zeroes) {
        EXPECT_TRUE(g.defined());
        if (g.defined()) EXPECT_EQ(g.abs().max().item<double>(), 0.0);
      } else {
        EXPECT_FALSE(g.defined());
      }
    }
    const auto before = net->extra->weight.detach().clone();
    adam.step();
    return (net->extra->weight.detach() - before).abs().max().item<double>();
  };
  EXPECT_GT(run(true), 0.0) << "AdamW must keep moving a parameter that was unused in this step";
  EXPECT_EQ(run(false), 0.0);

  // Zeroing keeps .grad a view into its bucket: the next backward accumulates there directly.
  Net net = make_net(801);
  GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm, opts(1.0 / 1024, 1.0 / 4096));
  loss_of(net, slice(global, rank, world)).backward();
  reducer.finish();
  std::vector<const void*> pointers;
  for (auto& p : net->parameters()) pointers.push_back(p.grad().data_ptr());
  reducer.zero_grad();
  size_t i = 0;
  for (auto& p : net->parameters()) {
    EXPECT_EQ(p.grad().data_ptr(), pointers[i++]);
    EXPECT_EQ(p.grad().abs().max().item<double>(), 0.0);
  }
}

// `extra` takes part in the loss on rank 0 only, or on no rank.
TEST_F(Reducer, UnusedParameters) {
  const Batch global = global_batch(4);
  auto local_loss = [&](Net& m, int r, bool extra_on_rank0) {
    return loss_of(m, slice(global, r, world), extra_on_rank0 && r == 0);
  };
  // Expected: the average over ranks of each rank's local gradient (zero where it has none).
  auto expected_for = [&](Net& net, bool extra_on_rank0) {
    return single_process_grads(net, true, [&](Net& m) {
      auto total = local_loss(m, 0, extra_on_rank0);
      for (int r = 1; r < world; ++r) total = total + local_loss(m, r, extra_on_rank0);
      return total / world;
    });
  };

  // find_unused=true: used on rank 0 only -> averaged with zeros elsewhere.
  {
    Net net = make_net(600 + uint64_t(rank), 16, true);
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm, opts(1.0 / 1024, 1.0 / 4096, true, true));
    const auto expected = expected_for(net, true);
    local_loss(net, rank, true).backward();
    reducer.finish();
    EXPECT_LT(max_diff(grads(net), expected), 1e-10);
    EXPECT_TRUE(net->extra->weight.grad().defined());

    // Unused everywhere: the other gradients are right and extra's stays undefined.
    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
    const auto expected_none = expected_for(net, false);
    local_loss(net, rank, false).backward();
    reducer.finish();
    EXPECT_FALSE(net->extra->weight.grad().defined());
    EXPECT_FALSE(net->extra->bias.grad().defined());
    EXPECT_LT(max_diff(grads(net), expected_none), 1e-10);
  }

  // find_unused=false: unused on every rank but 0, or on all ranks -> the same clear error on
  // every rank, then the reducer works again on a step where every parameter is used.
  for (bool extra_on_rank0 : {true, false}) {
    if (world == 1 && extra_on_rank0) continue;  // then it is used everywhere
    Net net = make_net(700, 16, true);
    GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm, opts(1.0 / 1024, 1.0 / 4096));
    local_loss(net, rank, extra_on_rank0).backward();
    std::string message;
    try {
      reducer.finish();
    } catch (const std::runtime_error& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("'extra.weight'"), std::string::npos) << message;
    EXPECT_NE(message.find("'extra.bias'"), std::string::npos) << message;
    EXPECT_NE(message.find("find_unused=true"), std::string::npos) << message;
    EXPECT_EQ(message.find("'fc1.weight'"), std::string::npos) << message;
    if (world > 1 && extra_on_rank0)
      EXPECT_NE(message.find("no gradient on " + std::to_string(world - 1) + " of " + std::to_string(world)),
                std::string::npos)
          << message;

    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
    const auto expected = single_process_grads(net, true, [&](Net& m) { return loss_of(m, global, true); });
    loss_of(net, slice(global, rank, world), true).backward();
    EXPECT_NO_THROW(reducer.finish());
    EXPECT_LT(max_diff(grads(net), expected), 1e-10);
  }
}

// A frozen parameter is broadcast but never reduced; a parameter listed twice (tied weights)
// sits in one bucket once, under its first name.
TEST_F(Reducer, FrozenAndTiedParameters) {
  const Batch global = global_batch(5);
  Net net = make_net(900 + uint64_t(rank));
  net->conv->weight.requires_grad_(false);
  auto named = GradientReducer::named(net->named_parameters());
  named.emplace_back("fc2.weight_tied", net->fc2->weight);
  GradientReducer reducer(named, comm, opts(1.0 / 1024, 1.0 / 4096));
  expect_identical_across_ranks(net, *comm);  // conv.weight included
  std::vector<std::string> reduced;
  for (const auto& bucket : reducer.bucket_parameter_names()) reduced.insert(reduced.end(), bucket.begin(), bucket.end());
  const std::vector<std::string> expected_names{"fc2.bias", "fc2.weight", "fc1.bias", "fc1.weight", "conv.bias"};
  EXPECT_EQ(reduced, expected_names);

  const auto expected = single_process_grads(net, false, [&](Net& m) { return loss_of(m, global); });
  loss_of(net, slice(global, rank, world)).backward();
  reducer.finish();
  const auto got = grads(net);
  EXPECT_FALSE(got[0].defined());  // conv.weight
  EXPECT_LT(max_diff({got.begin() + 1, got.end()}, {expected.begin() + 1, expected.end()}), 1e-10);
}

TEST_F(Reducer, MismatchedModelsFailOnEveryRank) {
  auto construct = [&](Net& net, GradientReducerOptions o = {}) {
    try {
      GradientReducer reducer(GradientReducer::named(net->named_parameters()), comm, o);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const int last = world - 1;
  const std::string last_rank = "rank " + std::to_string(last);
  {  // a different shape on the last rank
    Net net = make_net(800, rank == last ? 17 : 16);
    const std::string message = construct(net);
    if (world > 1) {
      EXPECT_NE(message.find("fc1.weight [17, 144]"), std::string::npos) << message;
      EXPECT_NE(message.find("fc1.weight [16, 144]"), std::string::npos) << message;
      EXPECT_NE(message.find(last_rank), std::string::npos) << message;
    }
  }
  {  // an extra parameter on the last rank
    Net net = make_net(800, 16, rank == last);
    const std::string message = construct(net);
    if (world > 1) {
      EXPECT_NE(message.find("Rank " + std::to_string(last) + " has 8 parameters"), std::string::npos) << message;
      EXPECT_NE(message.find("'(none)'"), std::string::npos) << message;
      EXPECT_NE(message.find("extra.weight"), std::string::npos) << message;
    }
  }
  {  // same model, different bucket options
    Net net = make_net(800);
    const std::string message = construct(net, opts(rank == last ? 1.0 / 1024 : 25, 1.0 / 4096));
    if (world > 1) EXPECT_NE(message.find("bucket_mb"), std::string::npos) << message;
  }
  {  // and a matching model still works afterwards
    Net net = make_net(800);
    EXPECT_EQ(construct(net), "");
  }
}

}  // namespace
}  // namespace vdm
