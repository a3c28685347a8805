// Communicator over NCCL for CUDA tensors: all-reduce (sum/avg/max, blocking or async), broadcast,
// all-gather, reduce and barrier on a dedicated CUDA stream, ordered against the compute stream
// with events. Built only when nccl.h and the CUDA runtime are found (VDM_WITH_NCCL).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <mutex>

#include "distributed/communicator.h"

namespace vdm {

// Tensors must be contiguous CUDA tensors on this communicator's device, of dtype float32,
// float64, bfloat16, float16, int32, int64 or uint8; anything else throws std::runtime_error,
// as does any NCCL or CUDA failure (the message names the operation and the failing call).
//
// "Blocking" collectives (all_reduce, broadcast, all_gather, reduce) block the *current CUDA
// stream*, not the host: work queued on that stream afterwards sees the result, as with any
// other CUDA op in LibTorch. barrier() is the one call that also blocks the host.
//
// With a CPU-only LibTorch (the CI build) this class compiles and links, but no collective can
// run: such a LibTorch cannot create CUDA tensors, and every call rejects non-CUDA tensors.
//
// NCCL reports a failed collective (a peer that died, a broken link) asynchronously: the kernel
// never finishes. barrier() and synchronize() therefore wait by polling the stream and
// ncclCommGetAsyncError; on an error they abort the communicator (ncclCommAbort, which also
// frees the stuck kernels) and throw a std::runtime_error naming the NCCL error. Every call after
// that throws.
//
// Calls are serialised by an internal mutex, so the autograd thread (gradient hooks) and the
// training thread may both use one communicator; the order of collectives must still be the
// same on every rank.
class NcclCommunicator : public Communicator {
 public:
  // Collective over host (a CPU communicator: MPI, or a world of one): rank 0 creates the NCCL
  // id, host broadcasts it, and each rank joins on CUDA device device_index. host is only
  // used here.
  NcclCommunicator(Communicator& host, int device_index);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "nccl"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  // wait() makes the current CUDA stream wait for the result (the host does not block);
  // done() is true once the collective has finished on the device.
  WorkPtr all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(torch::Tensor& tensor, int root = 0) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void reduce(torch::Tensor& tensor, int root = 0, ReduceOp op = ReduceOp::Sum) override;
  void barrier() override;
  // Waits on the host for the NCCL stream, polling ncclCommGetAsyncError: a peer that died or a
  // network failure aborts the communicator and throws, instead of hanging until the watchdog.
  void synchronize() override;

  int device_index() const { return device_; }
  // The dedicated stream every collective runs on (for profiling, or a watchdog's query).
  cudaStream_t stream() const { return stream_; }
  // Library version as ncclGetVersion reports it (e.g. 22809 for 2.28.9).
  static int nccl_version();

 private:
  // Throws unless tensor is a strided CUDA tensor on our device of a supported dtype (and
  // contiguous when asked); returns its NCCL type.
  ncclDataType_t check_tensor(const char* op, const torch::Tensor& tensor,
                              bool need_contiguous) const;
  ncclRedOp_t nccl_op(ReduceOp op) const;
  // Protocol step 1 (see nccl_communicator.cpp): the NCCL stream waits for the compute stream.
  void wait_for_compute(const char* op);
  // Protocol step 3 for blocking calls: the compute stream waits for the NCCL stream.
  void compute_waits(const char* op);
  // Enqueues an all-reduce of tensor; Avg without ncclAvg divides on the NCCL stream
  // afterwards, so the result is complete when the next event on that stream fires.
  void enqueue_all_reduce(const char* op, torch::Tensor& tensor, ReduceOp reduce_op);
  void divide_on_stream(torch::Tensor& tensor);
  // abort: ncclCommAbort instead of waiting for queued work and ncclCommDestroy.
  void release(bool abort) noexcept;
  // Throws once the communicator has been aborted after an asynchronous error.
  void check_alive(const char* op) const;
  // The host waits for everything queued on the NCCL stream, polling for asynchronous errors.
  void host_wait(const char* op);

  int rank_ = 0, world_ = 1, device_ = 0;
  bool native_avg_ = false;  // ncclAvg available (NCCL >= 2.10 at build and run time)
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;  // created here (a CPU LibTorch); else LibTorch's pool owns it
  cudaEvent_t ready_event_ = nullptr;   // compute stream -> NCCL stream, reused per call
  cudaEvent_t finish_event_ = nullptr;  // NCCL stream -> compute stream for blocking calls
  float* barrier_buffer_ = nullptr;     // one device float that barrier() all-reduces
  std::mutex mutex_;
};

}  // namespace vdm
