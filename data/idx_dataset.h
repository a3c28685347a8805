// MNIST-style idx files ({train,t10k}-{images-idx3,labels-idx1}-ubyte, optionally .gz, read
// through zlib either way), e.g. Fashion-MNIST from Debian's dataset-fashion-mnist. The whole
// split is held in memory (47 MB for 60k 28x28 images); other resolutions are resized once.
#pragma once

#include <utility>

#include "data/dataset.h"

namespace vdm {

// The files of an idx split: train -> train-{images-idx3,labels-idx1}-ubyte[.gz], test ->
// t10k-...; {images, labels} as found in dir. Throws std::runtime_error naming the files
// expected for any other split name, or for files that are missing.
std::pair<std::string, std::string> idx_split_files(const std::string& dir, const std::string& split);
// The splits whose image file is present in dir, of train and test.
std::vector<std::string> idx_splits(const std::string& dir);

class IdxDataset : public Dataset {
 public:
  explicit IdxDataset(const DataOptions& options);
  int64_t size() const override { return count_; }
  int64_t channels() const override { return channels_; }
  int64_t resolution() const override { return resolution_; }
  int64_t num_classes() const override { return num_classes_; }
  int64_t label(int64_t index) const override { return labels_[index]; }
  void read(int64_t index, uint8_t* out) const override;
  std::string source(int64_t index) const override;

 private:
  std::string images_path_;
  int64_t count_ = 0, channels_ = 1, resolution_ = 0, num_classes_ = 0;
  std::vector<uint8_t> pixels_;  // count x channels x R x R
  std::vector<int64_t> labels_;
};

}  // namespace vdm
