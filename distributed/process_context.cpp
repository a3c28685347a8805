// Process context (see process_context.h).
#include "distributed/process_context.h"

#include <c10/util/Exception.h>

#ifdef VDM_WITH_MPI
#include <mpi.h>
#include "distributed/mpi_communicator.h"
#else
#include "distributed/self_communicator.h"
#endif
#ifdef VDM_TORCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#endif
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "distributed/device_assignment.h"

namespace vdm {

namespace {

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace

void configure_rank_logging(int rank, int world) {
  auto logger = spdlog::default_logger();
  if (world > 1) {  // the node too: on a cluster, which machine said it matters
    logger->set_pattern("[%H:%M:%S] [rank " + std::to_string(rank) + "/" + std::to_string(world) + " " +
                        host_name() + "] %^%l%$ %v");
  }
  const char* all = std::getenv("VDM_LOG_ALL_RANKS");
  const bool show_all = all && std::string(all) != "0";
  logger->set_level(rank == 0 || show_all ? spdlog::level::info : spdlog::level::warn);
}

void abort_job(const std::string& message, int code) {
  int rank = 0;
  [[maybe_unused]] bool mpi_live = false;  // MPI_Abort is only possible between Init and Finalize
#ifdef VDM_WITH_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  mpi_live = initialized && !finalized;
  if (mpi_live) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
#endif
  spdlog::default_logger()->flush();
  // Plain stderr rather than the logger: the message must appear whatever this rank's level.
  std::fprintf(stderr, "vdm: rank %d: %s\n", rank, message.c_str());
  std::fflush(stderr);
#ifdef VDM_WITH_MPI
  if (mpi_live) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

CommunicatorPtr make_host_communicator() {
#ifdef VDM_WITH_MPI
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
#else
  return std::make_shared<SelfCommunicator>();
#endif
}

int run_or_abort(const std::function<int()>& body) {
  try {
    return body();
  } catch (const c10::Error& e) {
    // LibTorch's own errors carry a C++ backtrace that says nothing to a user.
    abort_job(e.what_without_backtrace());
  } catch (const std::exception& e) {
    abort_job(e.what());
  } catch (...) {
    abort_job("unknown exception");
  }
}

ProcessContext::ProcessContext(int* argc, char*** argv, ProcessContextOptions options) {
#ifdef VDM_WITH_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // MULTIPLE: the collective watchdog may call MPI_Abort from its own thread.
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    finalize_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_world_);
#else
  (void)argc, (void)argv;
  // Without MPI every process is a world of one: a launcher that started several would have
  // each train alone on the whole data.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* size = std::getenv(var); size && std::atoi(size) > 1)
      abort_job(std::string("this vdm was built without MPI (-DVDM_WITH_MPI=OFF) and runs one "
                            "process, but the launcher started ") + size + " (" + var +
                    "); rebuild with -DVDM_WITH_MPI=ON to train on several ranks", 2);
#endif
  configure_rank_logging(rank_, world_);
  log_layout();

  if (const char* ntasks = std::getenv("SLURM_NTASKS")) {
    const int expected = std::atoi(ntasks);
    // A job step that runs the program once per task without PMIx wiring gives every process a
    // world of 1; they would each train alone on the whole data.
    if (expected > 0 && expected != world_ && std::getenv("SLURM_STEP_ID"))
      abort_job("Slurm started " + std::to_string(expected) + " tasks but MPI sees a world of " +
                std::to_string(world_) + ": the ranks are not connected. Launch with "
                "`srun --mpi=pmix vdm ...` (Debian's OpenMPI has no PMI-1/2), or run "
                "`mpirun vdm ...` inside the allocation", 2);
  }

  if (options.device == "cuda") {
    select_cuda_device();
#ifdef VDM_WITH_MPI
    if (options.exclusive_gpu) check_one_gpu_per_rank(&local);
#endif
  } else if (options.device != "cpu") {
    abort_job("unknown device '" + options.device + "' (choose cpu or cuda)", 2);
  }
#ifdef VDM_WITH_MPI
  MPI_Comm_free(&local);
#endif
}

// The rank's GPU becomes the current device before anything else touches CUDA: LibTorch, NCCL
// and the CUDA runtime act on the current device, which would otherwise be device 0 on every
// rank (one context per rank on GPU 0, refused outright in exclusive-process mode).
void ProcessContext::select_cuda_device() {
  if (!torch::cuda::is_available())
    abort_job("train.device=cuda, but this LibTorch build or machine has no CUDA device", 2);
  try {
    device_ = c10::Device(c10::kCUDA, c10::DeviceIndex(cuda_device_for(local_rank_, int(torch::cuda::device_count()))));
  } catch (const std::exception& e) {
    abort_job(e.what(), 2);
  }
#ifdef VDM_TORCH_HAS_CUDA
  c10::cuda::set_device(device_.index());
#endif
}

// Ranks of a node compare the PCI bus ids of their GPUs, so that two ranks on one GPU are
// refused by name whether they see all of the node's GPUs or one each (Slurm's binding).
void ProcessContext::check_one_gpu_per_rank(void* local_comm) {
#if defined(VDM_WITH_MPI) && defined(VDM_TORCH_HAS_CUDA)
  constexpr int kIdBytes = 32;
  char id[kIdBytes] = {};
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device_.index());
  std::snprintf(id, sizeof id, "%04x:%02x:%02x", unsigned(prop->pciDomainID), unsigned(prop->pciBusID),
                unsigned(prop->pciDeviceID));
  std::vector<char> all(size_t(kIdBytes) * size_t(local_world_));
  MPI_Allgather(id, kIdBytes, MPI_CHAR, all.data(), kIdBytes, MPI_CHAR, *static_cast<MPI_Comm*>(local_comm));
  std::vector<std::string> ids;
  for (int r = 0; r < local_world_; ++r) ids.emplace_back(all.data() + size_t(r) * kIdBytes);
  const std::string problem = shared_gpu_problem(ids, host_name(), int(torch::cuda::device_count()));
  if (!problem.empty()) abort_job(problem, 2);
#else
  (void)local_comm;
#endif
}

// Rank 0 logs where every rank runs: the node names and local ranks of the whole job, the first
// thing to look at when a multi-node launch placed ranks other than intended.
void ProcessContext::log_layout() {
#ifdef VDM_WITH_MPI
  if (world_ < 2) return;
  constexpr int kBytes = 64;
  char mine[kBytes] = {};
  std::snprintf(mine, sizeof mine, "%s", host_name().c_str());
  std::vector<char> hosts(size_t(kBytes) * size_t(world_));
  std::vector<int> locals(static_cast<size_t>(world_));
  MPI_Gather(mine, kBytes, MPI_CHAR, hosts.data(), kBytes, MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Gather(&local_rank_, 1, MPI_INT, locals.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rank_ != 0) return;
  std::vector<std::string> order;  // nodes in the order of their first rank
  std::map<std::string, std::string> ranks;
  for (int r = 0; r < world_; ++r) {
    const std::string host(hosts.data() + size_t(r) * kBytes);
    if (!ranks.count(host)) order.push_back(host);
    ranks[host] += (ranks[host].empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " (local " +
                   std::to_string(locals[size_t(r)]) + ")";
  }
  std::string text;
  for (const auto& host : order) text += (text.empty() ? "" : "; ") + host + ": " + ranks[host];
  spdlog::info("{} ranks on {} node(s): {}", world_, order.size(), text);
#endif
}

ProcessContext::~ProcessContext() {
#ifdef VDM_WITH_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalize_ && !finalized) MPI_Finalize();
#endif
}

}  // namespace vdm
