// Which GPU each rank of a node computes on, and the check that no two ranks of a node share
// one (NCCL refuses two ranks on one GPU, and exclusive-process compute mode refuses the second
// context). Plain functions of what the ranks report, so the rules are tested without a GPU.
#pragma once

#include <string>
#include <vector>

namespace vdm {

// The CUDA device index (among the devices this process sees) of the rank with this local rank.
// Ranks of a node share its visible devices in turn; under Slurm's per-task binding each rank
// sees one device, and index 0 is a different GPU for each. Throws when none is visible.
int cuda_device_for(int local_rank, int visible_devices);

// gpu_ids[i]: the PCI bus id of the GPU chosen by local rank i of node `host`. Returns an
// empty string when the ranks' GPUs are distinct, otherwise a message naming the ranks that
// share a GPU and the fix.
std::string shared_gpu_problem(const std::vector<std::string>& gpu_ids, const std::string& host,
                               int visible_devices);

}  // namespace vdm
