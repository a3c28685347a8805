// FID statistics across real MPI ranks: every rank encodes a strided share of one global sample
// set and the float64 sums are reduced to rank 0, which must then hold the statistics a single
// process computes over all samples (to 1e-9 relative), also when a rank has no samples.
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "distributed/mpi_communicator.h"
#include "evaluation/feature_extractor.h"
#include "evaluation/feature_stats.h"
#include "evaluation/fid_statistics.h"
#include "tests/multirank/mpi_gtest_main.h"
#include "tests/test_support.h"

namespace vdm {
namespace {


// Feature vector of global sample i: deterministic, far from zero mean, correlated dimensions.
torch::Tensor sample_features(int64_t i, int64_t d) {
  auto f = torch::empty({1, d}, kF64);
  for (int64_t j = 0; j < d; ++j)
    f[0][j] = 3.0 + std::sin(0.1 * double(i + 1) * double(j + 1)) + 0.01 * double(i) * double(j % 3);
  return f;
}

// Largest |a - b| relative to the largest |b|.
double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

void expect_rank_share_equals_whole(int64_t n, int64_t d, int64_t batch) {
  MpiCommunicator comm;
  const int rank = comm.rank(), world = comm.world();
  FeatureStats shared;  // dimension unknown until the first add (a rank may never add)
  std::vector<torch::Tensor> pending;
  for (int64_t i = rank; i < n; i += world) {
    pending.push_back(sample_features(i, d));
    if (int64_t(pending.size()) == batch) {
      shared.add(torch::cat(pending));
      pending.clear();
    }
  }
  if (!pending.empty()) shared.add(torch::cat(pending));
  shared.reduce_to_root(&comm);
  if (rank != 0) return;

  FeatureStats whole(d);
  for (int64_t i = 0; i < n; ++i) whole.add(sample_features(i, d));
  EXPECT_EQ(shared.count(), n);
  EXPECT_EQ(shared.dims(), d);
  EXPECT_LE(rel_diff(shared.mu(), whole.mu()), 1e-9);
  EXPECT_LE(rel_diff(shared.sigma(), whole.sigma()), 1e-9);
  EXPECT_NEAR(fid(shared.gaussian(), whole.gaussian()), 0.0, 1e-9);
}

TEST(FidMultirank, StatsFromAllRanksEqualOneProcess) { expect_rank_share_equals_whole(37, 16, 5); }

TEST(FidMultirank, ARankWithoutSamplesStillTakesPart) { expect_rank_share_equals_whole(2, 4, 8); }

// The whole path: a TorchScript module saved by each rank, a dataset shared round-robin.
TEST(FidMultirank, DatasetStatsThroughTorchScriptExtractor) {
  MpiCommunicator comm;
  const int rank = comm.rank(), world = comm.world();
  const auto path = std::filesystem::temp_directory_path() /
                    ("vdm_fid_multirank_" + std::to_string(::getpid()) + "_" + std::to_string(rank) + ".pt");
  torch::jit::Module m("F");
  m.define(R"(
def forward(self, x, return_features: bool = False):
    h = x.float() / 255.0
    return torch.cat([torch.mean(h, [2, 3]), torch.amax(h, [2, 3]), torch.mean(h * h, [2, 3])], 1)
)");
  m.save(path.string());
  TorchScriptFeatureExtractor extractor(path.string());

  class Pixels : public Dataset {
   public:
    int64_t size() const override { return 23; }
    int64_t channels() const override { return 3; }
    int64_t resolution() const override { return 4; }
    int64_t num_classes() const override { return 0; }
    int64_t label(int64_t) const override { return 0; }
    void read(int64_t i, uint8_t* out) const override {
      for (int64_t k = 0; k < 48; ++k) out[k] = uint8_t((i * 37 + k * k * 11 + (i * k) % 13) % 256);
    }
    std::string source(int64_t i) const override { return "#" + std::to_string(i); }
  } data;
  FeatureEncodingOptions eo;
  eo.batch_size = 3;
  const auto shared = dataset_feature_stats(extractor, data, &comm, rank, world, eo);
  const auto whole = dataset_feature_stats(extractor, data, nullptr, 0, 1, eo);
  std::filesystem::remove(path);
  if (rank != 0) return;
  EXPECT_EQ(shared.count(), 23);
  EXPECT_LE(rel_diff(shared.mu(), whole.mu()), 1e-9);
  EXPECT_LE(rel_diff(shared.sigma(), whole.sigma()), 1e-9);
}

}  // namespace
}  // namespace vdm
