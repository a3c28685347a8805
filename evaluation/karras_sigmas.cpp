// Karras et al. (2022) noise levels, in float64.
#include "evaluation/karras_sigmas.h"

#include <cmath>
#include <stdexcept>

namespace vdm {

std::vector<double> karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho) {
  if (n < 2 || !(0 < sigma_min && sigma_min < sigma_max) || rho <= 0)
    throw std::invalid_argument("karras_sigmas: need n >= 2, 0 < sigma_min < sigma_max, rho > 0");
  const double a = std::pow(sigma_max, 1.0 / rho), b = std::pow(sigma_min, 1.0 / rho);
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = std::pow(a + double(i) / double(n - 1) * (b - a), rho);
  return out;
}

}  // namespace vdm
