// Collectives under the watchdog (see watched_communicator.h).
#include "distributed/watched_communicator.h"

#include <optional>
#include <utility>

#include "distributed/watchdog.h"

namespace vdm {

WatchedCommunicator::WatchedCommunicator(Communicator& inner, Watchdog* watchdog, std::string what, int64_t step)
    : inner_(inner), watchdog_(watchdog), what_(std::move(what)), step_(step) {}

template <typename F>
auto WatchedCommunicator::watched(const char* op, F&& call) {
  std::optional<Watchdog::Scope> scope;
  if (watchdog_) scope.emplace(watchdog_->watch(what_ + ": " + op, step_));
  return call();
}

void WatchedCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  watched("all_reduce", [&] { inner_.all_reduce(tensor, op); });
}

WorkPtr WatchedCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  return watched("all_reduce_async", [&] { return inner_.all_reduce_async(tensor, op); });
}

void WatchedCommunicator::broadcast(torch::Tensor& tensor, int root) {
  watched("broadcast", [&] { inner_.broadcast(tensor, root); });
}

torch::Tensor WatchedCommunicator::all_gather(const torch::Tensor& tensor) {
  return watched("all_gather", [&] { return inner_.all_gather(tensor); });
}

void WatchedCommunicator::reduce(torch::Tensor& tensor, int root, ReduceOp op) {
  watched("reduce", [&] { inner_.reduce(tensor, root, op); });
}

void WatchedCommunicator::barrier() {
  watched("barrier", [&] { inner_.barrier(); });
}

void WatchedCommunicator::synchronize() {
  watched("synchronize", [&] { inner_.synchronize(); });
}

}  // namespace vdm
