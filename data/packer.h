// `vdm pack`: converts an image folder or idx dataset into packed shards at a fixed
// resolution, with worker threads, progress reports, a summary, and resumption: each shard
// covers a fixed range of source samples and is skipped on a re-run once it is complete.
#pragma once

#include <functional>
#include <string>

#include "data/dataset.h"
#include "data/transforms.h"

namespace vdm {

struct PackOptions {
  DataOptions source;               // format idx|imagefolder, path, split, resolution, channels
  std::string out;                  // output folder (created)
  int64_t shard_size = 10000;       // source samples per shard
  int64_t threads = 2;
  ResizeFilter filter = ResizeFilter::Bicubic;
};

struct PackProgress {
  int64_t done = 0, total = 0, skipped = 0;
  double seconds = 0;
};

struct PackSummary {
  int64_t images = 0, skipped = 0, shards = 0, reused_shards = 0, bytes = 0;
  double seconds = 0;
};

// progress is called from the calling thread about once per 256 samples and at the end.
PackSummary pack_dataset(const PackOptions& options,
                         const std::function<void(const PackProgress&)>& progress = {});

}  // namespace vdm
