// Noise schedules gamma(t) = -log SNR(t) on t in [0, 1], monotone increasing: fixed linear,
// truncated (and shifted) cosine, and VDM's learned monotone network with renormalised endpoints.
// All schedule maths runs in float64; callers cast alpha/sigma to the data dtype afterwards.
#pragma once

#include <torch/types.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

namespace vdm {

struct ScheduleOptions {
  std::string name = "linear";  // linear | cosine | learned
  double gamma_min = -13.3;     // gamma(0) (highest SNR); cosine: before the shift
  double gamma_max = 5.0;       // gamma(1) (lowest SNR); cosine: before the shift
  // cosine: added to log SNR after truncation, 2 log(64/d) in Kingma & Gao (2023), so the
  // shifted schedule runs from gamma_min - shift to gamma_max - shift.
  double shift = 0.0;
  int64_t hidden = 1024;        // learned: width of the monotone network
  bool learn_endpoints = true;  // learned: gamma_min / gamma_max are parameters (VLB only)
  // learned: train the interior to minimise the variance of the continuous-time diffusion
  // loss (VDM, Kingma et al. 2021, App. I.2) instead of the loss itself, which the
  // interior cannot change in continuous time.
  bool minimise_variance = false;
};

// gamma and its time derivative at the same t, plus (learned schedules only) the normalised
// interior g(t) in [0, 1] and dg/dt, which the variance-minimising objective hooks into.
struct ScheduleValues {
  torch::Tensor gamma;
  torch::Tensor dgamma_dt;
  torch::Tensor interior;
  torch::Tensor interior_rate;
};

class NoiseScheduleImpl : public torch::nn::Module {
 public:
  explicit NoiseScheduleImpl(ScheduleOptions options) : options_(std::move(options)) {}
  // t: float64 tensor of any shape with values in [0, 1].
  virtual ScheduleValues values(const torch::Tensor& t) = 0;
  torch::Tensor gamma(const torch::Tensor& t) { return values(t).gamma; }
  // Current endpoints (the learned schedule's may move during training).
  virtual double gamma_at_0() = 0;
  virtual double gamma_at_1() = 0;
  // Inverse of gamma on [0, 1] by bisection (exact to float64 after 64 halvings); values
  // outside [gamma(0), gamma(1)] map to NaN.
  torch::Tensor t_of_gamma(const torch::Tensor& gamma);
  virtual bool learned() const { return false; }
  const ScheduleOptions& options() const { return options_; }

 protected:
  ScheduleOptions options_;
};
using NoiseSchedule = std::shared_ptr<NoiseScheduleImpl>;

// gamma(t) = gamma_min + (gamma_max - gamma_min) t  (VDM's fixed schedule).
class LinearScheduleImpl : public NoiseScheduleImpl {
 public:
  explicit LinearScheduleImpl(ScheduleOptions options);
  ScheduleValues values(const torch::Tensor& t) override;
  double gamma_at_0() override { return options_.gamma_min; }
  double gamma_at_1() override { return options_.gamma_max; }
};

// lambda(t) = -2 log tan(u) + shift with the angle u = u_min + t (u_max - u_min) chosen so that
// the unshifted curve runs from -gamma_min to -gamma_max (Nichol & Dhariwal 2021); the shift
// comes after the truncation, as in Kingma & Gao 2023, so it moves the endpoints too.
class CosineScheduleImpl : public NoiseScheduleImpl {
 public:
  explicit CosineScheduleImpl(ScheduleOptions options);
  ScheduleValues values(const torch::Tensor& t) override;
  double gamma_at_0() override { return options_.gamma_min - options_.shift; }
  double gamma_at_1() override { return options_.gamma_max - options_.shift; }
  double u_min() const { return u_min_; }
  double u_max() const { return u_max_; }

 private:
  double u_min_, u_max_;
};

// VDM's monotone network: g(t) = l1(t) + l3(phi(l2(2t - 1))) / width with non-negative weights
// (|W|) and phi(h) = 2 sigmoid(h) - 1, renormalised so that
// gamma(t) = gamma_0 + (gamma_1 - gamma_0) (g(t) - g(0)) / (g(1) - g(0)).
// dgamma/dt comes from autograd with create_graph, so losses that use it train the network.
class LearnedScheduleImpl : public NoiseScheduleImpl {
 public:
  explicit LearnedScheduleImpl(ScheduleOptions options);
  ScheduleValues values(const torch::Tensor& t) override;
  double gamma_at_0() override;
  double gamma_at_1() override;
  bool learned() const override { return true; }

 private:
  torch::Tensor net(const torch::Tensor& t);  // t: [N, 1] float64 -> [N, 1]
  torch::Tensor gamma_0_, gamma_1_;           // endpoints (parameters or buffers)
  torch::Tensor w1_, b1_, w2_, b2_, w3_;
};

// The names make_schedule takes (the config offers exactly these).
const std::vector<std::string>& schedule_names();
NoiseSchedule make_schedule(const ScheduleOptions& options);

}  // namespace vdm
