// The ImageNet train layout: root/<class>/<file>, class = index of the folder name in sorted
// order, files sorted within a class; JPEG or PNG, decoded and center-cropped + resized to the
// resolution on every read. Splits are folders (root/train, root/val); a plain root/<class>
// layout without them is the split `train` and nothing else, so no held-out split can ever
// silently read the training images.
#pragma once

#include "data/dataset.h"
#include "data/transforms.h"

namespace vdm {

// The names a split folder may have: train, val, valid, validation, test.
const std::vector<std::string>& split_folder_names();
// The split folders of an image-folder root: sub-folders with one of those names that hold
// class folders, in that order. Empty for a plain root/<class>/<images> layout.
std::vector<std::string> image_folder_splits(const std::string& root);
// The folder whose class folders make up `split`: root/<split> when it exists, root itself for
// split `train` of a plain layout; otherwise throws std::runtime_error naming root/<split>, the
// split folders there are, and the fix.
std::string image_folder_split_root(const std::string& root, const std::string& split);

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
