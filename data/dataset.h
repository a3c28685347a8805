// The dataset interface behind every format (image folder, packed shards, MNIST idx): a fixed
// number of samples, each readable as uint8 CHW at the dataset's resolution with its label.
// Datasets are read concurrently by loader and packer threads, so read() must be thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vdm {

struct DataOptions {
  std::string format = "idx";   // idx | imagefolder | packed
  std::string path;
  int64_t resolution = 32;      // output H = W
  // idx: train | test; imagefolder: PATH/<split> (a plain PATH/<class> layout is only train);
  // packed: DIR/<split>. A split the data lacks is an error, never another split's images.
  std::string split = "train";
  int64_t channels = 0;         // 0: the format's own (idx 1, images 3); else 1 or 3
  std::string on_error = "skip";  // skip | fail: unreadable files, empty classes, bad shards
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t channels() const = 0;
  virtual int64_t resolution() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual int64_t label(int64_t index) const = 0;
  // Writes sample `index` (channels x resolution x resolution bytes) into out. Throws
  // ImageError (data/image_codec.h) when the underlying file cannot be decoded.
  virtual void read(int64_t index, uint8_t* out) const = 0;
  // Where sample `index` comes from, for messages ("root/n01440764/x.JPEG", "shard 3 #17").
  virtual std::string source(int64_t index) const = 0;
  // Items left out while the dataset was opened (empty class folders, bad shards).
  virtual int64_t skipped_at_open() const { return 0; }
  int64_t sample_bytes() const { return channels() * resolution() * resolution(); }
};
using DatasetPtr = std::shared_ptr<const Dataset>;

// Opens the dataset; throws std::runtime_error with the path and the fix when it is missing
// or malformed (before any work starts).
// The formats open_dataset reads, and the on_error policies.
const std::vector<std::string>& data_format_names();
// The image channels a format holds when DataOptions::channels is 0: idx is grayscale, image
// folders and packed shards (of RGB images) are RGB.
int64_t format_channels(const std::string& format);
const std::vector<std::string>& on_error_names();
DatasetPtr open_dataset(const DataOptions& options);
// Whether options.split exists, without opening the data (a directory listing at most); throws
// std::runtime_error with the message open_dataset would give. Lets a run refuse a missing
// held-out split before it trains.
void check_split(const DataOptions& options);

}  // namespace vdm
