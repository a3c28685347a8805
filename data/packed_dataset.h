// Packed shards, the fast path for 32/64 px ImageNet. A pack DIR holds one folder per split,
// DIR/<split>/dataset.json naming that split's shards; each shard is shard_NNNNN.bin (fixed-size
// uint8 CHW records), shard_NNNNN.labels (int64, little endian) and shard_NNNNN.json
// (resolution, channels, count), the JSON written last so that a shard with its JSON is
// complete. Shards are memory-mapped: a read is one memcpy. DataOptions::split picks the folder;
// a split the pack lacks is an error, never another split's shards.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace vdm {

// Names and metadata of the on-disk layout, shared with the packer.
struct PackedShardInfo {
  std::string name;  // "shard_00003"
  int64_t resolution = 0, channels = 0, count = 0, first_source = 0;
  int64_t skipped = 0;  // source files left out of this shard
};
std::string shard_name(int64_t index);
std::string shard_json(const PackedShardInfo& info);
// Parses DIR/<name>.json; returns false when it is missing or malformed (an incomplete shard).
bool read_shard_json(const std::string& dir, const std::string& name, PackedShardInfo& info);

// The splits of the pack at root: its sub-folders holding a dataset.json, train first.
std::vector<std::string> packed_splits(const std::string& root);
// The folder holding split options.split of the pack at options.path: DIR/<split>; DIR itself
// when it is that split's folder (data.path given as DIR/<split>) or a pack in the old
// single-split layout asked for `train`. Otherwise throws std::runtime_error naming the
// missing folder, the splits the pack has, and the vdm pack command that adds the split.
std::string packed_split_dir(const DataOptions& options);

class PackedDataset : public Dataset {
 public:
  explicit PackedDataset(const DataOptions& options);
  ~PackedDataset() override;
  int64_t size() const override { return total_; }
  int64_t channels() const override { return channels_; }
  int64_t resolution() const override { return resolution_; }
  int64_t num_classes() const override { return num_classes_; }
  int64_t label(int64_t index) const override;
  void read(int64_t index, uint8_t* out) const override;
  std::string source(int64_t index) const override;
  int64_t skipped_at_open() const override { return skipped_shards_; }
  // The record of sample `index` inside the mapping (no copy).
  const uint8_t* record(int64_t index) const;

 private:
  struct Mapped;
  std::pair<size_t, int64_t> locate(int64_t index) const;
  std::string dir_;
  std::vector<std::unique_ptr<Mapped>> shards_;
  std::vector<int64_t> starts_;  // global index of each shard's first record
  int64_t total_ = 0, channels_ = 0, resolution_ = 0, num_classes_ = 0, skipped_shards_ = 0;
};

}  // namespace vdm
