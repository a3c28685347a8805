// One optimiser step (see train_step.h).
#include "training/train_step.h"

#include <torch/torch.h>

#include <cmath>
#include <optional>

#include "distributed/watchdog.h"
#include "models/embedding.h"
#include "objectives/diffusion_terms.h"
#include "training/autocast.h"
#include "training/elapsed_time.h"
#include "training/fused_optimizer.h"

namespace vdm {
namespace {

// Adds the seconds since the previous lap (or since construction) to phases[name].
class PhaseClock {
 public:
  explicit PhaseClock(std::map<std::string, double>& phases) : phases_(phases) {}
  void lap(const char* name) {
    const auto now = SteadyClock::now();
    phases_[name] += seconds_between(last_, now);
    last_ = now;
  }

 private:
  std::map<std::string, double>& phases_;
  SteadyClock::time_point last_ = SteadyClock::now();
};

// A uniform number in [0, 1) that every rank computes alike for (seed, step, micro-batch):
// the shared offset that lets the proposal stratify t across the global batch without state.
double shared_uniform(uint64_t seed, int64_t step, int64_t micro) {
  const uint64_t z = derive_seed(seed, uint64_t(step) * 1024 + uint64_t(micro), "shared-offset");
  return double(z >> 11) * 0x1.0p-53;
}

}  // namespace

TrainStep::TrainStep(TrainStepOptions options, TrainStepParts parts) : o_(options), p_(parts) {
  if (o_.grad_accum < 1) throw std::invalid_argument("train.grad_accum must be at least 1");
  // bf16 autocast covers the network's forward and nothing else (see autocast.h): the loss
  // maths, backward, the optimiser and evaluation run in the parameters' dtype.
  denoiser_ = [model = p_.model, bf16 = o_.bf16, nhwc = o_.channels_last](
                  const torch::Tensor& in, const torch::Tensor& c_noise, const torch::Tensor& labels) {
    AutocastScope autocast(in.device().type(), bf16);
    return model->forward(nhwc ? in.contiguous(torch::MemoryFormat::ChannelsLast) : in, c_noise, labels);
  };
  for (const auto& group : p_.optimizer.param_groups())
    for (const auto& t : group.params()) params_.push_back(t);
  auto* adamw = dynamic_cast<torch::optim::AdamW*>(&p_.optimizer);
  if (o_.fused_optimizer && adamw && FusedOptimizer::supported(p_.reducer, *adamw))
    fused_ = std::make_unique<FusedOptimizer>(p_.reducer, *adamw, p_.ema, *p_.model);
}

TrainStep::~TrainStep() = default;

void TrainStep::forward_backward(int64_t step, int64_t micro, const Batch& batch, StepResult& r) {
  const auto device = params_.empty() ? c10::Device(c10::kCPU) : params_.front().device();
  auto x = encode_pixels(batch.images).to(device);
  torch::Tensor labels;
  if (o_.class_conditional)
    labels = drop_labels(batch.labels, o_.num_classes, o_.label_dropout, p_.rng.levels).to(device);
  ProposalContext ctx;
  ctx.rank = o_.rank;
  ctx.world = o_.world;
  ctx.shared_offset = shared_uniform(o_.seed, step, micro);
  PhaseClock clock(r.phase_s);
  LossOutput out = p_.objective->forward(denoiser_, x, labels, {p_.rng.levels, p_.rng.noise}, ctx);
  clock.lap("forward");
  {
    // All but the last micro-batch only accumulate; the last backward reduces the sum. The
    // reducer starts its all-reduces inside backward (a blocking one without overlap, and
    // NCCL's first call connects to the peers), so backward is watched too.
    std::optional<GradientReducer::NoSyncGuard> no_sync;
    if (micro + 1 < o_.grad_accum) no_sync.emplace(p_.reducer.no_sync());
    auto guard = p_.watchdog.watch("backward (gradient all-reduce)", step);
    (out.loss / double(o_.grad_accum)).backward();
  }
  clock.lap("backward");
  r.micro_batches += 1;
  r.loss += out.loss.item<double>();
  for (const auto& [name, value] : out.terms) r.terms[name] += value.item<double>();
  r.likelihood = out.likelihood;
  if (out.likelihood) r.bpd += out.per_sample.mean().item<double>() * out.bpd_per_nat;
  r.sampler = batch.state_after;
  clock.lap("metrics");
}

void TrainStep::reduce_gradients(int64_t step) {
  {
    // finish() waits for NCCL on the host (Communicator::synchronize), where a failed collective
    // becomes an error that names it rather than a hang in a later copy to the host.
    auto guard = p_.watchdog.watch("gradient all-reduce", step);
    p_.reducer.finish();
  }
  if (auto hist = p_.objective->proposal().pending_histogram(); hist.defined()) {
    auto guard = p_.watchdog.watch("all_reduce(proposal histogram)", step);
    p_.host_comm.all_reduce(hist, ReduceOp::Sum);
    p_.objective->proposal().commit(hist);
  }
}

void TrainStep::scale_gradients(double factor) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params_)
    if (p.grad().defined()) p.mutable_grad().mul_(factor);
}

