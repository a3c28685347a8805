// Proposals p(lambda): how the noise level of each training example is drawn. Uniform t pushed
// through a schedule (iid, antithetic or stratified, optionally stratified across ranks),
// EDM's log-normal, and an adaptive histogram of the running weighted loss per lambda bin.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "objectives/noise_schedule.h"

namespace vdm {

struct ProposalOptions {
  std::string name = "schedule";           // schedule | edm_lognormal | adaptive
  std::string time_sampling = "antithetic";  // schedule: iid | antithetic | stratified
  double p_mean = -1.2;                    // edm_lognormal: ln sigma ~ N(p_mean, p_std^2)
  double p_std = 1.2;
  int64_t bins = 64;            // adaptive: number of lambda bins
  double lambda_min = -15.0;    // adaptive: range of the histogram
  double lambda_max = 15.0;
  double ema = 0.99;            // adaptive: decay of the per-bin running loss
  double uniform_mix = 0.1;     // adaptive: share of a uniform proposal kept for support
};

// Where this batch sits in the global batch: ranks that pass the same shared_offset (e.g.
// drawn from a generator seeded identically on every rank) tile [0, 1) jointly.
struct ProposalContext {
  int64_t rank = 0;
  int64_t world = 1;
  double shared_offset = -1.0;  // in [0, 1); negative: draw the offset from the generator
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
  virtual ~Proposal() = default;
  virtual LambdaSample sample(int64_t batch, at::Generator& gen, const ProposalContext& ctx) = 0;
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
};
using ProposalPtr = std::shared_ptr<Proposal>;

// The t grid: t_b for a batch, by the chosen sampling (float64 [B] in [0, 1)).
torch::Tensor sample_times(int64_t batch, const std::string& mode, at::Generator& gen,
                           const ProposalContext& ctx);
// Snap continuous t in (0, 1] to the discrete grid t = i/T, i in 1..T (i = ceil(t T)).
torch::Tensor discretise_times(const torch::Tensor& t, int64_t timesteps);

// schedule: the noise schedule (for `schedule`) or for the adaptive range defaults.
// The names make_proposal and ProposalOptions::time_sampling take.
const std::vector<std::string>& proposal_names();
const std::vector<std::string>& time_sampling_names();
ProposalPtr make_proposal(const ProposalOptions& options, NoiseSchedule schedule,
                          int64_t timesteps = 0);

}  // namespace vdm
