// Proposals p(lambda) (see proposal.h): schedule (uniform t), EDM log-normal, rectified flow,
// adaptive; each maps uniforms through its inverse CDF on the schedule's lambda range.
#include "objectives/proposal.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace vdm {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

double draw_offset(at::Generator& gen, const ProposalContext& ctx) {
  if (ctx.shared_offset >= 0.0) return ctx.shared_offset;
  return at::rand({1}, gen, kF64).item<double>();
}

// Uniform t pushed through the schedule: p(lambda) = 1 / |dlambda/dt| = 1 / gamma'(t).
class ScheduleProposal : public Proposal {
 public:
  ScheduleProposal(const ProposalOptions& o, NoiseSchedule schedule, int64_t timesteps)
      : Proposal(o.time_sampling), schedule_(std::move(schedule)), timesteps_(timesteps) {}

  torch::Tensor density(const torch::Tensor& lambda) override {
    // A learned schedule evaluates on its parameters' device; callers may ask from the CPU.
    const auto params = schedule_->parameters();
    const auto device = params.empty() ? lambda.device() : params.front().device();
    auto t = schedule_->t_of_gamma(-lambda.to(device, torch::kFloat64));
    auto inside = ~torch::isnan(t);
    auto safe_t = torch::where(inside, t, torch::zeros_like(t));
    auto p = 1.0 / schedule_->values(safe_t).dgamma_dt.detach();
    return torch::where(inside, p, torch::zeros_like(p)).to(lambda.device());
  }
  std::string name() const override { return "schedule"; }
  std::pair<double, double> range() const override { return schedule_lambda_range(*schedule_); }

 protected:
  LambdaSample from_uniforms(const torch::Tensor& u, const ProposalContext& ctx) override {
    auto t = timesteps_ > 0 ? discretise_times(u, timesteps_) : u;
    LambdaSample s;
    s.t = t.to(ctx.device);  // the schedule (learned: its parameters) lives there
    s.schedule = schedule_->values(s.t);
    s.lambda = -s.schedule.gamma;
    s.dgamma_dt = s.schedule.dgamma_dt;
    s.density = 1.0 / s.dgamma_dt.detach();
    return s;
  }

 private:
  NoiseSchedule schedule_;
  int64_t timesteps_;
};

// A density on [lo, hi] given by a CDF F on the real line, truncated and renormalised:
// lambda = F^-1(F(lo) + u (F(hi) - F(lo))), p = F'(lambda) / (F(hi) - F(lo)).
class TruncatedProposal : public Proposal {
 public:
  TruncatedProposal(const ProposalOptions& o, std::pair<double, double> range)
      : Proposal(o.time_sampling), lo_(range.first), hi_(range.second) {}

  torch::Tensor density(const torch::Tensor& lambda) override {
    auto l = lambda.to(torch::kFloat64);
    auto inside = (l >= lo_) & (l <= hi_);
    auto p = pdf(l) / mass();
    return torch::where(inside, p, torch::zeros_like(p));
  }
  std::pair<double, double> range() const override { return {lo_, hi_}; }
  double mass() const { return cdf(hi_) - cdf(lo_); }

 protected:
  virtual double cdf(double lambda) const = 0;
  virtual torch::Tensor inverse_cdf(const torch::Tensor& v) const = 0;
  virtual torch::Tensor pdf(const torch::Tensor& lambda) const = 0;

  LambdaSample from_uniforms(const torch::Tensor& u, const ProposalContext& ctx) override {
    auto l = inverse_cdf(cdf(lo_) + u * mass()).clamp(lo_, hi_);
    LambdaSample s;
    s.lambda = l.to(ctx.device);
    s.density = density(l).to(ctx.device);
    return s;
  }

 private:
  double lo_, hi_;
};

// EDM: ln sigma ~ N(p_mean, p_std^2) with lambda = -2 ln sigma, i.e. lambda ~ N(-2 p_mean, (2 p_std)^2).
class LogNormalProposal : public TruncatedProposal {
 public:
  LogNormalProposal(const ProposalOptions& o, std::pair<double, double> range)
      : TruncatedProposal(o, range), mean_(-2.0 * o.p_mean), std_(2.0 * o.p_std) {}
  std::string name() const override { return "edm_lognormal"; }

