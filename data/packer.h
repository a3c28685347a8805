// `vdm pack`: converts an image folder or idx dataset into packed shards at a fixed
// resolution, one shard set per split (DIR/<split>), with worker threads, progress reports, a
// summary, and resumption: each shard covers a fixed range of source samples and is skipped on
// a re-run once it is complete.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace vdm {

struct PackOptions {
  DataOptions source;               // format idx|imagefolder, path, resolution, channels, on_error;
                                    // split: the one pack_dataset packs
  std::string out;                  // pack_dataset: the split's folder; pack_splits: the pack's
                                    // folder, split S going to out/S (created)
  std::vector<std::string> splits;  // pack_splits: the source's splits to pack; empty: all it has
  std::string as_split;             // the name the (one) split is packed under, for a held-out
                                    // folder kept apart from the training one; empty: its own
  int64_t shard_size = 10000;       // source samples per shard
  int64_t threads = 2;
  ResizeFilter filter = ResizeFilter::Bicubic;
};

struct PackProgress {
  int64_t done = 0, total = 0, skipped = 0;
  double seconds = 0;
  std::string split;  // pack_splits: the split being packed
};

struct PackSummary {
  int64_t images = 0, skipped = 0, shards = 0, reused_shards = 0, bytes = 0;
  double seconds = 0;
};

struct SplitPackSummary {
  std::string split, dir;  // the split's name in the pack and its folder
  PackSummary summary;
};

// The splits a source holds: idx train and test, whichever files exist; the split folders of an
// image folder (image_folder_splits), or just train for a plain root/<class>/<images> layout.
std::vector<std::string> source_splits(const DataOptions& source);

// The splits pack_splits will pack (options.splits without repeats, or every split of the
// source), each checked as opening it would: throws std::runtime_error with the source's own
// message (the folder or files expected) for a split the source lacks.
std::vector<std::string> resolve_pack_splits(const PackOptions& options);

// Packs the one split options.source.split into options.out. progress is called from the
// calling thread about once per 256 samples and at the end.
PackSummary pack_dataset(const PackOptions& options,
                         const std::function<void(const PackProgress&)>& progress = {});

// Packs each of options.splits (every split of the source when empty) into options.out/<split>,
// one after the other; on_split is called as each one is done. Every split asked for is checked
// (resolve_pack_splits) before any is packed, so a misspelt one fails at once.
std::vector<SplitPackSummary> pack_splits(const PackOptions& options,
                                          const std::function<void(const PackProgress&)>& progress = {},
                                          const std::function<void(const SplitPackSummary&)>& on_split = {});

}  // namespace vdm
