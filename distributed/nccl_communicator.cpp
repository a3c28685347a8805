// NcclCommunicator: NCCL collectives on CUDA tensors, run on one dedicated stream per
// communicator and ordered against the caller's compute stream with CUDA events. The NCCL
// unique id travels over the host communicator (MPI, or a world of one); failures become
// std::runtime_error naming the operation.
#include "distributed/nccl_communicator.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef VDM_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

// Ordering protocol.
//
// LibTorch queues kernels on the caller's current CUDA stream (the compute stream) and returns
// before they run, so when a collective is called, the kernels that write its input (say, the
// last gradients of a bucket during backward) may not have run yet. The collectives run on a
// stream of their own so that communication overlaps computation, which means nothing orders
// them after that work unless we do. Every call therefore:
//   1. records ready_event_ on the compute stream and makes the NCCL stream wait on it, so the
//      collective starts only once everything queued before the call has finished;
//   2. enqueues the NCCL call (and, for Avg without ncclAvg, the division) on the NCCL stream,
//      and tells LibTorch's caching allocator (recordStream) that the tensors are in use on that
//      stream, so their memory is not handed to a new tensor while NCCL still reads or writes
//      it, even if the caller drops them before the collective has finished;
//   3. records an event on the NCCL stream when the collective is queued. Blocking calls make
//      the compute stream wait on it at once; all_reduce_async gives it to the Work, whose
//      wait() makes the compute stream current at that moment wait on it, and whose done()
//      queries it.
// None of these steps blocks the host; only barrier() synchronises with the device. A
// cudaStreamWaitEvent uses the event as recorded when it is called, so ready_event_ and
// finish_event_ can be re-recorded by the next call straight away.
//
// With a CPU-only LibTorch there is no LibTorch stream: the compute stream is the legacy
// default stream, which is where any CUDA work of such a process runs. That build can never
// reach step 2 (it has no CUDA tensors), but it compiles the same code path.

namespace vdm {
namespace {

std::string where(const char* op) { return std::string("NcclCommunicator::") + op + ": "; }

void check_cuda(cudaError_t status, const char* op, const char* call) {
  if (status != cudaSuccess)
    throw std::runtime_error(where(op) + call + " failed: " + cudaGetErrorString(status));
}

void check_nccl(ncclResult_t status, const char* op, const char* call, ncclComm_t comm = nullptr) {
  if (status == ncclSuccess) return;
  std::string message = where(op) + call + " failed: " + ncclGetErrorString(status);
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  // The generic string ("unhandled system error") rarely says what went wrong; NCCL keeps a
  // more specific line per communicator.
  if (const char* detail = ncclGetLastError(comm); detail != nullptr && detail[0] != '\0')
    message += std::string(" (") + detail + ")";
#else
  (void)comm;
#endif
  throw std::runtime_error(message);
}

// Selects a device for the lifetime of a call and restores the caller's afterwards (the rank's
// own device, which ProcessContext made current), since NCCL and the CUDA runtime act on the
// current device.
#ifdef VDM_TORCH_HAS_CUDA
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* /*op*/) : guard_(static_cast<c10::DeviceIndex>(device)) {}

 private:
  c10::cuda::CUDAGuard guard_;
};
#else
// A CPU LibTorch has no c10::cuda; the runtime's calls do the same.
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* op) : device_(device) {
    check_cuda(cudaGetDevice(&previous_), op, "cudaGetDevice");
    if (previous_ != device_) check_cuda(cudaSetDevice(device_), op, "cudaSetDevice");
  }
  ~DeviceGuard() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int previous_ = 0;
};
#endif

cudaStream_t current_compute_stream(int device) {
#ifdef VDM_TORCH_HAS_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return cudaStreamLegacy;
#endif
}

