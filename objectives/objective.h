// The training objectives behind one interface: the VLB (continuous or T-step diffusion term,
// prior KL at t=1, discretised-decoder reconstruction at t=0), eps-MSE (L_simple), and the
// weighted loss 0.5 w(lambda)/p(lambda) ||eps_hat - eps||^2 for any weighting and proposal.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "objectives/noise_schedule.h"
#include "objectives/parameterisation.h"
#include "objectives/proposal.h"
#include "objectives/weighting.h"

namespace vdm {

struct ObjectiveOptions {
  std::string name = "vlb";  // vlb | eps_mse | weighted
  int64_t timesteps = 0;     // 0: continuous time; T > 0: T-step discrete diffusion term
  WeightingOptions weighting;
  ProposalOptions proposal;
  std::string parameterisation = "eps";  // eps | x | v | F
};

// The network as the objective sees it: (scaled z_t, c_noise [B] in the data dtype, labels) -> output
// with z's shape. Models adapt to this, so objectives never depend on models/.
using Denoiser = std::function<torch::Tensor(const torch::Tensor& input,
                                             const torch::Tensor& c_noise,
                                             const torch::Tensor& labels)>;

// eps_hat from the network, the one conversion the losses and the samplers share: z, alpha and
// sigma (broadcastable to z) in the latent's dtype; the network runs on the parameterisation's
// input in net_dtype, and its answer (bf16 under autocast, say) goes back to z's dtype before the
// x/v/F conversion, whose 1/alpha and 1/sigma factors would amplify a lower precision's rounding.
// Throws std::runtime_error when the network's output does not have z's shape.
torch::Tensor predict_eps(const Denoiser& denoiser, const Parameterisation& param, const torch::Tensor& z,
                          const torch::Tensor& alpha, const torch::Tensor& sigma, const torch::Tensor& c_noise,
                          const torch::Tensor& labels, c10::ScalarType net_dtype);

struct LossOutput {
  torch::Tensor loss;        // scalar to backpropagate: mean over batch of per_sample / D
  torch::Tensor per_sample;  // [B], nats (vlb) or the objective's units, summed over dims
  // Batch means of each term in nats per example (vlb: diffusion, prior, reconstruction);
  // detached float64 scalars.
  std::map<std::string, torch::Tensor> terms;
  torch::Tensor lambda;      // [B] float64, the noise levels drawn
  // [B] float64 (vlb): the diffusion term alone; continuous time: 0.5 ||eps_hat - eps||^2 / p(lambda)
  torch::Tensor diffusion;
  double bpd_per_nat = 0;    // 1 / (D ln 2); bits/dim of a term = its nats * bpd_per_nat
  // per_sample is a bound on -log p(x) in nats (the VLB), so its bits/dim mean something;
  // weighted losses and eps-MSE are on other scales.
  bool likelihood = false;
};

// The generators a loss draws from. Noise levels come from `levels`, which must be a CPU
// generator: a few float64 numbers per example, drawn alike whatever the device. Diffusion
// noise comes from `noise`, drawn on that generator's device and moved to the data's, so a
// CUDA run draws it on the GPU and a CPU generator still serves data on any device.
struct LossRng {
  at::Generator& levels;
  at::Generator& noise;
};

class ObjectiveImpl : public torch::nn::Module {
 public:
  ObjectiveImpl(ObjectiveOptions options, NoiseSchedule schedule);
  // x: data in (-1, 1) [B, C, H, W] (any float dtype; the loss is computed in it), on any
  // device; the module (its schedule) must be on the same device.
  virtual LossOutput forward(const Denoiser& denoiser, const torch::Tensor& x,
                             const torch::Tensor& labels, LossRng rng,
                             const ProposalContext& ctx = {}) = 0;
  // One CPU generator for both streams.
  LossOutput forward(const Denoiser& denoiser, const torch::Tensor& x, const torch::Tensor& labels,
                     at::Generator& gen, const ProposalContext& ctx = {}) {
    return forward(denoiser, x, labels, LossRng{gen, gen}, ctx);
  }
  // The weighting and proposal as inspect reports them: w(lambda) and p(lambda).
  virtual torch::Tensor weighting(const torch::Tensor& lambda) const = 0;
  virtual bool monotone() const = 0;
  Proposal& proposal() { return *proposal_; }
  // Evaluation swaps in its own proposal (the bits/dim estimator's importance histogram). A proposal
  // other than the schedule's needs continuous time; throws std::invalid_argument otherwise.
  void set_proposal(ProposalPtr proposal);
  NoiseScheduleImpl& schedule() { return *schedule_; }
  NoiseSchedule schedule_ptr() const { return schedule_; }
  const ParameterisationPtr& parameterisation() const { return param_; }
  const ObjectiveOptions& options() const { return options_; }

 protected:
  // For a monotone weighting in continuous time, the terms loss_normalised (the loss / w(lambda_min), nats per dim)
  // and augmented_elbo_bpd (per_sample / w(lambda_min) + the prior KL at lambda_min, bits/dim): see
  // objective.cpp. Nothing for a weighting that is not monotone.
  void add_augmented_elbo(LossOutput& out, const torch::Tensor& x);
  // Diffuse x to z_t at the drawn lambda and return eps, eps_hat (in x's dtype).
  struct Diffused {
    torch::Tensor eps, eps_hat;
  };
  Diffused diffuse_and_denoise(const Denoiser& denoiser, const torch::Tensor& x,
                               const torch::Tensor& labels, const torch::Tensor& gamma,
                               at::Generator& noise_gen);
  // The proposal's draw for a batch of x, its tensors on x's device.
  LambdaSample draw_levels(const torch::Tensor& x, at::Generator& levels_gen,
                           const ProposalContext& ctx);

  ObjectiveOptions options_;
  NoiseSchedule schedule_;
  ProposalPtr proposal_;
  ParameterisationPtr param_;
};
using Objective = std::shared_ptr<ObjectiveImpl>;

// The rules that tie an objective's options together, checked before anything starts (launch/
// runs them while reading a config) and again by each objective's constructor. A problem names
// the key to change, relative to the objective's options ("proposal.name"), and the fix.
struct OptionsProblem {
  std::string key, fix;
  explicit operator bool() const { return !key.empty(); }
};
OptionsProblem check_options(const ObjectiveOptions& options);
// Throws std::invalid_argument("objective.<key>: <fix>") for the first problem.
void validate(const ObjectiveOptions& options);

// The names make_objective takes.
const std::vector<std::string>& objective_names();

// Registry: builds the named objective (vlb | eps_mse | weighted) with its schedule.
Objective make_objective(const ObjectiveOptions& options, NoiseSchedule schedule);
Objective make_vlb(const ObjectiveOptions& options, NoiseSchedule schedule);
Objective make_eps_mse(const ObjectiveOptions& options, NoiseSchedule schedule);
Objective make_weighted_loss(const ObjectiveOptions& options, NoiseSchedule schedule);

// Standard normal noise of the given sizes and options, drawn on gen's device (see LossRng).
torch::Tensor draw_normal(at::IntArrayRef sizes, at::Generator& gen, const torch::TensorOptions& options);

// ||eps_hat - eps||^2 summed over all but the batch dimension, as float64 [B].
torch::Tensor squared_error(const torch::Tensor& eps_hat, const torch::Tensor& eps);

}  // namespace vdm
