// FID statistics of real images: a dataset split (idx, packed, image folder) or a folder of
// image files, shared round-robin across ranks, encoded by a FeatureExtractor, and the float64
// sums reduced to rank 0. Generated samples take the same path by FeatureStats::add per batch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "distributed/communicator.h"
#include "evaluation/feature_extractor.h"
#include "evaluation/feature_stats.h"

namespace vdm {

struct FeatureEncodingOptions {
  int64_t batch_size = 64;  // per rank
  int64_t max_samples = 0;  // 0: all; else the first max_samples items
};

// progress(done, total) on this rank, after each batch.
using EncodingProgress = std::function<void(int64_t done, int64_t total)>;

// Rank r encodes items r, r + world, ... Collective: every rank of comm calls it, also one
// left without items; afterwards the root's statistics cover all items (comm may be null
// with rank 0, world 1).
FeatureStats dataset_feature_stats(FeatureExtractor& extractor, const Dataset& dataset,
                                   Communicator* comm, int64_t rank, int64_t world,
                                   const FeatureEncodingOptions& options = {},
                                   const EncodingProgress& progress = {});

// The .png/.jpg/.jpeg files (any case) under folder, recursively, sorted by path. Throws
// std::runtime_error when the folder does not exist or holds none.
std::vector<std::string> list_image_files(const std::string& folder);

// As dataset_feature_stats over image files, decoded to the extractor's input channels at their
// own size (consecutive files of one size share a batch; Inception resizes internally, the
// built-in net resizes to its resolution). Throws ImageError naming an undecodable file.
FeatureStats image_files_feature_stats(FeatureExtractor& extractor, const std::vector<std::string>& files,
                                       Communicator* comm, int64_t rank, int64_t world,
                                       const FeatureEncodingOptions& options = {},
                                       const EncodingProgress& progress = {});

}  // namespace vdm
