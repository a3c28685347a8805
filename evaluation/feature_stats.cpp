// Feature statistics from float64 sums. Sums (not per-rank means) are what makes the reduction
// exact up to summation order, so statistics over R ranks equal those of one process.
#include "evaluation/feature_stats.h"

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>

#include "evaluation/frechet_distance.h"
#include "evaluation/npz.h"

namespace vdm {

GaussianStats load_stats(const std::string& path) {
  const auto arrays = read_npz(path);
  auto get = [&](const char* name) {
    const auto it = arrays.find(name);
    if (it == arrays.end()) {
      std::string have;
      for (const auto& [key, value] : arrays) have += (have.empty() ? "" : ", ") + key;
      throw NpzError(path + ": no array '" + name + "' (it holds: " + (have.empty() ? "nothing" : have) +
                     "); FID statistics need arrays mu [d] and sigma [d, d], as written by "
                     "`vdm fid-stats`, pytorch-fid --save-stats or np.savez(path, mu=mu, sigma=sigma)");
    }
    return it->second.to(torch::kFloat64);
  };
  GaussianStats s{get("mu"), get("sigma")};
  if (s.mu.dim() != 1 || s.sigma.dim() != 2 || s.sigma.size(0) != s.mu.size(0) ||
      s.sigma.size(1) != s.mu.size(0)) {
    std::ostringstream m;
    m << path << ": mu has shape " << s.mu.sizes() << " and sigma " << s.sigma.sizes()
      << "; FID statistics need mu [d] and sigma [d, d]";
    throw NpzError(m.str());
  }
  return s;
}

void save_stats(const std::string& path, const GaussianStats& stats, bool compress) {
  write_npz(path, {{"mu", stats.mu}, {"sigma", stats.sigma}}, compress);
}

double fid(const GaussianStats& a, const GaussianStats& b) {
  if (a.dims() != b.dims())
    throw std::invalid_argument("FID: the statistics have " + std::to_string(a.dims()) + " and " +
                                std::to_string(b.dims()) + " feature dimensions; both sides must "
                                "come from the same feature network");
  return frechet_distance(a.mu, a.sigma, b.mu, b.sigma);
}

FeatureStats::FeatureStats(int64_t dims) {
  if (dims < 0) throw std::invalid_argument("FeatureStats: dims must be >= 0");
  if (dims > 0) {
    dims_ = dims;
    sum_ = torch::zeros({dims}, torch::kFloat64);
    outer_ = torch::zeros({dims, dims}, torch::kFloat64);
  }
}

void FeatureStats::add(const torch::Tensor& features) {
  if (features.dim() != 2)
    throw std::invalid_argument("FeatureStats::add: features must be [n, d], got " +
                                std::to_string(features.dim()) + " dimensions");
  if (dims_ == 0) *this = FeatureStats(features.size(1));
  if (features.size(1) != dims_)
    throw std::invalid_argument("FeatureStats::add: features have " + std::to_string(features.size(1)) +
                                " dimensions, these statistics " + std::to_string(dims_));
  if (features.size(0) == 0) return;
  torch::NoGradGuard no_grad;
  const auto f = features.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  sum_ += f.sum(0);
  outer_.addmm_(f.t(), f);
  count_ += f.size(0);
}

void FeatureStats::reduce_to_root(Communicator* comm, int root) {
  if (!comm || comm->world() == 1) return;
  // A rank left without samples may not know d: the maximum over ranks tells it.
  auto d = torch::full({1}, double(dims_), torch::kFloat64);
  comm->all_reduce(d, ReduceOp::Max);
  const auto agreed = static_cast<int64_t>(d.item<double>());
  if (agreed == 0) return;  // no rank saw a feature
  if (dims_ == 0) *this = FeatureStats(agreed);
  if (dims_ != agreed)
    throw std::runtime_error("FeatureStats::reduce_to_root: rank " + std::to_string(comm->rank()) +
                             " has " + std::to_string(dims_) + "-d features, another rank " +
                             std::to_string(agreed) + "-d");
  // One message: [count, sum (d), outer (d*d)].
  auto flat = torch::cat({torch::full({1}, double(count_), torch::kFloat64), sum_, outer_.flatten()});
  comm->reduce(flat, root, ReduceOp::Sum);
  if (comm->rank() != root) return;
  count_ = static_cast<int64_t>(flat[0].item<double>());
  sum_ = flat.slice(0, 1, 1 + dims_).clone();
  outer_ = flat.slice(0, 1 + dims_).view({dims_, dims_}).clone();
}

torch::Tensor FeatureStats::mu() const {
  if (count_ < 1) throw std::runtime_error("FeatureStats: no features were added");
  return sum_ / double(count_);
}

torch::Tensor FeatureStats::sigma() const {
  if (count_ < 2)
    throw std::runtime_error("FeatureStats: a covariance needs at least 2 features, got " +
                             std::to_string(count_));
  const double n = double(count_);
  const auto m = sum_ / n;
  auto s = (outer_ - n * torch::outer(m, m)) / (n - 1.0);
  return 0.5 * (s + s.t());
}

}  // namespace vdm
