// One optimiser step (docs/design.md §2): the micro-batches' forward and backward through the
// GradientReducer, the proposal's histogram, the global gradient norm and clipping, AdamW and the
// EMA; a non-finite step is skipped and reported. Built from plain parts, so a test can run a step
// from C++ with any denoiser.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "distributed/communicator.h"
#include "distributed/gradient_reducer.h"
#include "models/denoiser_net.h"
#include "models/ema.h"
#include "objectives/objective.h"
#include "training/train_state.h"

namespace torch::optim {
class Optimizer;
}

namespace vdm {

class Watchdog;
class FusedOptimizer;

struct TrainStepOptions {
  int64_t grad_accum = 1;    // micro-batches per step; all but the last only accumulate
  double grad_clip = 1.0;    // max global gradient norm; 0: off
  bool bf16 = false;         // the network's forward under bf16 autocast (training/autocast.h)
  bool channels_last = false;  // the network's input in NHWC memory format
  // AdamW, clipping and the EMA on flat buffers (training/fused_optimizer.h) where the optimiser
  // allows it; the same numbers as the per-parameter loops, in a few whole-buffer passes.
  bool fused_optimizer = true;
  bool class_conditional = false;  // the batches' labels go to the network
  // Class-conditional: the share of examples trained on the null label (num_classes), which
  // classifier-free guidance and the unconditional bits/dim need; drawn from the levels generator.
  double label_dropout = 0.0;
  int64_t num_classes = 0;
  uint64_t seed = 0;         // for the offsets that stratify noise levels across ranks
  int rank = 0, world = 1;
};

// What one step did; sums over its micro-batches, on this rank.
struct StepResult {
  int64_t micro_batches = 0;
  double loss = 0;                      // sum of the micro-batches' batch-mean losses
  std::map<std::string, double> terms;  // sums of the batch means of each term (nats)
  bool likelihood = false;              // the loss is a likelihood bound: bpd is meaningful
  double bpd = 0;                       // sum of the micro-batches' mean bits/dim
  double grad_norm = 0;                 // global norm before clipping
  bool finite = true;                   // false: the update was skipped
  double data_wait_s = 0;               // time spent waiting for the loader (ms_data)
  // Host seconds per phase of the step beyond the data wait (forward, backward, metrics, reduce,
  // clip, optimizer, ema): the profile behind the ms_* fields of metrics.jsonl. On CUDA the host
  // runs ahead of the GPU, so a phase's GPU work shows where the host next waits (the reduction,
  // .item()).
  std::map<std::string, double> phase_s;
  SamplerState sampler;                 // the sampler's state after the last micro-batch
};

// What the step works on; the trainer (or a test) owns them.
struct TrainStepParts {
  DenoiserNet model;
  Objective objective;
  Ema ema;
  torch::optim::Optimizer& optimizer;
  GradientReducer& reducer;
  Communicator& host_comm;  // CPU tensors: the proposal's histogram
  Communicator& grad_comm;  // the reducer's (NCCL on CUDA): synchronized after the reduction
  Watchdog& watchdog;
  RngStreams& rng;
};

class TrainStep {
 public:
  TrainStep(TrainStepOptions options, TrainStepParts parts);
  ~TrainStep();
  // Collective. `step` is the number of steps taken before this one; next_batch yields the
  // micro-batches in order. Sets every parameter group's learning rate to lr.
  StepResult run(int64_t step, double lr, const std::function<Batch()>& next_batch);

 private:
  void forward_backward(int64_t step, int64_t micro, const Batch& batch, StepResult& result);
  double global_grad_norm() const;
  void scale_gradients(double factor);  // every parameter's gradient, one by one
  void reduce_gradients(int64_t step);
  TrainStepOptions o_;
  TrainStepParts p_;
  Denoiser denoiser_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<FusedOptimizer> fused_;
};

// The non-finite guard's count: returns true when `limit` steps in a row were non-finite.
bool count_nonfinite(TrainCounters& counters, bool finite, int64_t limit);

}  // namespace vdm
