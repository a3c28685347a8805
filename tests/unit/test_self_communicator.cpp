// SelfCommunicator, the world of one of builds without MPI: every collective leaves the tensor
// as it is, all_gather adds the world dimension, and misuse is refused as MPI would refuse it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "distributed/self_communicator.h"

namespace vdm {
namespace {

TEST(SelfCommunicator, CollectivesOverAWorldOfOne) {
  SelfCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world(), 1);
  EXPECT_EQ(comm.backend(), "self");
  const auto want = torch::arange(6, torch::kFloat64).reshape({2, 3});
  for (auto op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
    auto t = want.clone();
    comm.all_reduce(t, op);
    EXPECT_TRUE(torch::equal(t, want));
    comm.reduce(t, 0, op);
    EXPECT_TRUE(torch::equal(t, want));
    auto work = comm.all_reduce_async(t, op);
    EXPECT_TRUE(work->done());
    work->wait();
    EXPECT_TRUE(torch::equal(t, want));
  }
  auto b = torch::tensor({7, 8}, torch::kUInt8);
  comm.broadcast(b, 0);
  EXPECT_TRUE(torch::equal(b, torch::tensor({7, 8}, torch::kUInt8)));
  const auto all = comm.all_gather(want);
  EXPECT_EQ(all.sizes(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(torch::equal(all[0], want));
  EXPECT_NE(all.data_ptr(), want.data_ptr());  // a copy, as from MPI
  comm.barrier();
}

TEST(SelfCommunicator, RefusesWhatMpiRefuses) {
  SelfCommunicator comm;
  auto t = torch::zeros({3, 4}).t();  // not contiguous
  EXPECT_THROW(comm.all_reduce(t), std::invalid_argument);
  auto c = torch::zeros({2});
  EXPECT_THROW(comm.broadcast(c, 1), std::invalid_argument);
  EXPECT_THROW(comm.reduce(c, 2), std::invalid_argument);
}

}  // namespace
}  // namespace vdm
