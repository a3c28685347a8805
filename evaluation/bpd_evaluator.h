// Test-set bits/dim: the full VLB (continuous time, or T steps when the objective has
// timesteps > 0) over a dataset split shared round-robin across ranks, reduced in float64 with
// one all-reduce, with the standard error of the mean over samples.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "data/dataset.h"
#include "distributed/communicator.h"
#include "objectives/objective.h"

namespace vdm {

struct BpdOptions {
  int64_t batch_size = 256;  // per rank
  int64_t max_samples = 0;   // 0: the whole dataset; else its first max_samples indices
  uint64_t seed = 0;         // rank r draws t and noise from a CPU generator seeded with
                             // seed + r * 0x9E3779B97F4A7C15 (rank 0: seed itself)
};

struct BpdResult {
  double bpd = 0;         // mean over samples of the per-sample VLB in bits/dim
  double bpd_stderr = 0;  // sqrt(unbiased variance / samples); 0 below 2 samples
  std::map<std::string, double> terms_bpd;  // diffusion, prior, reconstruction (sum to bpd)
  int64_t samples = 0;    // over all ranks
};

// vlb: an objective made by make_vlb (sharing the trained schedule). Rank r evaluates dataset
// indices r, r + world, ... Every rank of comm must call this (the reduction is collective),
// also those left without samples; comm = nullptr (or world = 1) returns this rank's result
// alone. Samples are encoded with encode_pixels and run under NoGradGuard on tensor_options'
// device and dtype; the caller puts the network in eval mode.
BpdResult evaluate_bpd(ObjectiveImpl& vlb, const Denoiser& denoiser, const Dataset& dataset,
                       Communicator* comm, int64_t rank, int64_t world, const BpdOptions& options,
                       torch::TensorOptions tensor_options);

// Mean and its standard error from sum, sum of squares and count (what evaluate_bpd reduces).
struct MeanStderr {
  double mean, standard_error;
};
MeanStderr mean_and_stderr(double sum, double sum_squares, int64_t count);

}  // namespace vdm
