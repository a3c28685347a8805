// Collectives over a world of one process (see self_communicator.h).
#include "distributed/self_communicator.h"

#include <torch/torch.h>

#include <stdexcept>

namespace vdm {
namespace {

void require_usable(const torch::Tensor& t, const char* what, int root = 0) {
  if (!t.defined() || !t.is_contiguous())
    throw std::invalid_argument(std::string("SelfCommunicator::") + what + " needs a contiguous tensor");
  if (root != 0)
    throw std::invalid_argument(std::string("SelfCommunicator::") + what + ": root " +
                                std::to_string(root) + " is not a rank of a world of one");
}

class DoneWork : public Work {
 public:
  void wait() override {}
  bool done() override { return true; }
};

}  // namespace

void SelfCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp) {
  require_usable(tensor, "all_reduce");
}

WorkPtr SelfCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp) {
  require_usable(tensor, "all_reduce_async");
  return std::make_shared<DoneWork>();
}

void SelfCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_usable(tensor, "broadcast", root);
}

torch::Tensor SelfCommunicator::all_gather(const torch::Tensor& tensor) {
  require_usable(tensor, "all_gather");
  return tensor.unsqueeze(0).clone();
}

void SelfCommunicator::reduce(torch::Tensor& tensor, int root, ReduceOp) {
  require_usable(tensor, "reduce", root);
}

}  // namespace vdm