// Protocol step 2: keeps the caching allocator from reusing the tensor's memory for another
// tensor until the work now queued on stream has finished.
void mark_used_on(const torch::Tensor& tensor, cudaStream_t stream, int device) {
#ifdef VDM_TORCH_HAS_CUDA
  c10::cuda::CUDACachingAllocator::recordStream(
      tensor.storage().data_ptr(),
      c10::cuda::getStreamFromExternal(stream, static_cast<c10::DeviceIndex>(device)));
#else
  (void)tensor, (void)stream, (void)device;
#endif
}

ncclDataType_t nccl_type(const char* op, c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float: return ncclFloat32;
    case c10::ScalarType::Double: return ncclFloat64;
    case c10::ScalarType::Half: return ncclFloat16;
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
    case c10::ScalarType::BFloat16: return ncclBfloat16;
#endif
    case c10::ScalarType::Int: return ncclInt32;
    case c10::ScalarType::Long: return ncclInt64;
    case c10::ScalarType::Byte: return ncclUint8;
    default: break;
  }
  throw std::runtime_error(where(op) + "unsupported dtype " + c10::toString(type) +
                           " (supported: float32, float64, bfloat16, float16, int32, int64, uint8"
#if !defined(NCCL_VERSION_CODE) || NCCL_VERSION_CODE < NCCL_VERSION(2, 10, 0)
                           "; bfloat16 needs NCCL >= 2.10"
#endif
                           ")");
}

// The async result: an event on the NCCL stream, recorded right after the all-reduce.
class NcclWork final : public Work {
 public:
  NcclWork(cudaEvent_t event, int device, torch::Tensor tensor)
      : event_(event), device_(device), tensor_(std::move(tensor)) {}
  ~NcclWork() override { cudaEventDestroy(event_); }  // safe while pending: freed on completion
  NcclWork(const NcclWork&) = delete;
  NcclWork& operator=(const NcclWork&) = delete;

  void wait() override {
    DeviceGuard guard(device_, "Work::wait");
    check_cuda(cudaStreamWaitEvent(current_compute_stream(device_), event_, 0), "Work::wait",
               "cudaStreamWaitEvent");
  }

  bool done() override {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) {
      // "Not ready" is an answer, not a failure; clear it so that it is not reported later by
      // an unrelated call that checks cudaGetLastError.
      (void)cudaGetLastError();
      return false;
    }
    check_cuda(status, "Work::done", "cudaEventQuery");
    return true;
  }

 private:
  cudaEvent_t event_;
  int device_;
  torch::Tensor tensor_;  // the result lives at least as long as the handle to it
};

// What rank 0 sends to every rank: the id, and whether creating it worked, so that all ranks
// fail together instead of the others hanging in ncclCommInitRank.
struct IdMessage {
  int status = ncclSuccess;
  ncclUniqueId id{};
};

}  // namespace

int NcclCommunicator::nccl_version() {
  int version = 0;
  check_nccl(ncclGetVersion(&version), "nccl_version", "ncclGetVersion");
  return version;
}

NcclCommunicator::NcclCommunicator(Communicator& host, int device_index) : device_(device_index) {
  rank_ = host.rank();
  world_ = host.world();

  int devices = 0;
  check_cuda(cudaGetDeviceCount(&devices), "NcclCommunicator", "cudaGetDeviceCount");
  if (device_index < 0 || device_index >= devices)
    throw std::runtime_error(where("NcclCommunicator") + "device index " +
                             std::to_string(device_index) + " out of range (this process sees " +
                             std::to_string(devices) + " CUDA devices)");
  DeviceGuard guard(device_, "NcclCommunicator");

  IdMessage message;
  if (rank_ == 0) message.status = ncclGetUniqueId(&message.id);
  {
    auto bytes = torch::empty({int64_t(sizeof(message))}, torch::kUInt8);
    std::memcpy(bytes.data_ptr<uint8_t>(), &message, sizeof(message));
    host.broadcast(bytes, 0);
    std::memcpy(&message, bytes.data_ptr<uint8_t>(), sizeof(message));
  }
  if (message.status != ncclSuccess)
    throw std::runtime_error(where("NcclCommunicator") + "ncclGetUniqueId failed on rank 0: " +
                             ncclGetErrorString(static_cast<ncclResult_t>(message.status)));

  try {
    check_nccl(ncclCommInitRank(&comm_, world_, message.id, rank_), "NcclCommunicator",
               "ncclCommInitRank");
    // High priority: while backward runs, a queued all-reduce should not wait behind compute
    // kernels, or the overlap is lost. Non-blocking: no implicit synchronisation with the legacy
    // default stream; the events of the protocol are the only ordering.
#ifdef VDM_TORCH_HAS_CUDA
    // From LibTorch's pool, which never destroys its streams: tensors marked as used on this
    // stream (recordStream) may outlive the communicator (the buckets behind .grad, a Work's
    // tensor), and the caching allocator records an event on that stream when they are freed.
    stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, static_cast<c10::DeviceIndex>(device_)).stream();
#else
    int least = 0, greatest = 0;
    check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest), "NcclCommunicator",
               "cudaDeviceGetStreamPriorityRange");
    check_cuda(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest),
               "NcclCommunicator", "cudaStreamCreateWithPriority");
    owns_stream_ = true;
