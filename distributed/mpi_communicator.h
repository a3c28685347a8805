// Communicator over MPI for CPU tensors (float32/64, int32/64, uint8): in-place all-reduce
// (sum/avg/max, blocking or MPI_Iallreduce for overlap), broadcast, all-gather, reduce, barrier.
#pragma once

#include <mpi.h>

#include "distributed/communicator.h"

namespace vdm {

class MpiCommunicator : public Communicator {
 public:
  // comm must outlive this object; MPI must be initialised (ProcessContext does it).
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "mpi"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(torch::Tensor& tensor, int root = 0) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void reduce(torch::Tensor& tensor, int root = 0, ReduceOp op = ReduceOp::Sum) override;
  void barrier() override;
  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_;
  int rank_ = 0, world_ = 1;
};

}  // namespace vdm
