// MpiCommunicator under real MPI ranks: all-reduce (sum, avg, max; blocking and async),
// broadcast, all-gather, reduce to root and barrier on CPU tensors, and its input checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "distributed/mpi_communicator.h"
#include "tests/multirank/mpi_gtest_main.h"

namespace vdm {
namespace {

TEST(MpiCommunicator, AllReduce) {
  MpiCommunicator comm;
  const int r = comm.rank(), w = comm.world();
  auto sum = torch::full({5}, double(r + 1), torch::kFloat64);
  comm.all_reduce(sum, ReduceOp::Sum);
  EXPECT_TRUE(torch::allclose(sum, torch::full({5}, w * (w + 1) / 2.0, torch::kFloat64)));
  auto avg = torch::full({3}, float(r), torch::kFloat32);
  comm.all_reduce(avg, ReduceOp::Avg);
  EXPECT_NEAR(avg[0].item<float>(), (w - 1) / 2.0f, 1e-6);
  auto mx = torch::tensor({int64_t(r), int64_t(-r)}, torch::kLong);
  comm.all_reduce(mx, ReduceOp::Max);
  EXPECT_EQ(mx[0].item<int64_t>(), w - 1);
  EXPECT_EQ(mx[1].item<int64_t>(), 0);
}

TEST(MpiCommunicator, AsyncAllReduceOverlapsAndCompletes) {
  MpiCommunicator comm;
  const int w = comm.world();
  std::vector<torch::Tensor> bufs;
  std::vector<WorkPtr> works;
  for (int k = 0; k < 4; ++k) {
    bufs.push_back(torch::full({1000}, double(k + comm.rank()), torch::kFloat64));
    works.push_back(comm.all_reduce_async(bufs.back(), ReduceOp::Avg));
  }
  for (int k = 0; k < 4; ++k) {
    works[k]->wait();
    EXPECT_TRUE(works[k]->done());
    EXPECT_NEAR(bufs[k][999].item<double>(), k + (w - 1) / 2.0, 1e-12);
  }
}

TEST(MpiCommunicator, BroadcastGatherReduceBarrier) {
  MpiCommunicator comm;
  const int r = comm.rank(), w = comm.world();
  auto b = r == 0 ? torch::arange(6, torch::kFloat32) : torch::zeros({6});
  comm.broadcast(b, 0);
  EXPECT_TRUE(torch::equal(b, torch::arange(6, torch::kFloat32)));
  auto g = comm.all_gather(torch::full({2, 2}, int64_t(r), torch::kLong));
  ASSERT_EQ(g.sizes(), torch::IntArrayRef({w, 2, 2}));
  for (int k = 0; k < w; ++k) EXPECT_EQ(g[k][1][1].item<int64_t>(), k);
  auto red = torch::full({4}, 1.0, torch::kFloat64);
  comm.reduce(red, 0, ReduceOp::Sum);
  if (r == 0) EXPECT_EQ(red[0].item<double>(), double(w));
  comm.barrier();
  auto strided = torch::zeros({4, 4}).t();
  EXPECT_THROW(comm.all_reduce(strided), std::invalid_argument);
  auto half = torch::zeros({2}, torch::kFloat16);
  EXPECT_THROW(comm.all_reduce(half), std::invalid_argument);
}

}  // namespace
}  // namespace vdm
