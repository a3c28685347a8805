// Proposals p(lambda): how the noise level of each training example is drawn. Every proposal maps
// uniforms u in [0, 1) (iid, antithetic or stratified, optionally across ranks) through its inverse
// CDF: uniform t pushed through the schedule, EDM's log-normal, the rectified-flow path's logistic
// density, and an adaptive histogram of the running weighted loss per lambda bin.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "objectives/noise_schedule.h"

namespace vdm {

struct ProposalOptions {
  std::string name = "schedule";  // schedule | edm_lognormal | adaptive | rectified_flow
  std::string time_sampling = "antithetic";  // the uniforms: iid | antithetic | stratified
  double p_mean = -1.2;                    // edm_lognormal: ln sigma ~ N(p_mean, p_std^2)
  double p_std = 1.2;
  int64_t bins = 64;            // adaptive: number of lambda bins
  // Support of edm_lognormal, adaptive and rectified_flow (truncated and renormalised to it).
  // NaN: the schedule's own range [-gamma(1), -gamma(0)], the levels the samplers visit; a
  // range reaching outside it is refused (the loss would weight levels no sampler uses).
  double lambda_min = std::numeric_limits<double>::quiet_NaN();
  double lambda_max = std::numeric_limits<double>::quiet_NaN();
  double ema = 0.99;            // adaptive: decay of the per-bin running statistic
  double uniform_mix = 0.1;     // adaptive: share of a uniform proposal kept for support
  // adaptive: mean_abs: p proportional to E|f| per bin (f = w ||eps_hat - eps||^2, the integrand);
  // rms: p proportional to sqrt(E f^2), the minimiser of Var[f/p] (see proposal.cpp).
  std::string adaptive_target = "mean_abs";
};

// Where this batch sits in the global batch: ranks that pass the same shared_offset (e.g.
// drawn from a generator seeded identically on every rank) tile [0, 1) jointly.
struct ProposalContext {
  int64_t rank = 0;
  int64_t world = 1;
  double shared_offset = -1.0;  // in [0, 1); negative: draw the offset from the generator
  // Given uniforms (float64 [B] in [0, 1), CPU) replace time_sampling: evaluation lays its own
  // lattice over a whole split.
  torch::Tensor uniforms;
  // Where the returned tensors live (the data's device). Draws are always made on the CPU,
  // from a CPU generator, so they do not depend on the device.
  torch::Device device = torch::kCPU;
};

struct LambdaSample {
  torch::Tensor t;        // float64 [B]; defined for schedule proposals only
  torch::Tensor lambda;   // float64 [B]
  torch::Tensor density;  // float64 [B], p(lambda) (for discrete time: the continuous density)
  torch::Tensor dgamma_dt;      // defined when t is (schedule proposals)
  ScheduleValues schedule;      // schedule values at t (schedule proposals)
};

class Proposal {
 public:
  explicit Proposal(std::string time_sampling) : time_sampling_(std::move(time_sampling)) {}
  virtual ~Proposal() = default;
  // Draws the batch's uniforms (ctx.uniforms, or time_sampling from gen) and maps them through
  // the inverse CDF.
  LambdaSample sample(int64_t batch, at::Generator& gen, const ProposalContext& ctx);
  // p(lambda) at given lambda (float64); 0 outside the support.
  virtual torch::Tensor density(const torch::Tensor& lambda) = 0;
  virtual std::string name() const = 0;
  // Adaptive proposals learn from the per-example integrand w(lambda) ||eps_hat - eps||^2.
  virtual void observe(const torch::Tensor& lambda, const torch::Tensor& integrand) {}
  // Pending statistics since the last commit ([2, bins]: sum, count; float64), for the
  // distributed layer to all-reduce, and commit() to fold the reduced sums in.
  virtual torch::Tensor pending_histogram() const { return {}; }
  virtual void commit(const torch::Tensor& reduced_histogram) {}
  // What a checkpoint must hold to continue the proposal exactly (empty for stateless ones).
  virtual std::vector<torch::Tensor> state() const { return {}; }
  virtual void load_state(const std::vector<torch::Tensor>& state) {}
  // The support [lambda_min, lambda_max].
  virtual std::pair<double, double> range() const = 0;

 protected:
  // u: float64 [B] in [0, 1) on the CPU; the sample's tensors go to ctx.device.
  virtual LambdaSample from_uniforms(const torch::Tensor& u, const ProposalContext& ctx) = 0;

 private:
  std::string time_sampling_;
};
using ProposalPtr = std::shared_ptr<Proposal>;

// The t grid: t_b for a batch, by the chosen sampling (float64 [B] in [0, 1)).
torch::Tensor sample_times(int64_t batch, const std::string& mode, at::Generator& gen,
                           const ProposalContext& ctx);
// Snap continuous t in (0, 1] to the discrete grid t = i/T, i in 1..T (i = ceil(t T)).
torch::Tensor discretise_times(const torch::Tensor& t, int64_t timesteps);

// The names make_proposal and ProposalOptions::time_sampling / adaptive_target take.
const std::vector<std::string>& proposal_names();
const std::vector<std::string>& time_sampling_names();
const std::vector<std::string>& adaptive_target_names();

// The schedule's lambda range [-gamma(1), -gamma(0)].
std::pair<double, double> schedule_lambda_range(NoiseScheduleImpl& schedule);
// The support a proposal of these options has under the schedule (NaN bounds: the schedule's);
// throws std::invalid_argument naming proposal.lambda_min / lambda_max when it is empty or
// reaches outside the schedule's range.
std::pair<double, double> proposal_range(const ProposalOptions& options, NoiseScheduleImpl& schedule);

// schedule: the noise schedule (for `schedule`, and the default range of the others).
ProposalPtr make_proposal(const ProposalOptions& options, NoiseSchedule schedule,
                          int64_t timesteps = 0);

}  // namespace vdm
