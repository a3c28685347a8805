// The communicator of a job with one process, for builds without MPI (-DVDM_WITH_MPI=OFF):
// every collective over a world of one leaves the tensor as it is (all_gather adds the world
// dimension), with the same argument checks as the MPI communicator.
#pragma once

#include "distributed/communicator.h"

namespace vdm {

class SelfCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string backend() const override { return "self"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(torch::Tensor& tensor, int root = 0) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void reduce(torch::Tensor& tensor, int root = 0, ReduceOp op = ReduceOp::Sum) override;
  void barrier() override {}
};

}  // namespace vdm