// One device-to-host copy for all parameters, summed in parameter order on the host.
double TrainStep::global_grad_norm() const {
  if (fused_) return fused_->grad_norm();
  std::vector<torch::Tensor> squares;
  for (const auto& p : params_)
    if (p.grad().defined()) squares.push_back(p.grad().to(torch::kFloat64).pow(2).sum());
  double sq = 0;
  if (!squares.empty()) {
    const auto host = torch::stack(squares).to(torch::kCPU).contiguous();
    for (int64_t i = 0; i < host.numel(); ++i) sq += host.data_ptr<double>()[i];
  }
  return std::sqrt(sq);
}

StepResult TrainStep::run(int64_t step, double lr, const std::function<Batch()>& next_batch) {
  for (auto& group : p_.optimizer.param_groups()) group.options().set_lr(lr);
  p_.reducer.zero_grad();  // not optimizer.zero_grad(): see GradientReducer::zero_grad
  StepResult r;
  for (const char* phase : {"forward", "backward", "metrics", "reduce", "clip", "optimizer", "ema"})
    r.phase_s[phase] = 0;  // the same keys on every rank and step: the window all-reduces them
  for (int64_t micro = 0; micro < o_.grad_accum; ++micro) {
    const auto wait0 = SteadyClock::now();
    const Batch batch = next_batch();
    r.data_wait_s += seconds_between(wait0, SteadyClock::now());
    forward_backward(step, micro, batch, r);
  }
  PhaseClock clock(r.phase_s);
  reduce_gradients(step);
  // The reducer may leave the sum over ranks (GradientReducerOptions::average): the fused
  // optimiser folds the 1/world into a pass it makes anyway, the plain path pays for one.
  if (const double scale = p_.reducer.gradient_scale(); fused_)
    fused_->set_gradient_scale(scale);
  else if (scale != 1)
    scale_gradients(scale);
  clock.lap("reduce");
  // Gradients are identical on every rank after the reduction, so every rank takes the same
  // decision here without another collective.
  r.grad_norm = global_grad_norm();
  r.finite = std::isfinite(r.grad_norm);
  if (r.finite && o_.grad_clip > 0 && r.grad_norm > o_.grad_clip) {
    torch::NoGradGuard no_grad;
    const double scale = o_.grad_clip / (r.grad_norm + 1e-6);
    if (fused_)
      fused_->scale_gradients(scale);
    else
      scale_gradients(scale);
  }
  clock.lap("clip");
  if (!r.finite) return r;
  if (fused_)
    fused_->step();
  else
    p_.optimizer.step();
  clock.lap("optimizer");
  if (fused_)
    fused_->update_ema(step + 1);
  else
    p_.ema->update(*p_.model, step + 1);
  clock.lap("ema");
  return r;
}

bool count_nonfinite(TrainCounters& counters, bool finite, int64_t limit) {
  if (finite) {
    counters.nonfinite_in_row = 0;
    return false;
  }
  counters.skipped_steps += 1;
  counters.nonfinite_in_row += 1;
  return counters.nonfinite_in_row >= limit;
}

}  // namespace vdm