#endif
    check_cuda(cudaEventCreateWithFlags(&ready_event_, cudaEventDisableTiming), "NcclCommunicator",
               "cudaEventCreateWithFlags");
    check_cuda(cudaEventCreateWithFlags(&finish_event_, cudaEventDisableTiming),
               "NcclCommunicator", "cudaEventCreateWithFlags");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&barrier_buffer_), sizeof(float)),
               "NcclCommunicator", "cudaMalloc");
    check_cuda(cudaMemset(barrier_buffer_, 0, sizeof(float)), "NcclCommunicator", "cudaMemset");
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
    // The header may be newer than the library loaded at run time.
    native_avg_ = nccl_version() >= NCCL_VERSION(2, 10, 0);
#endif
  } catch (...) {
    release(/*abort=*/true);
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  // Destroyed while an exception unwinds the stack: peers may never join collectives this rank
  // has queued, so waiting for them could hang; abort them instead.
  release(/*abort=*/std::uncaught_exceptions() > 0);
}

void NcclCommunicator::release(bool abort) noexcept {
  int previous = -1;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                        cudaSetDevice(device_) == cudaSuccess;
  if (comm_ != nullptr) {
    if (abort) {
      ncclCommAbort(comm_);
    } else {
      // Let queued collectives finish before their communicator's resources go away.
      if (stream_ != nullptr) cudaStreamSynchronize(stream_);
      ncclCommDestroy(comm_);
    }
    comm_ = nullptr;
  }
  if (barrier_buffer_ != nullptr) cudaFree(barrier_buffer_);
  if (finish_event_ != nullptr) cudaEventDestroy(finish_event_);
  if (ready_event_ != nullptr) cudaEventDestroy(ready_event_);
  if (stream_ != nullptr && owns_stream_) cudaStreamDestroy(stream_);
  barrier_buffer_ = nullptr;
  finish_event_ = ready_event_ = nullptr;
  stream_ = nullptr;
  if (switched) cudaSetDevice(previous);
}

ncclDataType_t NcclCommunicator::check_tensor(const char* op, const torch::Tensor& tensor,
                                              bool need_contiguous) const {
  if (!tensor.defined()) throw std::runtime_error(where(op) + "undefined tensor");
  if (!tensor.is_cuda())
    throw std::runtime_error(
        where(op) + "tensor is on " + tensor.device().str() +
        ", but NCCL collectives need CUDA tensors (MpiCommunicator handles CPU tensors; a "
        "CPU-only LibTorch cannot create CUDA tensors, so this build cannot use NCCL)");
  if (tensor.device().index() != device_)
    throw std::runtime_error(where(op) + "tensor is on " + tensor.device().str() +
                             ", but this communicator uses cuda:" + std::to_string(device_));
  if (tensor.layout() != c10::kStrided)
    throw std::runtime_error(where(op) + "sparse and other non-strided tensors are not supported");
  if (need_contiguous && !tensor.is_contiguous())
    throw std::runtime_error(where(op) + "the tensor must be contiguous (it is updated in place)");
  return nccl_type(op, tensor.scalar_type());
}

