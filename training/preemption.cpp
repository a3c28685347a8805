// Preemption agreement (see preemption.h).
#include "training/preemption.h"

#include <torch/torch.h>

#include "distributed/communicator.h"
#include "distributed/watchdog.h"
#include "training/stop_signal.h"

namespace vdm {

int agreed_stop_signal(Communicator& comm, Watchdog& watchdog, int64_t step) {
  auto stop = torch::tensor({int64_t(stop_signal_received())}, torch::kInt64);
  {
    auto guard = watchdog.watch("all_reduce(stop flag)", step);
    comm.all_reduce(stop, ReduceOp::Max);
  }
  return int(stop.item<int64_t>());
}

}  // namespace vdm