 protected:
  double cdf(double l) const override { return 0.5 * std::erfc(-(l - mean_) / (std_ * M_SQRT2)); }
  torch::Tensor inverse_cdf(const torch::Tensor& v) const override {
    return mean_ + std_ * M_SQRT2 * torch::erfinv(2.0 * v - 1.0);
  }
  torch::Tensor pdf(const torch::Tensor& l) const override {
    auto z = (l - mean_) / std_;
    return torch::exp(-0.5 * z * z) / (std_ * std::sqrt(2.0 * M_PI));
  }

 private:
  double mean_, std_;
};

// Rectified flow (Liu et al. 2022; Lipman et al. 2022's OT path): z_t = (1 - t) x + t eps with t
// uniform, so lambda = 2 log((1 - t) / t) is logistic with scale 2: F = sigmoid(lambda / 2) and
// p(lambda) = sech^2(lambda / 4) / 8 (Kingma & Gao 2023, App. D.3).
class RectifiedFlowProposal : public TruncatedProposal {
 public:
  RectifiedFlowProposal(const ProposalOptions& o, std::pair<double, double> range)
      : TruncatedProposal(o, range) {}
  std::string name() const override { return "rectified_flow"; }

 protected:
  double cdf(double l) const override { return 1.0 / (1.0 + std::exp(-0.5 * l)); }
  torch::Tensor inverse_cdf(const torch::Tensor& v) const override { return 2.0 * torch::logit(v); }
  torch::Tensor pdf(const torch::Tensor& l) const override {
    return torch::square(1.0 / torch::cosh(0.25 * l)) / 8.0;
  }
};

// A histogram over lambda bins learned from the integrand f = w(lambda) ||eps_hat - eps||^2 it
// is shown; a uniform share keeps every bin reachable, so p(lambda) never vanishes where w does
// not. The variance of the estimator f/p is E[f^2/p^2] - (E f/p)^2 under p, and the first term,
// integral of E[f^2 | lambda] / p(lambda), is minimised subject to integral p = 1 by p
// proportional to sqrt(E[f^2 | lambda]) (target rms). p proportional to E|f| (mean_abs) is that
// optimum only when f is nearly deterministic given lambda; it stays the default, the statistic
// earlier runs' checkpointed histograms hold.
class AdaptiveProposal : public Proposal {
 public:
  AdaptiveProposal(const ProposalOptions& o, std::pair<double, double> range)
      : Proposal(o.time_sampling), o_(o), lo_(range.first), hi_(range.second), rms_(o.adaptive_target == "rms") {
    if (o.bins < 1) throw std::invalid_argument("objective.proposal.bins: must be >= 1");
    if (o.adaptive_target != "rms" && o.adaptive_target != "mean_abs")
      throw std::invalid_argument("objective.proposal.adaptive_target: choose mean_abs or rms");
    width_ = (hi_ - lo_) / double(o.bins);
    mean_ = torch::zeros({o.bins}, kF64);
    seen_ = torch::zeros({o.bins}, torch::kBool);
    pending_ = torch::zeros({2, o.bins}, kF64);
    update_probs();
  }

  torch::Tensor density(const torch::Tensor& lambda) override {
    return density_on_cpu(lambda.to(torch::kCPU)).to(lambda.device());
  }

  void observe(const torch::Tensor& lambda, const torch::Tensor& integrand) override {
    auto l = lambda.detach().to(torch::kCPU, torch::kFloat64).reshape({-1});
    auto f = integrand.detach().to(torch::kCPU, torch::kFloat64).reshape({-1});
    auto v = rms_ ? f.square() : f.abs();
    auto idx = torch::floor((l - lo_) / width_).to(torch::kLong).clamp(0, o_.bins - 1);
    pending_[0].index_add_(0, idx, v);
    pending_[1].index_add_(0, idx, torch::ones_like(v));
  }

  torch::Tensor pending_histogram() const override { return pending_.clone(); }

