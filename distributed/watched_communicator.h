// A Communicator that runs each collective of another one under the collective watchdog, so
// that code which takes a communicator (FID statistics, bits/dim, sampling) has its collectives
// watched and not the computation between them, however long that takes.
#pragma once

#include <cstdint>
#include <string>

#include "distributed/communicator.h"

namespace vdm {

class Watchdog;

class WatchedCommunicator : public Communicator {
 public:
  // watchdog may be null (nothing is watched). what names the caller in the watchdog's
  // message ("evaluation: all_reduce at step 400 did not finish ..."). inner must outlive this.
  WatchedCommunicator(Communicator& inner, Watchdog* watchdog, std::string what, int64_t step);

  int rank() const override { return inner_.rank(); }
  int world() const override { return inner_.world(); }
  std::string backend() const override { return inner_.backend(); }
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  // Watched until the collective is started; its wait() is the caller's.
  WorkPtr all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(torch::Tensor& tensor, int root = 0) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void reduce(torch::Tensor& tensor, int root = 0, ReduceOp op = ReduceOp::Sum) override;
  void barrier() override;
  void synchronize() override;

 private:
  template <typename F>
  auto watched(const char* op, F&& call);
  Communicator& inner_;
  Watchdog* watchdog_;
  std::string what_;
  int64_t step_;
};

}  // namespace vdm
