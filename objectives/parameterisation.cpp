// eps / x / v / F (EDM-preconditioned) network outputs and their conversion to eps_hat.
// Derivations use z = alpha x + sigma eps with alpha^2 + sigma^2 = 1.
#include "objectives/parameterisation.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace vdm {

EdmCoefficients edm_coefficients(double sigma, double sigma_data) {
  const double s2 = sigma * sigma, d2 = sigma_data * sigma_data;
  return {d2 / (s2 + d2), sigma * sigma_data / std::sqrt(s2 + d2), 1.0 / std::sqrt(s2 + d2),
          std::log(sigma) / 4.0, (s2 + d2) / (s2 * d2)};
}

torch::Tensor noise_conditioning(const torch::Tensor& gamma, c10::ScalarType dtype) {
  return (gamma / 8.0).to(dtype);
}

namespace {

class EpsParam : public Parameterisation {
 public:
  std::string name() const override { return "eps"; }
  torch::Tensor to_eps(const torch::Tensor& out, const torch::Tensor&, const torch::Tensor&,
                       const torch::Tensor&) const override {
    return out;
  }
  torch::Tensor from_eps(const torch::Tensor& eps, const torch::Tensor&, const torch::Tensor&,
                         const torch::Tensor&) const override {
    return eps;
  }
};

class XParam : public Parameterisation {
 public:
  std::string name() const override { return "x"; }
  torch::Tensor to_eps(const torch::Tensor& x_hat, const torch::Tensor& z, const torch::Tensor& a,
                       const torch::Tensor& s) const override {
    return (z - a * x_hat) / s;
  }
  torch::Tensor from_eps(const torch::Tensor& eps, const torch::Tensor& z, const torch::Tensor& a,
                         const torch::Tensor& s) const override {
    return (z - s * eps) / a;
  }
};

// v = alpha eps - sigma x  =>  eps = sigma z + alpha v.
class VParam : public Parameterisation {
 public:
  std::string name() const override { return "v"; }
  torch::Tensor to_eps(const torch::Tensor& v, const torch::Tensor& z, const torch::Tensor& a,
                       const torch::Tensor& s) const override {
    return s * z + a * v;
  }
  torch::Tensor from_eps(const torch::Tensor& eps, const torch::Tensor& z, const torch::Tensor& a,
                         const torch::Tensor& s) const override {
    return (eps - s * z) / a;
  }
};

// EDM works on the VE variable z/alpha = x + (sigma/alpha) eps with D = c_skip z/alpha +
// c_out F(c_in z/alpha); eps_hat follows from x_hat = D.
class FParam : public Parameterisation {
 public:
  explicit FParam(double sigma_data) : d2_(sigma_data * sigma_data), sd_(sigma_data) {}
  std::string name() const override { return "F"; }
  torch::Tensor network_input(const torch::Tensor& z, const torch::Tensor& a,
                              const torch::Tensor& s) const override {
    auto ve = s / a;
    return z / a / torch::sqrt(ve * ve + d2_);
  }
  torch::Tensor to_eps(const torch::Tensor& f, const torch::Tensor& z, const torch::Tensor& a,
                       const torch::Tensor& s) const override {
    auto ve = s / a, n = ve * ve + d2_;
    auto x_hat = (d2_ / n) * (z / a) + (ve * sd_ / torch::sqrt(n)) * f;
    return (z - a * x_hat) / s;
  }
  torch::Tensor from_eps(const torch::Tensor& eps, const torch::Tensor& z, const torch::Tensor& a,
                         const torch::Tensor& s) const override {
    auto ve = s / a, n = ve * ve + d2_;
    auto x_hat = (z - s * eps) / a;
    return (x_hat - (d2_ / n) * (z / a)) / (ve * sd_ / torch::sqrt(n));
  }

 private:
  double d2_, sd_;
};

}  // namespace

const std::vector<std::string>& parameterisation_names() {
  static const std::vector<std::string> names{"eps", "x", "v", "F"};
  return names;
}

ParameterisationPtr make_parameterisation(const std::string& name, double sigma_data) {
  if (name == "eps") return std::make_shared<EpsParam>();
  if (name == "x") return std::make_shared<XParam>();
  if (name == "v") return std::make_shared<VParam>();
  if (name == "F") return std::make_shared<FParam>(sigma_data);
  throw std::invalid_argument("unknown parameterisation '" + name + "' (choose eps, x, v or F)");
}

}  // namespace vdm
