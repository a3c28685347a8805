// Frechet distance of two Gaussians. tr sqrt(S1 S2) equals tr sqrt(S1^1/2 S2 S1^1/2), whose
// argument is symmetric PSD, so two eigh calls give it exactly where scipy's sqrtm on S1 S2
// (non-symmetric, possibly singular) needs complex arithmetic and an epsilon fix-up.
#include "evaluation/frechet_distance.h"

#include <torch/torch.h>

#include <limits>
#include <sstream>
#include <stdexcept>

namespace vdm {
namespace {

std::string shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Eigenvalues of a PSD matrix that are zero in exact arithmetic come out as +-d eps |lambda_max|
// after rounding, and their square roots (~1e-8 each) would add up to a visibly non-zero FID for
// identical singular covariances (fewer samples than dimensions). Below that tolerance (the one
// numpy's matrix_rank uses) they count as zero.
torch::Tensor clamp_null_eigenvalues(const torch::Tensor& eigenvalues) {
  const double largest = eigenvalues.abs().max().item<double>();
  const double tolerance = double(eigenvalues.size(0)) * std::numeric_limits<double>::epsilon() * largest;
  return torch::where(eigenvalues > tolerance, eigenvalues, torch::zeros_like(eigenvalues));
}

}  // namespace

double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& sigma1,
                        const torch::Tensor& mu2, const torch::Tensor& sigma2) {
  const bool shapes_ok = mu1.dim() == 1 && mu1.size(0) > 0 && mu2.dim() == 1 && sigma1.dim() == 2 && sigma2.dim() == 2 &&
                         mu1.size(0) == mu2.size(0) && sigma1.size(0) == mu1.size(0) &&
                         sigma1.size(1) == mu1.size(0) && sigma2.size(0) == mu2.size(0) &&
                         sigma2.size(1) == mu2.size(0);
  if (!shapes_ok)
    throw std::invalid_argument("frechet_distance: the statistics do not match: mu1 " + shape(mu1) +
                                ", sigma1 " + shape(sigma1) + ", mu2 " + shape(mu2) + ", sigma2 " +
                                shape(sigma2) + " (need mu [d] and sigma [d, d] with one d > 0; "
                                "were both computed with the same feature network?)");
  torch::NoGradGuard no_grad;
  auto f64 = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat64); };
  const auto m1 = f64(mu1), m2 = f64(mu2);
  // Symmetrised: files written in float32, or summed in another order, are symmetric only to
  // rounding, and eigh reads one triangle.
  const auto s1 = 0.5 * (f64(sigma1) + f64(sigma1).t());
  const auto s2 = 0.5 * (f64(sigma2) + f64(sigma2).t());

  const auto [eigenvalues, eigenvectors] = torch::linalg_eigh(s1, "L");
  const auto root1 = eigenvectors.mm(torch::diag(clamp_null_eigenvalues(eigenvalues).sqrt())).mm(eigenvectors.t());
  auto inner = root1.mm(s2).mm(root1);
  inner = 0.5 * (inner + inner.t());
  const double tr_covmean = clamp_null_eigenvalues(torch::linalg_eigvalsh(inner, "L")).sqrt().sum().item<double>();

  const double mean_term = (m1 - m2).square().sum().item<double>();
  return mean_term + s1.trace().item<double>() + s2.trace().item<double>() - 2.0 * tr_covmean;
}

}  // namespace vdm
