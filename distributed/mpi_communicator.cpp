// MPI collectives on CPU tensors (see mpi_communicator.h). Tensors must be contiguous: the
// collectives work on their storage in place, with no staging copy.
#include "distributed/mpi_communicator.h"

#include <torch/torch.h>

#include <stdexcept>

namespace vdm {
namespace {

MPI_Datatype mpi_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kUInt8: return MPI_UINT8_T;
    default:
      throw std::invalid_argument(std::string("MpiCommunicator: unsupported dtype ") +
                                  c10::toString(t.scalar_type()));
  }
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::Max ? MPI_MAX : MPI_SUM; }

void check(const torch::Tensor& t, const char* what) {
  if (!t.device().is_cpu())
    throw std::invalid_argument(std::string("MpiCommunicator::") + what + " needs a CPU tensor; "
                                "CUDA tensors go through NcclCommunicator");
  if (!t.is_contiguous())
    throw std::invalid_argument(std::string("MpiCommunicator::") + what + " needs a contiguous tensor");
}

void ok(int code, const char* what) {
  if (code != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(msg, len));
  }
}

class MpiWork : public Work {
 public:
  MpiWork(torch::Tensor tensor, ReduceOp op, int world) : tensor_(std::move(tensor)), op_(op), world_(world) {}
  MPI_Request* request() { return &request_; }
  void wait() override {
    if (finished_) return;
    ok(MPI_Wait(&request_, MPI_STATUS_IGNORE), "Wait(Iallreduce)");
    finish();
  }
  bool done() override {
    if (finished_) return true;
    int flag = 0;
    ok(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), "Test(Iallreduce)");
    if (flag) finish();
    return finished_;
  }

 private:
  void finish() {
    if (op_ == ReduceOp::Avg) tensor_.div_(world_);
    finished_ = true;
  }
  torch::Tensor tensor_;  // keeps the buffer alive while MPI writes into it
  ReduceOp op_;
  int world_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool finished_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &world_);
}

void MpiCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  check(t, "all_reduce");
  ok(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), int(t.numel()), mpi_type(t), mpi_op(op), comm_), "Allreduce");
  if (op == ReduceOp::Avg) t.div_(world_);
}

WorkPtr MpiCommunicator::all_reduce_async(torch::Tensor& t, ReduceOp op) {
  check(t, "all_reduce_async");
  auto work = std::make_shared<MpiWork>(t, op, world_);
  ok(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), int(t.numel()), mpi_type(t), mpi_op(op), comm_,
                    work->request()),
     "Iallreduce");
  return work;
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  check(t, "broadcast");
  ok(MPI_Bcast(t.data_ptr(), int(t.numel()), mpi_type(t), root, comm_), "Bcast");
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& tensor) {
  auto t = tensor.contiguous();
  check(t, "all_gather");
  std::vector<int64_t> shape{world_};
  for (auto s : t.sizes()) shape.push_back(s);
  auto out = torch::empty(shape, t.options());
  ok(MPI_Allgather(t.data_ptr(), int(t.numel()), mpi_type(t), out.data_ptr(), int(t.numel()),
                   mpi_type(t), comm_),
     "Allgather");
  return out;
}

void MpiCommunicator::reduce(torch::Tensor& t, int root, ReduceOp op) {
  check(t, "reduce");
  void* send = rank_ == root ? MPI_IN_PLACE : t.data_ptr();
  ok(MPI_Reduce(send, t.data_ptr(), int(t.numel()), mpi_type(t), mpi_op(op), root, comm_), "Reduce");
  if (op == ReduceOp::Avg && rank_ == root) t.div_(world_);
}

void MpiCommunicator::barrier() { ok(MPI_Barrier(comm_), "Barrier"); }

}  // namespace vdm
