// GradientReducer: data-parallel gradient averaging in the style of DDP. Parameters are checked
// and broadcast from rank 0 at construction; gradients live in flat buckets that are all-reduced
// (averaged) while backward still runs; no_sync() accumulates locally for gradient accumulation.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "distributed/communicator.h"

namespace torch::autograd {
struct Node;
}

namespace vdm {

struct GradientReducerOptions {
  double bucket_mb = 25;       // MiB per bucket after the first
  double first_bucket_mb = 1;  // small, so the first all-reduce starts early in backward
  bool overlap = true;         // false: hooks do nothing, finish() reduces every bucket
  bool find_unused = false;    // true: parameters without a gradient in a step count as zero
  // false: finish() leaves the sum over ranks, skipping a pass over every gradient; whoever
  // reads them multiplies by gradient_scale(), best inside a pass it makes anyway (the fused
  // optimiser folds it into clipping or AdamW's moment updates).
  bool average = true;
};

class GradientReducer {
 public:
  using NamedParameters = std::vector<std::pair<std::string, torch::Tensor>>;

  // params: the model's named parameters in registration order (module->named_parameters()).
  // Collective: every rank must construct its reducer at the same point. Throws
  // std::runtime_error on every rank when the ranks' parameter lists (names, shapes, dtypes) or
  // options (bucket sizes, overlap, find_unused) differ; otherwise copies
  // rank 0's parameter values into every rank's parameters. From the first backward on, each
  // parameter's .grad is a view into its bucket (zero_grad() in place or set to none both work).
  GradientReducer(NamedParameters params, CommunicatorPtr comm, GradientReducerOptions options = {});
  // Convenience for module->named_parameters() (an OrderedDict).
  template <typename Dict>
  static NamedParameters named(const Dict& dict) {
    NamedParameters out;
    for (const auto& item : dict) out.emplace_back(item.key(), item.value());
    return out;
  }
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call after every backward() that is not inside no_sync(), on every rank. Waits for the
  // buckets in flight, reduces those that were not launched during backward, and leaves every
  // parameter's .grad holding the average over ranks of the locally accumulated gradients.
  // Throws on every rank when find_unused is false and some rank produced no gradient for a
  // parameter. Does nothing inside no_sync().
  void finish();

  // Zeroes every reduced parameter's gradient in place, keeping it a view into its bucket; a
  // .grad that is undefined stays so. Use it instead of Optimizer::zero_grad(), which zeroes in
  // place on LibTorch 1.13 but sets gradients to none from 2.0 on: then every step would copy
  // each gradient into its bucket, and with find_unused a parameter unused in a step would get
  // no gradient (AdamW skips it) instead of a zero one (AdamW still applies its momentum), so a
  // cluster on 2.x would train differently from CI on 1.13.
  void zero_grad();

  // While the guard lives, backward passes only accumulate into .grad locally; the next
  // backward outside it (then finish()) averages the accumulated sum.
  class NoSyncGuard {
   public:
    NoSyncGuard(NoSyncGuard&& other) noexcept : reducer_(other.reducer_), previous_(other.previous_) {
      other.reducer_ = nullptr;
    }
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(NoSyncGuard&&) = delete;
    ~NoSyncGuard();

   private:
    friend class GradientReducer;
    explicit NoSyncGuard(GradientReducer* reducer);
    GradientReducer* reducer_;
    bool previous_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(this); }
  bool in_no_sync() const { return no_sync_; }

  int64_t bucket_count() const { return int64_t(buckets_.size()); }
  // Gradient bytes per bucket, in launch order (the last buffer has a few status elements more).
  std::vector<int64_t> bucket_sizes_bytes() const;
  // Parameter names per bucket, in launch order (for logs and tests).
  std::vector<std::vector<std::string>> bucket_parameter_names() const;
  // The buckets as flat gradient buffers, for code that works on all gradients at once (the
  // fused optimiser, clipping): per bucket, its gradients (the buffer without the status tail)
  // and each member parameter with its gradient, a view into that buffer. A member's gradient
  // has the parameter's own strides when those are dense (channels-last weights included), so
  // the buffer's elements follow the parameters' memory element for element. The buffers never
  // move.
  struct FlatBucket {
    torch::Tensor gradients;
    std::vector<std::pair<torch::Tensor, torch::Tensor>> members;  // parameter, its gradient view
  };
  std::vector<FlatBucket> flat_buckets() const;
  const GradientReducerOptions& options() const { return options_; }
  // What finish()'s gradients must be multiplied by to be the average: 1, or 1/world when
  // options().average is false.
  double gradient_scale() const { return options_.average ? 1.0 : 1.0 / double(comm_->world()); }

 private:
  struct Hook;
  struct Param {
    std::string name;
    torch::Tensor tensor;
    torch::Tensor view;      // this parameter's slice of its bucket buffer, shaped like it
    int64_t bucket = -1;     // -1: requires no gradient (not reduced)
    std::shared_ptr<torch::autograd::Node> accumulator;  // kept alive: it carries our hook
    uintptr_t hook_key = 0;
    bool ready = false;       // its gradient is in the bucket for this step
    bool used = false;        // a gradient arrived since the last finish() (any backward)
    bool grad_was_undefined = false;  // at finish(): no local gradient at all
  };
  struct Bucket {
    torch::Tensor buffer;  // flat, contiguous; parameters' grads are views into it
    int64_t grad_numel = 0;  // the gradients; the last bucket has the step status after them
    std::vector<size_t> members;
    size_t pending = 0;    // members not yet ready this step
    WorkPtr work;          // set once launched
  };

  void check_same_parameters();
  void broadcast_parameters();
  void build_buckets();
  void on_gradient(size_t index);      // from the accumulator's post-hook
  bool absorb(size_t index);           // local gradient -> bucket view, .grad = view
  void mark_ready(size_t index);
  void launch_in_order();
  void write_status(Bucket& last);
  void poll();
  void wait_all();
  void reset_step();
  [[noreturn]] void fail_unused(const torch::Tensor& used_counts);

  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  CommunicatorPtr comm_;
  GradientReducerOptions options_;
  int64_t status_slots_ = 0;  // elements of step status at the end of the last bucket
  size_t next_launch_ = 0;  // buckets [0, next_launch_) have been launched this step
  size_t next_poll_ = 0;    // oldest launched bucket not known to be finished
  bool no_sync_ = false;
};

}  // namespace vdm
