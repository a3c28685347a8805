// EMA of parameters (see ema.h).
#include "models/ema.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace vdm {
namespace {

std::vector<torch::Tensor> parameters_of(torch::nn::Module& model) { return model.parameters(); }

void check_same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size())
    throw std::invalid_argument("EMA: the model has " + std::to_string(b.size()) +
                                " parameters, the average " + std::to_string(a.size()));
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].sizes() != b[i].sizes())
      throw std::invalid_argument("EMA: parameter " + std::to_string(i) + " changed shape");
}

}  // namespace

EmaImpl::EmaImpl(torch::nn::Module& model, EmaOptions options) : options_(std::move(options)) {
  if (!(options_.decay >= 0 && options_.decay < 1))
    throw std::invalid_argument("EMA: decay must be in [0, 1)");
  if (options_.warmup != "power" && options_.warmup != "none")
    throw std::invalid_argument("EMA: warmup must be 'power' or 'none'");
  torch::NoGradGuard no_grad;
  // Buffers are named by position; the model's own names contain dots, which buffer names
  // may not.
  int i = 0;
  for (auto& p : parameters_of(model))
    shadow_.push_back(register_buffer("p" + std::to_string(i++), p.detach().clone()));
}

double EmaImpl::decay_at(int64_t step) const {
  if (step < options_.start_step) return 0.0;
  if (options_.warmup == "none") return options_.decay;
  const double t = double(step - options_.start_step);
  const double d = 1.0 - std::pow(1.0 + t / options_.inv_gamma, -options_.power);
  return std::min(options_.decay, std::max(0.0, d));
}

void EmaImpl::update(torch::nn::Module& model, int64_t step) {
  torch::NoGradGuard no_grad;
  auto params = parameters_of(model);
  check_same(shadow_, params);
  const double d = decay_at(step);
  for (size_t i = 0; i < params.size(); ++i) {
    // shadow <- d shadow + (1 - d) param, in the shadow's dtype
    shadow_[i].mul_(d).add_(params[i].detach().to(shadow_[i].dtype()), 1.0 - d);
  }
}

void EmaImpl::copy_to(torch::nn::Module& model) const {
  torch::NoGradGuard no_grad;
  auto params = parameters_of(model);
  check_same(shadow_, params);
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(shadow_[i]);
}

void EmaImpl::swap_with(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  auto params = parameters_of(model);
  check_same(shadow_, params);
  for (size_t i = 0; i < params.size(); ++i) {
    auto tmp = params[i].detach().clone();
    params[i].copy_(shadow_[i]);
    shadow_[i].copy_(tmp);
  }
}

}  // namespace vdm
