// The Frechet distance between two Gaussians N(mu1, S1) and N(mu2, S2), the number FID reports:
// ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1^1/2 S2 S1^1/2), in float64 with symmetric
// eigendecompositions only (no complex matrix square root).
#pragma once

#include <torch/types.h>

namespace vdm {

// mu: [d]; sigma: [d, d] symmetric positive semi-definite (any floating dtype; computed in
// float64 on the CPU). Throws std::invalid_argument naming the shapes when they do not match.
double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& sigma1,
                        const torch::Tensor& mu2, const torch::Tensor& sigma2);

}  // namespace vdm
