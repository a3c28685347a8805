// Device choice and the one-GPU-per-rank check (see device_assignment.h).
#include "distributed/device_assignment.h"

#include <map>
#include <stdexcept>

namespace vdm {

int cuda_device_for(int local_rank, int visible_devices) {
  if (visible_devices < 1)
    throw std::runtime_error("train.device=cuda, but this process sees no CUDA device (CUDA_VISIBLE_DEVICES?)");
  return local_rank % visible_devices;
}

std::string shared_gpu_problem(const std::vector<std::string>& gpu_ids, const std::string& host,
                               int visible_devices) {
  std::map<std::string, int> first_user;
  for (int rank = 0; rank < int(gpu_ids.size()); ++rank) {
    auto [it, fresh] = first_user.emplace(gpu_ids[size_t(rank)], rank);
    if (fresh) continue;
    return "local ranks " + std::to_string(it->second) + " and " + std::to_string(rank) + " on node " + host +
           " would both use GPU " + it->first + ": " + std::to_string(gpu_ids.size()) +
           " ranks were started on this node, which has " + std::to_string(visible_devices) +
           " visible GPU(s). NCCL needs one GPU per rank: start at most that many ranks per node "
           "(slurm.tasks_per_node, srun --ntasks-per-node, mpirun -npernode) or give each task its "
           "own GPU (srun --gpus-per-task=1)";
  }
  return "";
}

}  // namespace vdm