ncclRedOp_t NcclCommunicator::nccl_op(ReduceOp op) const {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Avg:
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
      if (native_avg_) return ncclAvg;
#endif
      return ncclSum;  // divided afterwards by divide_on_stream
  }
  return ncclSum;
}

void NcclCommunicator::wait_for_compute(const char* op) {
  check_cuda(cudaEventRecord(ready_event_, current_compute_stream(device_)), op, "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(stream_, ready_event_, 0), op, "cudaStreamWaitEvent");
}

void NcclCommunicator::compute_waits(const char* op) {
  check_cuda(cudaEventRecord(finish_event_, stream_), op, "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(current_compute_stream(device_), finish_event_, 0), op,
             "cudaStreamWaitEvent");
}

void NcclCommunicator::divide_on_stream(torch::Tensor& tensor) {
  if (world_ == 1) return;
#ifdef VDM_TORCH_HAS_CUDA
  // LibTorch launches on its current stream; make that the NCCL stream for the division, so
  // that it runs after the sum and before the finish event.
  c10::cuda::CUDAStreamGuard on_nccl_stream(
      c10::cuda::getStreamFromExternal(stream_, static_cast<c10::DeviceIndex>(device_)));
#endif
  if (tensor.is_floating_point())
    tensor.div_(world_);
  else
    tensor.div_(world_, "trunc");  // integers: the mean, rounded towards zero
}

void NcclCommunicator::enqueue_all_reduce(const char* op, torch::Tensor& tensor,
                                          ReduceOp reduce_op) {
  check_alive(op);
  const ncclDataType_t type = check_tensor(op, tensor, /*need_contiguous=*/true);
  wait_for_compute(op);
  if (tensor.numel() == 0) return;  // every rank has the same shape, so every rank skips
  mark_used_on(tensor, stream_, device_);
  check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), size_t(tensor.numel()), type,
                           nccl_op(reduce_op), comm_, stream_),
             op, "ncclAllReduce", comm_);
  if (reduce_op == ReduceOp::Avg && !native_avg_) divide_on_stream(tensor);
}

void NcclCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  std::lock_guard<std::mutex> lock(mutex_);
  DeviceGuard guard(device_, "all_reduce");
  enqueue_all_reduce("all_reduce", tensor, op);
  compute_waits("all_reduce");
}

WorkPtr NcclCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  std::lock_guard<std::mutex> lock(mutex_);
  DeviceGuard guard(device_, "all_reduce_async");
  enqueue_all_reduce("all_reduce_async", tensor, op);
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "all_reduce_async",
             "cudaEventCreateWithFlags");
  const cudaError_t status = cudaEventRecord(event, stream_);
  if (status != cudaSuccess) cudaEventDestroy(event);
  check_cuda(status, "all_reduce_async", "cudaEventRecord");
  return std::make_shared<NcclWork>(event, device_, tensor);
}

void NcclCommunicator::broadcast(torch::Tensor& tensor, int root) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (root < 0 || root >= world_)
    throw std::runtime_error(where("broadcast") + "root " + std::to_string(root) +
                             " out of range for world size " + std::to_string(world_));
  check_alive("broadcast");
  DeviceGuard guard(device_, "broadcast");
  const ncclDataType_t type = check_tensor("broadcast", tensor, /*need_contiguous=*/true);
  wait_for_compute("broadcast");
  if (tensor.numel() > 0) {
    mark_used_on(tensor, stream_, device_);
    check_nccl(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), size_t(tensor.numel()), type,
                             root, comm_, stream_),
               "broadcast", "ncclBroadcast", comm_);
  }
  compute_waits("broadcast");
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& tensor) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_alive("all_gather");
  DeviceGuard guard(device_, "all_gather");
  const ncclDataType_t type = check_tensor("all_gather", tensor, /*need_contiguous=*/false);
  // Both are made on the compute stream, so step 1 orders the copy (if any) before the gather.
  const torch::Tensor input = tensor.contiguous();
  std::vector<int64_t> shape{world_};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  torch::Tensor output = input.new_empty(shape);
  wait_for_compute("all_gather");
  if (input.numel() > 0) {
    mark_used_on(input, stream_, device_);
    mark_used_on(output, stream_, device_);
    check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), size_t(input.numel()), type,
                             comm_, stream_),
               "all_gather", "ncclAllGather", comm_);
  }
  compute_waits("all_gather");
  return output;
}