  void commit(const torch::Tensor& reduced) override {
    auto h = reduced.to(torch::kCPU, torch::kFloat64);
    auto count = h[1];
    auto hit = count > 0;
    auto batch_mean = h[0] / count.clamp_min(1.0);
    // First observation of a bin replaces the zero prior instead of being decayed into it.
    auto blended = torch::where(seen_, o_.ema * mean_ + (1.0 - o_.ema) * batch_mean, batch_mean);
    mean_ = torch::where(hit, blended, mean_);
    seen_ = seen_ | hit;
    pending_.zero_();
    update_probs();
  }
  std::string name() const override { return "adaptive"; }
  std::pair<double, double> range() const override { return {lo_, hi_}; }
  std::vector<torch::Tensor> state() const override { return {mean_.clone(), seen_.clone()}; }
  void load_state(const std::vector<torch::Tensor>& state) override {
    if (state.size() != 2 || state[0].numel() != o_.bins)
      throw std::runtime_error("adaptive proposal: checkpointed histogram has a different number of bins");
    mean_ = state[0].to(kF64).clone();
    seen_ = state[1].to(torch::kBool).clone();
    pending_.zero_();
    update_probs();
  }

 protected:
  // Inverse CDF of the piecewise-constant density: the bin whose cumulative mass passes u, then
  // linearly within it. Bins of zero mass are never chosen (searchsorted skips flat steps).
  LambdaSample from_uniforms(const torch::Tensor& u, const ProposalContext& ctx) override {
    auto bins = torch::searchsorted(cdf_, u, /*out_int32=*/false, /*right=*/true).clamp(0, o_.bins - 1);
    auto p = probs_.index_select(0, bins);
    auto before = cdf_.index_select(0, bins) - p;
    auto within = ((u - before) / p.clamp_min(1e-300)).clamp(0.0, 1.0 - 1e-12);
    LambdaSample s;
    s.lambda = (lo_ + (bins.to(torch::kFloat64) + within) * width_).to(ctx.device);
    s.density = (p / width_).to(ctx.device);
    return s;
  }

 private:
  torch::Tensor density_on_cpu(const torch::Tensor& lambda) const {
    auto l = lambda.to(torch::kFloat64);
    auto idx = torch::floor((l - lo_) / width_).to(torch::kLong);
    // The top edge belongs to the last bin (lambda = hi is inside the support).
    idx = torch::where(l == hi_, torch::full_like(idx, o_.bins - 1), idx);
    auto inside = (idx >= 0) & (idx < o_.bins);
    auto p = probs_.index_select(0, idx.clamp(0, o_.bins - 1).reshape({-1})).reshape(l.sizes()) / width_;
    return torch::where(inside, p, torch::zeros_like(p));
  }

  void update_probs() {
    auto uniform = torch::full({o_.bins}, 1.0 / double(o_.bins), kF64);
    auto stat = rms_ ? mean_.sqrt() : mean_;
    // Bins not seen yet get the mean of the seen ones, so they are neither starved nor favoured.
    auto fill = seen_.any().item<bool>() ? stat.masked_select(seen_).mean() : torch::ones({}, kF64);
    auto m = torch::where(seen_, stat, fill.expand_as(stat));
    const double total = m.sum().item<double>();
    auto learned = total > 0 ? m / total : uniform;
    probs_ = o_.uniform_mix * uniform + (1.0 - o_.uniform_mix) * learned;
    cdf_ = probs_.cumsum(0);
    cdf_[o_.bins - 1] = 1.0;  // rounding must not leave u near 1 past the last bin
  }

  ProposalOptions o_;
  double lo_, hi_, width_;
  bool rms_;
  torch::Tensor mean_, seen_, pending_, probs_, cdf_;
};

}  // namespace

LambdaSample Proposal::sample(int64_t batch, at::Generator& gen, const ProposalContext& ctx) {
  if (!ctx.uniforms.defined()) return from_uniforms(sample_times(batch, time_sampling_, gen, ctx), ctx);
  if (ctx.uniforms.numel() != batch)
    throw std::invalid_argument("proposal: " + std::to_string(ctx.uniforms.numel()) + " uniforms for a batch of " +
                                std::to_string(batch));
  return from_uniforms(ctx.uniforms.to(torch::kCPU, torch::kFloat64).reshape({batch}), ctx);
}

std::pair<double, double> schedule_lambda_range(NoiseScheduleImpl& schedule) {
  return {-schedule.gamma_at_1(), -schedule.gamma_at_0()};
}

