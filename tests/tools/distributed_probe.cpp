// A small multi-rank program the integration tests launch with mpiexec to check failure
// handling end to end: `throw` makes rank 1 throw at step 3, `stall` makes rank 1 stop
// joining collectives at step 3 so that the watchdog on the other ranks must end the job.
#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "distributed/mpi_communicator.h"
#include "distributed/process_context.h"
#include "distributed/watchdog.h"

int main(int argc, char** argv) {
  vdm::ProcessContext ctx(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "throw";
  return vdm::run_or_abort([&] {
    vdm::MpiCommunicator comm;
    vdm::Watchdog watchdog(2.0);
    auto t = torch::ones({1024});
    for (int64_t step = 0; step < 10; ++step) {
      if (ctx.rank() == 1 && step == 3) {
        if (mode == "throw") throw std::runtime_error("rank 1 failed on purpose at step 3");
        std::this_thread::sleep_for(std::chrono::seconds(60));
      }
      auto guard = watchdog.watch("all_reduce(gradients)", step);
      comm.all_reduce(t, vdm::ReduceOp::Avg);
    }
    return 0;
  });
}