void NcclCommunicator::reduce(torch::Tensor& tensor, int root, ReduceOp op) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (root < 0 || root >= world_)
    throw std::runtime_error(where("reduce") + "root " + std::to_string(root) +
                             " out of range for world size " + std::to_string(world_));
  check_alive("reduce");
  DeviceGuard guard(device_, "reduce");
  const ncclDataType_t type = check_tensor("reduce", tensor, /*need_contiguous=*/true);
  wait_for_compute("reduce");
  if (tensor.numel() > 0) {
    mark_used_on(tensor, stream_, device_);
    check_nccl(ncclReduce(tensor.data_ptr(), tensor.data_ptr(), size_t(tensor.numel()), type,
                          nccl_op(op), root, comm_, stream_),
               "reduce", "ncclReduce", comm_);
    if (op == ReduceOp::Avg && !native_avg_ && rank_ == root) divide_on_stream(tensor);
  }
  compute_waits("reduce");
}

void NcclCommunicator::barrier() {
  std::lock_guard<std::mutex> lock(mutex_);
  check_alive("barrier");
  DeviceGuard guard(device_, "barrier");
  wait_for_compute("barrier");
  check_nccl(ncclAllReduce(barrier_buffer_, barrier_buffer_, 1, ncclFloat32, ncclSum, comm_,
                           stream_),
             "barrier", "ncclAllReduce", comm_);
  // The host returns only once every rank has arrived (and this rank's earlier GPU work,
  // which the NCCL stream waited for in step 1, is done).
  host_wait("barrier");
}

void NcclCommunicator::synchronize() {
  std::lock_guard<std::mutex> lock(mutex_);
  check_alive("synchronize");
  DeviceGuard guard(device_, "synchronize");
  host_wait("synchronize");
}

void NcclCommunicator::check_alive(const char* op) const {
  if (comm_ == nullptr)
    throw std::runtime_error(where(op) + "the communicator was aborted after an earlier NCCL error");
}

// cudaStreamSynchronize would block for ever on a collective whose peer is gone, so the host
// polls instead: the stream's progress, and NCCL's asynchronous error state. The poll interval
// (100 us) is far below a collective's latency across nodes and costs nothing measurable.
void NcclCommunicator::host_wait(const char* op) {
  check_cuda(cudaEventRecord(finish_event_, stream_), op, "cudaEventRecord");
  while (true) {
    const cudaError_t status = cudaEventQuery(finish_event_);
    if (status == cudaSuccess) return;
    if (status != cudaErrorNotReady) check_cuda(status, op, "cudaEventQuery");
    (void)cudaGetLastError();  // "not ready" is an answer, not an error to report later
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(comm_, &async), op, "ncclCommGetAsyncError", comm_);
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
    if (async == ncclInProgress) async = ncclSuccess;  // non-blocking set-up still running
#endif
    if (async != ncclSuccess) {
      std::string message = where(op) + "NCCL reported " + ncclGetErrorString(async);
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
      if (const char* detail = ncclGetLastError(comm_); detail != nullptr && detail[0] != '\0')
        message += std::string(" (") + detail + ")";
#endif
      release(/*abort=*/true);
      throw std::runtime_error(message + " on rank " + std::to_string(rank_) +
                               "; a peer rank probably died or the network failed. The NCCL "
                               "communicator was aborted (NCCL_DEBUG=WARN shows NCCL's own log)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace vdm
