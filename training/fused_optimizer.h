// AdamW, the global gradient norm, clipping and the EMA as a handful of whole-buffer operations:
// parameters, AdamW's moments and the EMA's averages live in flat buffers laid out like the
// GradientReducer's gradient buckets, so each update is one elementwise pass per bucket.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "distributed/gradient_reducer.h"
#include "models/ema.h"

namespace torch::optim {
class AdamW;
struct AdamWParamState;
}
namespace torch::nn {
class Module;
}

namespace vdm {

class FusedOptimizer {
 public:
  // Moves every bucketed parameter of `adamw` (one parameter group), its AdamW state and the
  // EMA averages of `model`'s parameters into flat buffers; values are unchanged. Throws
  // std::invalid_argument when the optimiser does not fit (several groups, amsgrad, a bucketed
  // parameter it does not hold): use supported() first.
  FusedOptimizer(const GradientReducer& reducer, torch::optim::AdamW& adamw, Ema ema, torch::nn::Module& model);
  static bool supported(const GradientReducer& reducer, const torch::optim::AdamW& adamw);
  // AdamW's state of parameter p (nullptr before its first step), on LibTorch 1.13 and 2.x.
  static torch::optim::AdamWParamState* state_of(torch::optim::AdamW& adamw, const torch::Tensor& p);

  // The bucket buffers hold the gradients times 1/scale (the reducer's sum over ranks: scale =
  // GradientReducer::gradient_scale()) until the next scale_gradients() or step() applies it.
  void set_gradient_scale(double scale) { grad_scale_ = scale; }
  // sqrt of the sum of squared gradients over every bucket, accumulated in float64.
  double grad_norm();
  // Multiplies the gradients by factor (and the pending scale, in the same pass).
  void scale_gradients(double factor);
  // torch::optim::AdamW::step() of LibTorch 1.13 and 2.x (decoupled decay, then Adam with bias
  // correction), with the group's current options; the per-parameter step counts advance as
  // they would there, so checkpoints hold the same state either way.
  void step();
  // EmaImpl::update(model, step) on the flat buffers.
  void update_ema(int64_t step);

 private:
  // A bucketed parameter and its slots in the flat buffers, made once with the strides its
  // gradient has in the bucket, so that a later load in another layout is copied in, not adopted.
  struct Member {
    torch::Tensor param, param_slot, exp_avg_slot, exp_avg_sq_slot;
  };
  struct Bucket {
    torch::Tensor grad, param, exp_avg, exp_avg_sq, average;
    std::vector<Member> members;
    std::vector<std::pair<int64_t, int64_t>> ema_runs;  // [begin, end) of model parameters
  };
  struct EmaSlot {
    size_t bucket;
    int64_t offset;
  };
  void link();
  double grad_scale_ = 1;
  torch::optim::AdamW& adamw_;
  Ema ema_;
  std::vector<torch::Tensor> model_params_;
  std::vector<Bucket> buckets_;
  std::vector<torch::Tensor> average_slots_;  // per model parameter; undefined outside the buckets
};

}  // namespace vdm
