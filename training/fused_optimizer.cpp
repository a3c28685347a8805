// FusedOptimizer (see fused_optimizer.h).
#include "training/fused_optimizer.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>

// Flat storage. For every gradient bucket of the reducer, three buffers of the same length hold
// the bucket's parameters, AdamW's first and second moments, and a fourth the EMA's averages;
// element i of each belongs to the same parameter element as element i of the gradient bucket
// (the reducer gives each gradient its parameter's dense strides, and so do the views here).
// The tensors the rest of the program sees, the module's parameters, the AdamW state that
// Optimizer::save writes and the EMA's registered buffers, are re-pointed into those buffers
// with set_data, so checkpoints, evaluation and sampling read them as before. Loading a
// checkpoint replaces their storage (Module::load and Optimizer::load assign fresh tensors), so
// every update first checks, by pointer, that each tensor still lives in its slot and copies it
// back in when it does not (link()). The updates are then the per-parameter LibTorch code with
// the loop over parameters taken out: the same elementwise operations with the same scalars, so
// from the same gradients the results equal torch::optim::AdamW and EmaImpl::update bit for bit.
// (The global norm sums per bucket rather than per parameter, which may move its last bit; a
// pending 1/world folded into the moments is exact for power-of-two worlds only.)

namespace vdm {
namespace {

// Optimizer::state() is keyed by the parameter's TensorImpl: as text in LibTorch 1.13, as the
// pointer from 2.0 on.
template <class Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// The slot in `flat` at the offset and with the strides of `gradient`, a view into the bucket
// buffer that `flat` mirrors (the reducer gives it its parameter's dense strides).
torch::Tensor slot(const torch::Tensor& flat, const torch::Tensor& gradient, const torch::Tensor& bucket) {
  const int64_t offset = gradient.storage_offset() - bucket.storage_offset();
  return torch::empty({0}, flat.options())
      .set_(flat.storage(), flat.storage_offset() + offset, gradient.sizes(), gradient.strides());
}

bool in_slot(const torch::Tensor& t, const torch::Tensor& s) {
  return t.defined() && t.data_ptr() == s.data_ptr() && t.strides() == s.strides() && t.sizes() == s.sizes() &&
         t.scalar_type() == s.scalar_type();
}

// Makes `t` live in `s`, keeping its value (a tensor replaced by a load is copied in).
void adopt(const torch::Tensor& t, const torch::Tensor& s) {
  if (in_slot(t, s)) return;
  s.copy_(t);
  t.set_data(s);
}

}  // namespace

torch::optim::AdamWParamState* FusedOptimizer::state_of(torch::optim::AdamW& adamw, const torch::Tensor& p) {
  auto& state = adamw.state();
  const auto it = state.find(state_key(state, p));
  return it == state.end() ? nullptr : static_cast<torch::optim::AdamWParamState*>(it->second.get());
}

bool FusedOptimizer::supported(const GradientReducer& reducer, const torch::optim::AdamW& adamw) {
  if (reducer.options().find_unused) return false;  // AdamW skips a parameter without gradient
  if (adamw.param_groups().size() != 1) return false;
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(adamw.param_groups()[0].options());
  if (o.amsgrad()) return false;
  std::unordered_map<const void*, bool> held;
  for (const auto& p : adamw.param_groups()[0].params()) held[p.unsafeGetTensorImpl()] = true;
  for (const auto& b : reducer.flat_buckets())
    for (const auto& member : b.members)
      if (!held.count(member.first.unsafeGetTensorImpl())) return false;
  return true;
}

FusedOptimizer::FusedOptimizer(const GradientReducer& reducer, torch::optim::AdamW& adamw, Ema ema,
                               torch::nn::Module& model)
    : adamw_(adamw), ema_(std::move(ema)), model_params_(model.parameters()) {
  if (!supported(reducer, adamw))
    throw std::invalid_argument("FusedOptimizer: needs one AdamW parameter group without amsgrad holding every "
                                "bucketed parameter, and a reducer without find_unused");
  torch::NoGradGuard no_grad;
  std::unordered_map<const void*, size_t> model_index;
  for (size_t j = 0; j < model_params_.size(); ++j) model_index[model_params_[j].unsafeGetTensorImpl()] = j;
  average_slots_.resize(model_params_.size());
  for (const auto& fb : reducer.flat_buckets()) {
    Bucket b;
    b.grad = fb.gradients;
    b.param = torch::empty_like(b.grad);
    b.exp_avg = torch::zeros_like(b.grad);
    b.exp_avg_sq = torch::zeros_like(b.grad);
    b.average = torch::zeros_like(b.grad);
    for (const auto& [p, gradient] : fb.members) {
      b.members.push_back({p, slot(b.param, gradient, b.grad), slot(b.exp_avg, gradient, b.grad),
                           slot(b.exp_avg_sq, gradient, b.grad)});
      const auto it = model_index.find(p.unsafeGetTensorImpl());
      if (it == model_index.end()) continue;
      average_slots_[it->second] = slot(b.average, gradient, b.grad);
      // Model parameters next to each other in the bucket make one run of the EMA update.
      const int64_t begin = gradient.storage_offset() - b.grad.storage_offset(), end = begin + p.numel();
      if (!b.ema_runs.empty() && b.ema_runs.back().second == begin)
        b.ema_runs.back().second = end;
      else
        b.ema_runs.emplace_back(begin, end);
    }
    buckets_.push_back(std::move(b));
  }
  if (ema_->averages().size() != model_params_.size())
    throw std::invalid_argument("FusedOptimizer: the EMA does not average this model");
  link();
}

void FusedOptimizer::link() {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_)
    for (auto& m : b.members) {
      adopt(m.param, m.param_slot);
      auto* s = state_of(adamw_, m.param);
      if (!s) continue;  // created by step()
      if (!in_slot(s->exp_avg(), m.exp_avg_slot)) s->exp_avg(m.exp_avg_slot.copy_(s->exp_avg()));
      if (!in_slot(s->exp_avg_sq(), m.exp_avg_sq_slot)) s->exp_avg_sq(m.exp_avg_sq_slot.copy_(s->exp_avg_sq()));
    }
  const auto& averages = ema_->averages();
  for (size_t j = 0; j < model_params_.size(); ++j)
    if (average_slots_[j].defined()) adopt(averages[j], average_slots_[j]);
}

