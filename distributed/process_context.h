// The process's place in the job: MPI initialisation (without MPI in the build, every process is
// a world of one), world rank and size, local rank on the node (MPI_Comm_split_type SHARED), the
// device it computes on, per-rank logging, and the guarantee that an error on any rank ends the
// whole job (MPI_Abort) instead of hanging it.
#pragma once

#include <functional>
#include <string>

#include <c10/core/Device.h>

#include "distributed/communicator.h"

namespace vdm {

struct ProcessContextOptions {
  std::string device = "cpu";  // cpu | cuda (cuda:local_rank)
  // cuda: refuse two ranks of a node on one GPU (NCCL cannot run them). Training sets it;
  // sampling and FID, which need no NCCL, may share GPUs.
  bool exclusive_gpu = false;
};

class ProcessContext {
 public:
  // Initialises MPI (once per process) and checks the launch: under Slurm, the MPI world must
  // have SLURM_NTASKS ranks, or srun/mpirun did not wire the ranks together.
  ProcessContext(int* argc, char*** argv, ProcessContextOptions options = {});
  ~ProcessContext();
  ProcessContext(const ProcessContext&) = delete;
  ProcessContext& operator=(const ProcessContext&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return local_rank_; }
  int local_world() const { return local_world_; }
  c10::Device device() const { return device_; }
  bool is_root() const { return rank_ == 0; }

 private:
  void select_cuda_device();
  void log_layout();  // collective: rank 0 logs every rank's node and local rank
  void check_one_gpu_per_rank(void* local_comm);  // MPI_Comm* of the node's ranks
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_world_ = 1;
  c10::Device device_{c10::kCPU};
  bool finalize_ = false;
};

// The communicator over all the job's processes for CPU tensors: MPI_COMM_WORLD, or a world of
// one in a build without MPI. Needs a ProcessContext.
CommunicatorPtr make_host_communicator();

// Logging for rank r of world w: rank 0 logs INFO and up, the others WARNING and up, every line
// tagged with the rank and the node's hostname; VDM_LOG_ALL_RANKS=1 shows INFO from every rank.
void configure_rank_logging(int rank, int world);

// Ends every rank of the job now: logs message with this rank and calls MPI_Abort (or exits
// when MPI is not initialised).
[[noreturn]] void abort_job(const std::string& message, int code = 1);

// Runs body; an exception escaping it on any rank aborts the whole job with its message, so a
// failing rank never leaves the others waiting in a collective.
int run_or_abort(const std::function<int()>& body);

}  // namespace vdm
