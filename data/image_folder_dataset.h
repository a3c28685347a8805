// The ImageNet train layout: root/<class>/<file>, class = index of the folder name in sorted
// order, files sorted within a class; JPEG or PNG, decoded and center-cropped + resized to the
// resolution on every read. PATH/<split> is used when it exists (root/train, root/val).
#pragma once

#include "data/dataset.h"
#include "data/transforms.h"

namespace vdm {

class ImageFolderDataset : public Dataset {
 public:
  explicit ImageFolderDataset(const DataOptions& options, ResizeFilter filter = ResizeFilter::Bicubic);
  int64_t size() const override { return int64_t(files_.size()); }
  int64_t channels() const override { return channels_; }
  int64_t resolution() const override { return resolution_; }
  int64_t num_classes() const override { return int64_t(classes_.size()); }
  int64_t label(int64_t index) const override { return labels_[index]; }
  void read(int64_t index, uint8_t* out) const override;
  std::string source(int64_t index) const override { return files_[index]; }
  int64_t skipped_at_open() const override { return empty_classes_; }
  const std::vector<std::string>& classes() const { return classes_; }

 private:
  std::vector<std::string> classes_, files_;
  std::vector<int64_t> labels_;
  int64_t channels_ = 3, resolution_ = 0, empty_classes_ = 0;
  ResizeFilter filter_;
};

}  // namespace vdm