double FusedOptimizer::grad_norm() {
  // Squares summed in float64, a chunk at a time: a float64 copy of a whole bucket would cost
  // twice the gradients' memory for a moment.
  constexpr int64_t kChunk = 1 << 20;
  std::vector<torch::Tensor> squares;
  for (const auto& b : buckets_)
    for (int64_t at = 0; at < b.grad.numel(); at += kChunk) {
      const auto g = b.grad.narrow(0, at, std::min(kChunk, b.grad.numel() - at)).to(torch::kFloat64);
      squares.push_back(g.dot(g).reshape({1}));
    }
  if (squares.empty()) return 0;
  return grad_scale_ * std::sqrt(torch::cat(squares).sum().to(torch::kCPU).item<double>());
}

void FusedOptimizer::scale_gradients(double factor) {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) b.grad.mul_(factor * grad_scale_);
  grad_scale_ = 1;
}

void FusedOptimizer::step() {
  link();
  torch::NoGradGuard no_grad;
  auto& state = adamw_.state();
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(adamw_.param_groups()[0].options());
  // One step count for all: torch keeps one per parameter, equal here since every bucketed
  // parameter is updated at every step (a parameter without state starts from zero).
  int64_t step = -1;
  for (auto& b : buckets_)
    for (const auto& m : b.members) {
      const auto* st = state_of(adamw_, m.param);
      const int64_t s = st ? st->step() : 0;
      if (step >= 0 && s != step) {
        // Uneven history (parameters added to a resumed run): torch's own loop.
        if (grad_scale_ != 1) scale_gradients(1.0);
        adamw_.step();
        return;
      }
      step = s;
    }
  step += 1;
  for (auto& b : buckets_)
    for (auto& m : b.members) {
      auto& entry = state[state_key(state, m.param)];
      if (!entry) {  // torch starts a parameter's moments from zero
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->exp_avg(m.exp_avg_slot.zero_());
        fresh->exp_avg_sq(m.exp_avg_sq_slot.zero_());
        entry = std::move(fresh);
      }
      static_cast<torch::optim::AdamWParamState&>(*entry).step(step);
    }
  const double lr = o.lr(), beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  const double bias_correction1 = 1 - std::pow(beta1, double(step));
  const double bias_correction2 = 1 - std::pow(beta2, double(step));
  // A pending gradient scale s rides in the moments' coefficients: m += (1-beta1) s g and
  // v += (1-beta2) s^2 g^2 (the same values up to rounding, without a pass to rescale g).
  const double s = grad_scale_;
  grad_scale_ = 1;
  for (auto& b : buckets_) {
    if (o.weight_decay() != 0) b.param.mul_(1 - lr * o.weight_decay());
    b.exp_avg.mul_(beta1).add_(b.grad, (1 - beta1) * s);
    b.exp_avg_sq.mul_(beta2).addcmul_(b.grad, b.grad, (1 - beta2) * s * s);
    const auto denom = (b.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(o.eps());
    b.param.addcdiv_(b.exp_avg, denom, -lr / bias_correction1);
  }
}

void FusedOptimizer::update_ema(int64_t step) {
  link();
  torch::NoGradGuard no_grad;
  const double d = ema_->decay_at(step);
  for (auto& b : buckets_)
    for (const auto& [begin, end] : b.ema_runs)
      b.average.narrow(0, begin, end - begin).mul_(d).add_(b.param.narrow(0, begin, end - begin), 1.0 - d);
  // Model parameters outside the buckets (frozen ones) keep the per-tensor update.
  const auto& averages = ema_->averages();
  for (size_t j = 0; j < model_params_.size(); ++j)
    if (!average_slots_[j].defined()) averages[j].mul_(d).add_(model_params_[j].detach().to(averages[j].dtype()), 1.0 - d);
}

}  // namespace vdm
