// What the network predicts (eps, x, v, or EDM's F with preconditioning) and how each output
// converts to eps_hat. Every parameterisation feeds the network c_noise = gamma/8, which is
// EDM's ln(sigma)/4 for the VE noise level sigma = sigma_VP/alpha = exp(gamma/2).
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace vdm {

// EDM (Karras et al. 2022, Table 1) preconditioning at VE noise level sigma.
struct EdmCoefficients {
  double c_skip, c_out, c_in, c_noise, loss_weight;
};
EdmCoefficients edm_coefficients(double sigma, double sigma_data = 0.5);

class Parameterisation {
 public:
  virtual ~Parameterisation() = default;
  virtual std::string name() const = 0;
  // z, alpha, sigma in the data dtype, alpha/sigma broadcastable to z ([B,1,1,1]).
  virtual torch::Tensor network_input(const torch::Tensor& z, const torch::Tensor& alpha,
                                      const torch::Tensor& sigma) const {
    return z;
  }
  virtual torch::Tensor to_eps(const torch::Tensor& output, const torch::Tensor& z,
                               const torch::Tensor& alpha, const torch::Tensor& sigma) const = 0;
  // And back: the network output that would give eps_hat = eps (for tests and samplers).
  virtual torch::Tensor from_eps(const torch::Tensor& eps, const torch::Tensor& z,
                                 const torch::Tensor& alpha, const torch::Tensor& sigma) const = 0;
};
using ParameterisationPtr = std::shared_ptr<const Parameterisation>;

// The names make_parameterisation takes.
const std::vector<std::string>& parameterisation_names();
// name: eps | x | v | F
ParameterisationPtr make_parameterisation(const std::string& name, double sigma_data = 0.5);

// c_noise passed to the network for gamma (float64 in; out in the data dtype).
torch::Tensor noise_conditioning(const torch::Tensor& gamma, c10::ScalarType dtype = c10::kFloat);

}  // namespace vdm
