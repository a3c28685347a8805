// Proposals p(lambda) (see proposal.h): schedule (uniform t), EDM log-normal, adaptive.
#include "objectives/proposal.h"

#include <torch/torch.h>

#include <cmath>
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
      : options_(o), schedule_(std::move(schedule)), timesteps_(timesteps) {}

  LambdaSample sample(int64_t batch, at::Generator& gen, const ProposalContext& ctx) override {
    auto t = sample_times(batch, options_.time_sampling, gen, ctx);
    if (timesteps_ > 0) t = discretise_times(t, timesteps_);
    LambdaSample s;
    s.t = t.to(ctx.device);  // the schedule (learned: its parameters) lives there
    s.schedule = schedule_->values(s.t);
    s.lambda = -s.schedule.gamma;
    s.dgamma_dt = s.schedule.dgamma_dt;
    s.density = 1.0 / s.dgamma_dt.detach();
    return s;
  }

  torch::Tensor density(const torch::Tensor& lambda) override {
    auto t = schedule_->t_of_gamma(-lambda.to(torch::kFloat64));
    auto inside = ~torch::isnan(t);
    auto safe_t = torch::where(inside, t, torch::zeros_like(t));
    auto p = 1.0 / schedule_->values(safe_t).dgamma_dt.detach();
    return torch::where(inside, p, torch::zeros_like(p));
  }
  std::string name() const override { return "schedule"; }

 private:
  ProposalOptions options_;
  NoiseSchedule schedule_;
  int64_t timesteps_;
};

// EDM: ln sigma ~ N(p_mean, p_std^2) with lambda = -2 ln sigma.
class LogNormalProposal : public Proposal {
 public:
  explicit LogNormalProposal(const ProposalOptions& o)
      : mean_(-2.0 * o.p_mean), std_(2.0 * o.p_std) {}
  LambdaSample sample(int64_t batch, at::Generator& gen, const ProposalContext& ctx) override {
    LambdaSample s;
    s.lambda = (mean_ + std_ * at::randn({batch}, gen, kF64)).to(ctx.device);
    s.density = density(s.lambda);
    return s;
  }
  torch::Tensor density(const torch::Tensor& lambda) override {
    auto z = (lambda.to(torch::kFloat64) - mean_) / std_;
    return torch::exp(-0.5 * z * z) / (std_ * std::sqrt(2.0 * M_PI));
  }
  std::string name() const override { return "edm_lognormal"; }

 private:
  double mean_, std_;
};

// Importance sampling of lambda bins in proportion to the running mean |integrand| per bin,
// which approaches the variance-minimising proposal for the weighted loss; a uniform share
// keeps every bin reachable, so p(lambda) never vanishes where w does not.
class AdaptiveProposal : public Proposal {
 public:
  explicit AdaptiveProposal(const ProposalOptions& o) : o_(o) {
    if (o.bins < 1 || !(o.lambda_min < o.lambda_max))
      throw std::invalid_argument("adaptive proposal: need bins >= 1 and lambda_min < lambda_max");
    width_ = (o.lambda_max - o.lambda_min) / double(o.bins);
    mean_ = torch::zeros({o.bins}, kF64);
    seen_ = torch::zeros({o.bins}, torch::kBool);
    pending_ = torch::zeros({2, o.bins}, kF64);
    update_probs();
  }

  // The histogram stays on the CPU: lambda comes in from, and goes out to, the data's device.
  LambdaSample sample(int64_t batch, at::Generator& gen, const ProposalContext& ctx) override {
    auto bins = at::multinomial(probs_, batch, /*replacement=*/true, gen);
    auto within = at::rand({batch}, gen, kF64);
    LambdaSample s;
    s.lambda = (o_.lambda_min + (bins.to(torch::kFloat64) + within) * width_).to(ctx.device);
    s.density = (probs_.index_select(0, bins) / width_).to(ctx.device);
    return s;
  }

  torch::Tensor density(const torch::Tensor& lambda) override {
    return density_on_cpu(lambda.to(torch::kCPU)).to(lambda.device());
  }

  void observe(const torch::Tensor& lambda, const torch::Tensor& integrand) override {
    auto l = lambda.detach().to(torch::kCPU, torch::kFloat64).reshape({-1});
    auto v = integrand.detach().to(torch::kCPU, torch::kFloat64).abs().reshape({-1});
    auto idx = torch::floor((l - o_.lambda_min) / width_).to(torch::kLong).clamp(0, o_.bins - 1);
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
  std::vector<torch::Tensor> state() const override { return {mean_.clone(), seen_.clone()}; }
  void load_state(const std::vector<torch::Tensor>& state) override {
    if (state.size() != 2 || state[0].numel() != o_.bins)
      throw std::runtime_error("adaptive proposal: checkpointed histogram has a different number of bins");
    mean_ = state[0].to(kF64).clone();
    seen_ = state[1].to(torch::kBool).clone();
    pending_.zero_();
    update_probs();
  }
  const torch::Tensor& probabilities() const { return probs_; }

 private:
  torch::Tensor density_on_cpu(const torch::Tensor& lambda) const {
    auto l = lambda.to(torch::kFloat64);
    auto idx = torch::floor((l - o_.lambda_min) / width_).to(torch::kLong);
    auto inside = (idx >= 0) & (idx < o_.bins);
    auto p = probs_.index_select(0, idx.clamp(0, o_.bins - 1).reshape({-1})).reshape(l.sizes()) / width_;
    return torch::where(inside, p, torch::zeros_like(p));
  }

  void update_probs() {
    auto uniform = torch::full({o_.bins}, 1.0 / double(o_.bins), kF64);
    // Bins not seen yet get the mean of the seen ones, so they are neither starved nor favoured.
    auto fill = seen_.any().item<bool>() ? mean_.masked_select(seen_).mean() : torch::ones({}, kF64);
    auto m = torch::where(seen_, mean_, fill.expand_as(mean_));
    const double total = m.sum().item<double>();
    auto learned = total > 0 ? m / total : uniform;
    probs_ = o_.uniform_mix * uniform + (1.0 - o_.uniform_mix) * learned;
  }

  ProposalOptions o_;
  double width_;
  torch::Tensor mean_, seen_, pending_, probs_;
};

}  // namespace

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
  static const std::vector<std::string> names{"schedule", "edm_lognormal", "adaptive"};
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
  if (options.name == "edm_lognormal") return std::make_shared<LogNormalProposal>(options);
  if (options.name == "adaptive") return std::make_shared<AdaptiveProposal>(options);
  throw std::invalid_argument("unknown proposal '" + options.name +
                              "' (choose schedule, edm_lognormal or adaptive)");
}

}  // namespace vdm
