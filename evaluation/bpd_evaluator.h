// Test-set bits/dim: the full VLB (continuous time, or T steps when the objective has
// timesteps > 0) over a dataset split shared round-robin across ranks, reduced in float64, with
// the standard error of the mean over images. The continuous-time diffusion term is estimated by
// importance sampling in lambda on a low-discrepancy lattice laid over the whole split.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "distributed/communicator.h"
#include "objectives/objective.h"

namespace vdm {

struct BpdOptions {
  int64_t batch_size = 256;  // rows per forward pass on each rank (images times draws)
  int64_t max_samples = 0;   // 0: the whole dataset; else its first max_samples indices
  uint64_t seed = 0;         // rank r draws noise from a CPU generator seeded with
                             // seed + r * 0x9E3779B97F4A7C15 (rank 0: seed itself); the lattice
                             // offsets come from one seeded alike on every rank
  // importance: lambda from a histogram proposal shaped by a pilot (continuous time only);
  // schedule: t uniform through the schedule (VDM's estimator). Both use the split's lattice.
  std::string estimator = "importance";
  int64_t pilot = 1024;      // importance: pilot evaluations (over all ranks) that shape p(lambda)
  int64_t bins = 32;         // importance: histogram bins over the schedule's lambda range
  int64_t draws = 2;         // noise levels per image, averaged into its estimate
  // Class-conditional models: false gives -log p(x) under the null label (comparable with
  // unconditional results); true gives -log p(x | y) with the dataset's labels.
  bool conditional = false;
  int64_t null_label = -1;   // the model's null class (its num_classes); -1: unconditional model
  // The training objective's w(lambda) and lambda range when w is monotone: the same draws then
  // also estimate the augmented ELBO the weighted loss bounds (ObjectiveImpl::add_augmented_elbo).
  std::function<torch::Tensor(const torch::Tensor&)> weighting;
  std::pair<double, double> weighting_range{0.0, 0.0};
};

struct BpdResult {
  double bpd = 0;         // mean over images of the per-image VLB estimate in bits/dim
  double bpd_stderr = 0;  // sqrt(unbiased variance / images); 0 below 2 images
  std::map<std::string, double> terms_bpd;  // diffusion, prior, reconstruction (sum to bpd)
  int64_t samples = 0;    // images over all ranks
  // draws >= 2: the Monte-Carlo part of the error alone (the test set held fixed), from the spread
  // of each image's draws; usually conservative, as the draws are stratified. NaN with one draw.
  double mc_stderr = std::numeric_limits<double>::quiet_NaN();
  // With BpdOptions::weighting: 0.5 integral of w ||eps_hat - eps||^2 / w(lambda_min) in nats per
  // dim, and that plus the prior KL at lambda_min in bits/dim, with its standard error.
  double loss_normalised = std::numeric_limits<double>::quiet_NaN();
  double augmented_elbo_bpd = std::numeric_limits<double>::quiet_NaN();
  double augmented_elbo_stderr = std::numeric_limits<double>::quiet_NaN();
  std::string estimator;  // what ran: importance | schedule
  bool conditional = false;  // labels were given to the model: -log p(x | y)
};

// The names BpdOptions::estimator takes.
const std::vector<std::string>& bpd_estimator_names();

// vlb: an objective made by make_vlb (sharing the trained schedule); it is not changed (the
// importance estimator runs a copy with its own proposal). Rank r evaluates dataset indices r,
// r + world, ... Every rank of comm must call this (the pilot and the result are reduced
// collectively), also those left without samples; comm = nullptr (or world = 1) returns this
// rank's result alone. Samples are encoded with encode_pixels and run under NoGradGuard on tensor_options'
// device and dtype; the caller puts the network in eval mode.
BpdResult evaluate_bpd(ObjectiveImpl& vlb, const Denoiser& denoiser, const Dataset& dataset,
                       Communicator* comm, int64_t rank, int64_t world, const BpdOptions& options,
                       torch::TensorOptions tensor_options);

// The lattice over a split: draw k of image n gets u = frac(u0 + n phi + k / draws), phi = (sqrt 5 -
// 1) / 2, with u0 uniform from `seed` (alike on every rank). float64 [indices * draws], image-major.
torch::Tensor split_uniforms(uint64_t seed, const std::vector<int64_t>& indices, int64_t draws);

// Mean and its standard error from sum, sum of squares and count (what evaluate_bpd reduces).
struct MeanStderr {
  double mean, standard_error;
};
MeanStderr mean_and_stderr(double sum, double sum_squares, int64_t count);

}  // namespace vdm
