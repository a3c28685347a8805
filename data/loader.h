// The training data loader: worker threads read, decode and augment whole batches ahead of
// the trainer into a bounded window, and batches come out strictly in sampler order. The flip
// of sample i in epoch e is drawn from (seed, epoch, i), so batches never depend on timing.
#pragma once

#include <torch/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/distributed_sampler.h"

namespace vdm {

struct LoaderOptions {
  int64_t batch_size = 64;
  int64_t workers = 2;     // 0: read on the calling thread
  int64_t prefetch = 4;    // batches in flight
  bool flip = true;
  uint64_t seed = 0;
  std::string on_error = "skip";  // skip | fail
};

struct Batch {
  torch::Tensor images;   // uint8 [B, C, H, W]
  torch::Tensor labels;   // int64 [B]
  torch::Tensor indices;  // int64 [B], dataset indices (after any replacement of bad samples)
  int64_t epoch = 0;
  SamplerState state_after;  // sampler state once this batch is consumed (for checkpoints)
};

// Whether sample `index` of `epoch` is flipped: a pure function of (seed, epoch, index).
bool flip_sample(uint64_t seed, int64_t epoch, int64_t index);

class Loader {
 public:
  Loader(DatasetPtr dataset, DistributedSampler sampler, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  Batch next();
  int64_t skipped() const { return skipped_.load(); }
  const Dataset& dataset() const { return *dataset_; }

 private:
  struct Job {
    int64_t seq, epoch;
    std::vector<int64_t> indices;
    SamplerState state_after;
  };
  Job cut_job(int64_t seq);  // call with mutex_ held (or single-threaded)
  Batch build(const Job& job);
  void read_sample(int64_t epoch, int64_t index, uint8_t* out, int64_t* used_index);
  void worker_loop();

  DatasetPtr dataset_;
  DistributedSampler sampler_;
  LoaderOptions options_;
  std::atomic<int64_t> skipped_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  int64_t next_job_ = 0, next_out_ = 0;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace vdm
