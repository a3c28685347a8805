// Weighting functions w(lambda) of the weighted diffusion loss (Kingma & Gao 2023, Table 1),
// lambda = log SNR. Each says whether it is monotone (non-increasing in lambda), which is
// the condition under which the weighted loss is an ELBO of noise-augmented data.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace vdm {

struct WeightingOptions {
  std::string name = "elbo";  // elbo|sigmoid|edm|edm_monotonic|iddpm|v_mse|min_snr|p2|flow_matching
  double bias = 0.0;          // sigmoid: w = sigmoid(bias - lambda)
  double k = 5.0;             // min_snr: w = sech(lambda/2) min(1, k e^-lambda)
  double p2_k = 1.0;          // p2: w = sech(lambda/2) / (p2_k + SNR)^gamma
  double gamma = 1.0;         // p2: exponent
  double p_mean = -1.2;       // edm: ln sigma ~ N(p_mean, p_std^2), i.e. lambda ~ N(-2 p_mean, 4 p_std^2)
  double p_std = 1.2;
  double sigma_data = 0.5;    // edm
};

class Weighting {
 public:
  virtual ~Weighting() = default;
  // lambda: float64 tensor; returns w(lambda), float64, same shape.
  virtual torch::Tensor operator()(const torch::Tensor& lambda) const = 0;
  virtual bool monotone() const = 0;
  virtual std::string name() const = 0;
};
using WeightingPtr = std::shared_ptr<const Weighting>;

// The names make_weighting takes.
const std::vector<std::string>& weighting_names();
WeightingPtr make_weighting(const WeightingOptions& options);

// The EDM weighting's maximiser lambda* (where EDM-monotonic starts to follow EDM).
double edm_weighting_peak(const WeightingOptions& options);

}  // namespace vdm