std::pair<double, double> proposal_range(const ProposalOptions& o, NoiseScheduleImpl& schedule) {
  const auto [s_lo, s_hi] = schedule_lambda_range(schedule);
  const double lo = std::isnan(o.lambda_min) ? s_lo : o.lambda_min;
  const double hi = std::isnan(o.lambda_max) ? s_hi : o.lambda_max;
  auto text = [](double a, double b) {
    std::ostringstream s;
    s << "[" << a << ", " << b << "]";
    return s.str();
  };
  if (!(lo < hi))
    throw std::invalid_argument("objective.proposal.lambda_min: the range " + text(lo, hi) +
                                " is empty; need lambda_min < lambda_max (or leave both unset for the "
                                "schedule's range " + text(s_lo, s_hi) + ")");
  const double tol = 1e-9 * (1.0 + std::max(std::abs(s_lo), std::abs(s_hi)));
  if (lo < s_lo - tol || hi > s_hi + tol)
    throw std::invalid_argument(std::string("objective.proposal.") + (lo < s_lo - tol ? "lambda_min" : "lambda_max") +
                                ": the range " + text(lo, hi) +
                                " reaches outside the schedule's lambda range " + text(s_lo, s_hi) +
                                " (lambda = -gamma): the loss would weight noise levels that no sampler "
                                "visits; leave lambda_min/lambda_max unset for the schedule's range, or "
                                "narrow them");
  return {lo, hi};
}

torch::Tensor sample_times(int64_t batch, const std::string& mode, at::Generator& gen,
                           const ProposalContext& ctx) {
  const double world_batch = double(batch * ctx.world);
  auto b = torch::arange(batch, kF64);
  if (mode == "iid") return at::rand({batch}, gen, kF64);
  if (mode == "antithetic") {
    // VDM's low-discrepancy sampler: one offset u0, then a lattice of spacing 1/(B world);
    // rank r takes the points b world + r, so ranks sharing u0 cover [0, 1) jointly.
    const double u0 = draw_offset(gen, ctx);
    return torch::fmod(u0 + (b * double(ctx.world) + double(ctx.rank)) / world_batch, 1.0);
  }
  if (mode == "stratified") {
    // One independent uniform inside each of the B world strata this rank owns.
    auto u = at::rand({batch}, gen, kF64);
    return (b * double(ctx.world) + double(ctx.rank) + u) / world_batch;
  }
  throw std::invalid_argument("unknown time_sampling '" + mode +
                              "' (choose iid, antithetic or stratified)");
}

torch::Tensor discretise_times(const torch::Tensor& t, int64_t timesteps) {
  const double T = double(timesteps);
  // The small tolerance keeps lattice points such as 0.3 (stored as 0.30000000000000004
  // after arithmetic) on their own grid value instead of the next one.
  auto i = torch::ceil(t * T - 1e-9).clamp(1.0, T);
  return i / T;
}

const std::vector<std::string>& proposal_names() {
  static const std::vector<std::string> names{"schedule", "edm_lognormal", "adaptive", "rectified_flow"};
  return names;
}

const std::vector<std::string>& adaptive_target_names() {
  static const std::vector<std::string> names{"mean_abs", "rms"};
  return names;
}

const std::vector<std::string>& time_sampling_names() {
  static const std::vector<std::string> names{"iid", "antithetic", "stratified"};
  return names;
}

ProposalPtr make_proposal(const ProposalOptions& options, NoiseSchedule schedule,
                          int64_t timesteps) {
  if (options.name == "schedule")
    return std::make_shared<ScheduleProposal>(options, std::move(schedule), timesteps);
  if (timesteps > 0)
    throw std::invalid_argument("proposal '" + options.name +
                                "' draws lambda directly; discrete time (timesteps > 0) needs "
                                "proposal 'schedule'");
  // A range in the far tail of an analytic density leaves no mass to renormalise by.
  auto checked = [&](std::shared_ptr<TruncatedProposal> p) -> ProposalPtr {
    if (!(p->mass() > 1e-12))
      throw std::invalid_argument("objective.proposal.lambda_min: the range holds almost none of the " + options.name +
                                  " density's mass (" + std::to_string(p->mass()) + "); widen it or move it");
    return p;
  };
  if (options.name == "edm_lognormal")
    return checked(std::make_shared<LogNormalProposal>(options, proposal_range(options, *schedule)));
  if (options.name == "adaptive")
    return std::make_shared<AdaptiveProposal>(options, proposal_range(options, *schedule));
  if (options.name == "rectified_flow")
    return checked(std::make_shared<RectifiedFlowProposal>(options, proposal_range(options, *schedule)));
  throw std::invalid_argument("unknown proposal '" + options.name +
                              "' (choose schedule, edm_lognormal, adaptive or rectified_flow)");
}

}  // namespace vdm
