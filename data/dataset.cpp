// The dataset factory: one place that knows every format.
#include "data/dataset.h"

#include <filesystem>
#include <stdexcept>

#include "data/idx_dataset.h"
#include "data/image_folder_dataset.h"
#include "data/packed_dataset.h"

namespace vdm {

const std::vector<std::string>& data_format_names() {
  static const std::vector<std::string> names{"idx", "imagefolder", "packed"};
  return names;
}

int64_t format_channels(const std::string& format) { return format == "idx" ? 1 : 3; }

const std::vector<std::string>& on_error_names() {
  static const std::vector<std::string> names{"skip", "fail"};
  return names;
}

DatasetPtr open_dataset(const DataOptions& o) {
  if (o.path.empty()) throw std::runtime_error("data.path is not set; point it at the dataset");
  if (!std::filesystem::exists(o.path))
    throw std::runtime_error("data.path " + o.path + " does not exist; check the path (for "
                             "Fashion-MNIST: apt-get install dataset-fashion-mnist)");
  if (o.format == "idx") return std::make_shared<IdxDataset>(o);
  if (o.format == "imagefolder") return std::make_shared<ImageFolderDataset>(o);
  if (o.format == "packed") return std::make_shared<PackedDataset>(o);
  throw std::runtime_error("unknown data.format '" + o.format + "' (choose idx, imagefolder or packed)");
}

void check_split(const DataOptions& o) {
  if (o.format == "idx") idx_split_files(o.path, o.split);
  if (o.format == "imagefolder") image_folder_split_root(o.path, o.split);
  if (o.format == "packed") packed_split_dir(o);
}

}  // namespace vdm
