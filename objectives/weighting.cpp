// The weighting functions of Kingma & Gao (2023), Table 1 and App. D, as functions of
// lambda = log SNR, float64. Constants are unnormalised, as in the paper.
#include "objectives/weighting.h"

#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <stdexcept>

namespace vdm {
namespace {

using Fn = std::function<torch::Tensor(const torch::Tensor&)>;

class FunctionWeighting : public Weighting {
 public:
  FunctionWeighting(std::string name, bool monotone, Fn fn)
      : name_(std::move(name)), monotone_(monotone), fn_(std::move(fn)) {}
  torch::Tensor operator()(const torch::Tensor& lambda) const override {
    return fn_(lambda.to(torch::kFloat64));
  }
  bool monotone() const override { return monotone_; }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  bool monotone_;
  Fn fn_;
};

torch::Tensor sech_half(const torch::Tensor& l) { return 1.0 / torch::cosh(0.5 * l); }

// EDM (Karras et al. 2022) in lambda: its log-normal training density of sigma becomes
// N(lambda; -2 p_mean, (2 p_std)^2), times its loss weight (sigma^2 + sd^2)/(sigma sd)^2
// re-expressed on eps (x 1/SNR), i.e. (e^-lambda + sd^2) / sd^2.
torch::Tensor edm_weight(const torch::Tensor& l, const WeightingOptions& o) {
  const double mean = -2.0 * o.p_mean, std = 2.0 * o.p_std, sd2 = o.sigma_data * o.sigma_data;
  auto density = torch::exp(-0.5 * torch::square((l - mean) / std)) / (std * std::sqrt(2 * M_PI));
  return density * (torch::exp(-l) + sd2) / sd2;
}

double edm_weight(double l, const WeightingOptions& o) {
  return edm_weight(torch::tensor(l, torch::kFloat64), o).item<double>();
}

}  // namespace

double edm_weighting_peak(const WeightingOptions& o) {
  // d/dl log w = -(l - mean)/std^2 - e^-l / (e^-l + sd^2) is strictly decreasing in l, so its
  // single root is the maximiser; bisection on a bracket wide enough for any sane option.
  const double mean = -2.0 * o.p_mean, std = 2.0 * o.p_std, sd2 = o.sigma_data * o.sigma_data;
  auto slope = [&](double l) { return -(l - mean) / (std * std) - 1.0 / (1.0 + sd2 * std::exp(l)); };
  double lo = -100.0, hi = 100.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (slope(mid) > 0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

const std::vector<std::string>& weighting_names() {
  static const std::vector<std::string> names{"elbo", "sigmoid", "edm", "edm_monotonic", "iddpm",
                                              "v_mse", "min_snr", "p2", "flow_matching"};
  return names;
}

WeightingPtr make_weighting(const WeightingOptions& o) {
  const std::string& n = o.name;
  if (n == "elbo")
    return std::make_shared<FunctionWeighting>(n, true, [](const torch::Tensor& l) {
      return torch::ones_like(l);
    });
  if (n == "sigmoid")
    return std::make_shared<FunctionWeighting>(n, true, [b = o.bias](const torch::Tensor& l) {
      return torch::sigmoid(b - l);
    });
  if (n == "edm")
    return std::make_shared<FunctionWeighting>(n, false, [o](const torch::Tensor& l) {
      return edm_weight(l, o);
    });
  if (n == "edm_monotonic") {
    const double peak = edm_weighting_peak(o);
    const double top = edm_weight(peak, o);
    return std::make_shared<FunctionWeighting>(n, true, [o, peak, top](const torch::Tensor& l) {
      return torch::where(l <= peak, torch::full_like(l, top), edm_weight(l, o));
    });
  }
  // The cosine schedule's lambda density is sech(lambda/2) / (2 pi): eps-MSE under it (IDDPM)
  // has this weighting.
  if (n == "iddpm")
    return std::make_shared<FunctionWeighting>(n, false, sech_half);
  // v-prediction MSE under the cosine schedule and flow matching with the OT path both reduce
  // to w = e^{-lambda/2} (Kingma & Gao 2023, App. D.2-D.3); they differ in the proposal only.
  if (n == "v_mse" || n == "flow_matching")
    return std::make_shared<FunctionWeighting>(n, true, [](const torch::Tensor& l) {
      return torch::exp(-0.5 * l);
    });
  // Min-SNR-k (Hang et al. 2023) for eps-prediction under the cosine schedule.
  if (n == "min_snr")
    return std::make_shared<FunctionWeighting>(n, false, [k = o.k](const torch::Tensor& l) {
      return sech_half(l) * torch::clamp_max(k * torch::exp(-l), 1.0);
    });
  // P2 (Choi et al. 2022): the eps loss scaled by 1 / (k + SNR)^gamma, under the cosine schedule.
  if (n == "p2")
    return std::make_shared<FunctionWeighting>(n, false, [k = o.p2_k, g = o.gamma](const torch::Tensor& l) {
      return sech_half(l) * torch::pow(k + torch::exp(l), -g);
    });
  throw std::invalid_argument("unknown weighting '" + n +
                              "' (choose elbo, sigmoid, edm, edm_monotonic, iddpm, v_mse, "
                              "min_snr, p2 or flow_matching)");
}

}  // namespace vdm
