// Collective communication on tensors, behind one interface: MpiCommunicator for CPU tensors
// and NcclCommunicator for CUDA tensors. Every rank must call the same collectives in the same
// order (docs/design.md §2); a branch on rank == 0 never contains one.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace vdm {

enum class ReduceOp { Sum, Avg, Max };

// A collective started without waiting: wait() blocks until the tensor holds the result.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool done() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual std::string backend() const = 0;  // "mpi" | "nccl"
  // In place on a contiguous tensor.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  virtual WorkPtr all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root = 0) = 0;
  // Returns [world, ...tensor.shape]: every rank's tensor, in rank order.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  // In place; only root's tensor holds the result afterwards.
  virtual void reduce(torch::Tensor& tensor, int root = 0, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void barrier() = 0;
  // Blocks the host until every collective started so far has finished, so that a failure
  // surfaces here, as an exception naming its cause, rather than as a hang in whatever next
  // waits for the device. MPI's collectives complete on the host already: nothing to do.
  virtual void synchronize() {}
};
using CommunicatorPtr = std::shared_ptr<Communicator>;

}  // namespace vdm
