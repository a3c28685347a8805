// EDM's time discretisation (Karras et al. 2022, eq. 5): N noise levels from sigma_max down to
// sigma_min, evenly spaced in sigma^(1/rho). The Heun sampler steps through these.
#pragma once

#include <cstdint>
#include <vector>

namespace vdm {

std::vector<double> karras_sigmas(int64_t n, double sigma_min = 0.002, double sigma_max = 80.0,
                                  double rho = 7.0);

}  // namespace vdm
