// Image-folder dataset (see image_folder_dataset.h), and how a split name maps to a folder:
// shared with the packer so that `vdm pack` and training refuse the same missing splits.
#include "data/image_folder_dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

namespace vdm {

namespace fs = std::filesystem;

namespace {

bool is_hidden_entry(const fs::path& p) { return p.filename().string()[0] == '.'; }

bool has_subfolders(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory() && !is_hidden_entry(e.path())) return true;
  return false;
}

std::string folder_list(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

const std::vector<std::string>& split_folder_names() {
  static const std::vector<std::string> names{"train", "val", "valid", "validation", "test"};
  return names;
}

std::vector<std::string> image_folder_splits(const std::string& root) {
  // A split folder holds class folders; a class folder that happens to be called "test" holds
  // images, so it stays a class of a plain layout.
  std::vector<std::string> splits;
  for (const auto& name : split_folder_names())
    if (fs::is_directory(fs::path(root) / name) && has_subfolders(fs::path(root) / name)) splits.push_back(name);
  return splits;
}

std::string image_folder_split_root(const std::string& root, const std::string& split) {
  const auto splits = image_folder_splits(root);
  if (split.empty())
    throw std::runtime_error("no split named for the image folder " + root + "; use train" +
                             (splits.empty() ? std::string() : " or one of its split folders: " + folder_list(splits)));
  const fs::path dir = fs::path(root) / split;
  // In a plain layout, root/<split> without sub-folders is a class that shares the split's name.
  if (fs::is_directory(dir) && (!splits.empty() || has_subfolders(dir))) return dir.string();
  // Only a layout without any split folders is the training set itself: anywhere else, falling
  // back to root would evaluate on (or train on) the wrong images without a word.
  if (splits.empty() && split == "train") return root;
  if (!splits.empty())
    throw std::runtime_error("image folder " + root + " has no split '" + split + "': " + dir.string() +
                             " does not exist (its split folders: " + folder_list(splits) + "); use one of "
                             "those splits, or put the " + split + " images in " + dir.string() +
                             "/<class>/<images>");
  const std::string state = fs::is_directory(dir) ? " is a class folder" : " does not exist";
  throw std::runtime_error("image folder " + root + " has no split '" + split + "': " + dir.string() +
                           state + " and " + root + " has no split folders (train, val, valid, "
                           "validation or test) - a plain " + root + "/<class>/<images> layout is only the "
                           "split 'train'; to hold images out, move the training classes to " + root +
                           "/train/<class>/ and the held-out ones to " + dir.string() + "/<class>/");
}

ImageFolderDataset::ImageFolderDataset(const DataOptions& o, ResizeFilter filter)
    : channels_(o.channels > 0 ? o.channels : format_channels("imagefolder")), resolution_(o.resolution), filter_(filter) {
  if (!fs::is_directory(o.path))
    throw std::runtime_error("data.path " + o.path + " is not a folder; for format imagefolder "
                             "point it at root/<class>/<images> (the ImageNet train layout)");
  const fs::path root = image_folder_split_root(o.path, o.split);
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && !is_hidden_entry(e.path())) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty())
    throw std::runtime_error(root.string() + " has no class folders; expected root/<class>/<images>");
  for (const auto& dir : dirs) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && !is_hidden_entry(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    const int64_t label = int64_t(classes_.size());
    classes_.push_back(dir.filename().string());
    if (files.empty()) {
      // The label is kept so that class indices stay those of the sorted folder list.
      if (o.on_error == "fail")
        throw std::runtime_error("class folder " + dir.string() + " is empty (data.on_error=fail; "
                                 "remove the folder or set data.on_error=skip)");
      spdlog::warn("class folder {} is empty; its label {} has no samples", dir.string(), label);
      ++empty_classes_;
    }
    for (auto& f : files) {
      files_.push_back(std::move(f));
      labels_.push_back(label);
    }
  }
  if (files_.empty()) throw std::runtime_error(root.string() + ": no image files in any class folder");
}

void ImageFolderDataset::read(int64_t index, uint8_t* out) const {
  // DCT scaling only down to 2R keeps the box + bicubic steps' antialiasing in charge of the
  // final resolution.
  auto img = read_image_file(files_[index], int(channels_), int(2 * resolution_));
  to_chw(center_crop_resize(img, int(resolution_), filter_), out);
}

}  // namespace vdm
