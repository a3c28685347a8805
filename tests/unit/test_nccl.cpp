// NcclCommunicator: the NCCL library is linked and loads (every build with NCCL, GPU or not),
// and, with one GPU and a CUDA LibTorch, every collective on one rank (the id passed over a world-of-one host communicator).
// Without VDM_WITH_NCCL this file is empty: there is nothing of NCCL to test.
#if VDM_WITH_NCCL

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <nccl.h>
#include <torch/torch.h>

#include <stdexcept>
#include <vector>

#include "distributed/nccl_communicator.h"
#include "distributed/self_communicator.h"

namespace vdm {
namespace {

int major_of(int code) { return code >= 10000 ? code / 10000 : code / 1000; }  // 2.8.4 = 2804

// Runs without a GPU: calls into libnccl, proving the library was linked and loads.
TEST(Nccl, LibraryVersionIsTwoOrNewer) {
  const int version = NcclCommunicator::nccl_version();
  RecordProperty("nccl_version", version);
  EXPECT_GE(major_of(version), 2) << "ncclGetVersion() = " << version;
  // The header we compiled against and the library loaded at run time agree on the major.
  EXPECT_EQ(major_of(version), NCCL_MAJOR) << "ncclGetVersion() = " << version;
}

torch::Tensor on_gpu(const torch::Tensor& t) { return t.to(torch::Device(torch::kCUDA, 0)); }

TEST(NcclCuda, OneRankCollectives) {
#ifndef VDM_TORCH_HAS_CUDA
  // The rest still compiles here, so CI checks it against the API.
  GTEST_SKIP() << "this LibTorch has no CUDA: it cannot make the CUDA tensors NCCL works on";
#endif
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    GTEST_SKIP() << "no CUDA device";
  }
  SelfCommunicator host;
  NcclCommunicator comm(host, 0);
  ASSERT_EQ(comm.rank(), 0);
  ASSERT_EQ(comm.world(), 1);
  EXPECT_EQ(comm.backend(), "nccl");

  // One rank: every reduction is the identity, which still runs each NCCL call, the stream
  // protocol and the dtype mapping. The input is made by a kernel right before the call, so a
  // collective that did not wait for the compute stream would read unfinished values.
  const auto reference = torch::arange(1, 13, torch::kFloat64).reshape({3, 4});
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kBFloat16, torch::kFloat16,
                     torch::kInt32, torch::kInt64, torch::kUInt8}) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto want = reference.to(dtype);
    for (auto op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      torch::Tensor x = on_gpu(reference).mul(2).div(2).to(dtype);
      comm.all_reduce(x, op);
      EXPECT_TRUE(torch::equal(x.cpu(), want)) << "all_reduce op " << int(op);
    }
  }

  torch::Tensor b = on_gpu(reference).to(torch::kFloat32).add(1);
  comm.broadcast(b, 0);
  EXPECT_TRUE(torch::equal(b.cpu(), reference.to(torch::kFloat32).add(1)));

  // Non-contiguous input is allowed for all_gather; the result is [world, ...shape].
  const torch::Tensor g_in = on_gpu(reference).to(torch::kFloat32).t();
  const torch::Tensor gathered = comm.all_gather(g_in);
  ASSERT_EQ(gathered.sizes().vec(), (std::vector<int64_t>{1, 4, 3}));
  EXPECT_TRUE(torch::equal(gathered[0].cpu(), reference.to(torch::kFloat32).t()));

  torch::Tensor r = on_gpu(reference).to(torch::kFloat32).neg();
  comm.reduce(r, 0, ReduceOp::Sum);
  EXPECT_TRUE(torch::equal(r.cpu(), reference.to(torch::kFloat32).neg()));

  // Large enough that the all-reduce takes a while; wait() orders the compute stream after it.
  torch::Tensor big = torch::full({1 << 22}, 3.0f, torch::Device(torch::kCUDA, 0)).mul(2);
  WorkPtr work = comm.all_reduce_async(big, ReduceOp::Avg);
  ASSERT_TRUE(work);
  work->wait();
  // Queued on the compute stream after wait(), so it sees the finished average.
  EXPECT_TRUE(big.eq(6.0f).all().item<bool>());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(work->done());

  comm.barrier();

  // Misuse fails loudly instead of handing NCCL a host pointer or a strided view.
  torch::Tensor cpu = torch::ones({4});
  EXPECT_THROW(comm.all_reduce(cpu), std::runtime_error);
  torch::Tensor strided = on_gpu(reference).t();
  EXPECT_THROW(comm.all_reduce(strided), std::runtime_error);
  torch::Tensor flags = on_gpu(reference).gt(3);
  EXPECT_THROW(comm.all_reduce(flags), std::runtime_error);  // bool: no NCCL type
  torch::Tensor one = on_gpu(reference).to(torch::kFloat32);
  EXPECT_THROW(comm.broadcast(one, 1), std::runtime_error);  // root out of range
}

}  // namespace
}  // namespace vdm

#endif  // VDM_WITH_NCCL
