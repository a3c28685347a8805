// Image-folder dataset (see image_folder_dataset.h).
#include "data/image_folder_dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

namespace vdm {

namespace fs = std::filesystem;

ImageFolderDataset::ImageFolderDataset(const DataOptions& o, ResizeFilter filter)
    : channels_(o.channels > 0 ? o.channels : format_channels("imagefolder")), resolution_(o.resolution), filter_(filter) {
  fs::path root = o.path;
  if (!fs::is_directory(root))
    throw std::runtime_error("data.path " + o.path + " is not a folder; for format imagefolder "
                             "point it at root/<class>/<images> (the ImageNet train layout)");
  if (!o.split.empty() && fs::is_directory(root / o.split)) root /= o.split;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string()[0] != '.') dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty())
    throw std::runtime_error(root.string() + " has no class folders; expected root/<class>/<images>");
  for (const auto& dir : dirs) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path().string());
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
