// Linear, truncated-cosine and learned noise schedules (see noise_schedule.h), in float64.
#include "objectives/noise_schedule.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace vdm {
namespace {

torch::Tensor as_f64(const torch::Tensor& t) { return t.to(torch::kFloat64); }

void check_endpoints(const ScheduleOptions& o) {
  if (!(o.gamma_min < o.gamma_max))
    throw std::invalid_argument("schedule: gamma_min must be below gamma_max");
}

}  // namespace

torch::Tensor NoiseScheduleImpl::t_of_gamma(const torch::Tensor& gamma) {
  torch::NoGradGuard no_grad;
  auto g = as_f64(gamma);
  auto lo = torch::zeros_like(g), hi = torch::ones_like(g);
  // Bisection is generic (any monotone schedule, learned included) and 64 halvings reach
  // float64 resolution on [0, 1].
  for (int i = 0; i < 64; ++i) {
    auto mid = 0.5 * (lo + hi);
    auto below = this->gamma(mid) < g;
    lo = torch::where(below, mid, lo);
    hi = torch::where(below, hi, mid);
  }
  auto t = 0.5 * (lo + hi);
  auto outside = (g < gamma_at_0() - 1e-12) | (g > gamma_at_1() + 1e-12);
  return torch::where(outside, torch::full_like(t, std::nan("")), t);
}

// ---- linear ---------------------------------------------------------------------------

LinearScheduleImpl::LinearScheduleImpl(ScheduleOptions options)
    : NoiseScheduleImpl(std::move(options)) {
  check_endpoints(options_);
}

ScheduleValues LinearScheduleImpl::values(const torch::Tensor& t) {
  auto t64 = as_f64(t);
  const double span = options_.gamma_max - options_.gamma_min;
  return {options_.gamma_min + span * t64, torch::full_like(t64, span), {}, {}};
}

// ---- truncated cosine -----------------------------------------------------------------

CosineScheduleImpl::CosineScheduleImpl(ScheduleOptions options)
    : NoiseScheduleImpl(std::move(options)) {
  check_endpoints(options_);
  // Truncate, then shift (Kingma & Gao 2023, App. C; Hoogeboom et al. 2023): the unshifted
  // cosine lambda = -2 log tan(u) is cut to [-gamma_max, -gamma_min], which fixes the angle range
  // (u = atan(exp(-lambda / 2))), and the shift then moves the whole curve, endpoints included.
  u_min_ = std::atan(std::exp(options_.gamma_min / 2.0));
  u_max_ = std::atan(std::exp(options_.gamma_max / 2.0));
}

ScheduleValues CosineScheduleImpl::values(const torch::Tensor& t) {
  auto u = u_min_ + as_f64(t) * (u_max_ - u_min_);
  auto gamma = 2.0 * torch::log(torch::tan(u)) - options_.shift;
  // d/du [2 log tan u] = 2 / (sin u cos u) = 4 / sin 2u
  auto dgamma = 4.0 * (u_max_ - u_min_) / torch::sin(2.0 * u);
  return {gamma, dgamma, {}, {}};
}

// ---- learned --------------------------------------------------------------------------

LearnedScheduleImpl::LearnedScheduleImpl(ScheduleOptions options)
    : NoiseScheduleImpl(std::move(options)) {
  check_endpoints(options_);
  if (options_.hidden < 1) throw std::invalid_argument("schedule: hidden must be >= 1");
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto g0 = torch::full({}, options_.gamma_min, f64);
  auto g1 = torch::full({}, options_.gamma_max, f64);
  if (options_.learn_endpoints) {
    gamma_0_ = register_parameter("gamma_0", g0);
    gamma_1_ = register_parameter("gamma_1", g1);
  } else {
    gamma_0_ = register_buffer("gamma_0", g0);
    gamma_1_ = register_buffer("gamma_1", g1);
  }
  // VDM's initialisation (Kingma et al. 2021, NoiseSchedule_NNet): l1 is the linear schedule
  // (weight gamma_max - gamma_min, bias gamma_min), l2 and l3 start from N(0, 1) weights and l2's
  // bias from zero, so the network starts as the linear schedule plus a small monotone bend. A
  // fixed seed keeps construction reproducible without touching the global generator.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0x5eed);
  const int64_t h = options_.hidden;
  w1_ = register_parameter("l1_weight", torch::full({1, 1}, options_.gamma_max - options_.gamma_min, f64));
  b1_ = register_parameter("l1_bias", torch::full({1}, options_.gamma_min, f64));
  w2_ = register_parameter("l2_weight", at::normal(0.0, 1.0, {h, 1}, gen, f64));
  b2_ = register_parameter("l2_bias", torch::zeros({h}, f64));
  w3_ = register_parameter("l3_weight", at::normal(0.0, 1.0, {1, h}, gen, f64));
}

torch::Tensor LearnedScheduleImpl::net(const torch::Tensor& t) {
  auto linear = torch::nn::functional::linear(t, w1_.abs(), b1_);
  auto hidden = torch::nn::functional::linear(2.0 * t - 1.0, w2_.abs(), b2_);
  hidden = 2.0 * torch::sigmoid(hidden) - 1.0;
  auto nonlinear = torch::nn::functional::linear(hidden, w3_.abs()) / double(options_.hidden);
  return linear + nonlinear;
}

ScheduleValues LearnedScheduleImpl::values(const torch::Tensor& t) {
  // dgamma/dt needs autograd even under a caller's NoGradGuard (inspect, sampling).
  torch::AutoGradMode enable_grad(true);
  auto shape = t.sizes().vec();
  auto tt = as_f64(t).detach().reshape({-1, 1}).requires_grad_(true);
  auto ends = torch::tensor({0.0, 1.0}, torch::kFloat64).reshape({2, 1}).to(tt.device());
  auto g_ends = net(ends);
  auto g = net(tt);
  auto range = g_ends[1] - g_ends[0];
  auto interior = (g - g_ends[0]) / range;
  auto rate = torch::autograd::grad({interior.sum()}, {tt}, {}, /*retain_graph=*/true,
                                    /*create_graph=*/true)[0];
  // gamma must be computed from the very tensors returned, so that hooks a caller registers
  // on them (variance minimisation) sit on the path of every gradient.
  interior = interior.reshape(shape);
  rate = rate.reshape(shape);
  auto span = gamma_1_ - gamma_0_;
  return {gamma_0_ + span * interior, span * rate, interior, rate};
}

double LearnedScheduleImpl::gamma_at_0() { return gamma_0_.item<double>(); }
double LearnedScheduleImpl::gamma_at_1() { return gamma_1_.item<double>(); }

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names{"linear", "cosine", "learned"};
  return names;
}

NoiseSchedule make_schedule(const ScheduleOptions& options) {
  if (options.name == "linear") return std::make_shared<LinearScheduleImpl>(options);
  if (options.name == "cosine") return std::make_shared<CosineScheduleImpl>(options);
  if (options.name == "learned") return std::make_shared<LearnedScheduleImpl>(options);
  throw std::invalid_argument("unknown schedule '" + options.name +
                              "' (choose linear, cosine or learned)");
}

}  // namespace vdm
