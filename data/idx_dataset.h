// MNIST-style idx files ({train,t10k}-{images-idx3,labels-idx1}-ubyte, optionally .gz, read
// through zlib either way), e.g. Fashion-MNIST from Debian's dataset-fashion-mnist. The whole
// split is held in memory (47 MB for 60k 28x28 images); other resolutions are resized once.
#pragma once

#include "data/dataset.h"

namespace vdm {

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
