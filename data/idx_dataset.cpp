// idx reader (see idx_dataset.h). Format: big-endian magic (0x00000803 images, 0x00000801
// labels), then the dimension sizes, then the raw uint8 data.
#include "data/idx_dataset.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <tuple>

#include "data/transforms.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

bool exists_gz(const fs::path& p) { return fs::exists(p) || fs::exists(p.string() + ".gz"); }

std::string find_file(const std::string& dir, const std::string& stem, const std::string& split) {
  for (const char* suffix : {"", ".gz"}) {
    auto p = fs::path(dir) / (stem + suffix);
    if (fs::exists(p)) return p.string();
  }
  throw std::runtime_error("data.path " + dir + " has no " + stem + "[.gz] (idx split '" + split +
                           "'); point data.path at the folder holding the idx files (Debian: "
                           "apt-get install dataset-fashion-mnist, then /usr/share/datasets/fashion-mnist)");
}

const char* file_prefix(const std::string& split) { return split == "train" ? "train" : "t10k"; }

std::vector<uint8_t> read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw std::runtime_error(path + ": corrupt or truncated gzip data");
  return out;
}

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
}

}  // namespace

std::pair<std::string, std::string> idx_split_files(const std::string& dir, const std::string& split) {
  if (split != "train" && split != "test")
    throw std::runtime_error("idx data at " + dir + " has the splits 'train' (train-images-idx3-ubyte[.gz] "
                             "and train-labels-idx1-ubyte[.gz]) and 'test' (t10k-images-idx3-ubyte[.gz] "
                             "and t10k-labels-idx1-ubyte[.gz]), not '" + split + "'; use train or test");
  const std::string prefix = file_prefix(split);
  return {find_file(dir, prefix + "-images-idx3-ubyte", split), find_file(dir, prefix + "-labels-idx1-ubyte", split)};
}

std::vector<std::string> idx_splits(const std::string& dir) {
  std::vector<std::string> splits;
  for (const char* split : {"train", "test"})
    if (exists_gz(fs::path(dir) / (std::string(file_prefix(split)) + "-images-idx3-ubyte"))) splits.push_back(split);
  return splits;
}

IdxDataset::IdxDataset(const DataOptions& o) {
  if (!fs::is_directory(o.path))
    throw std::runtime_error("data.path " + o.path + " is not a folder; point it at the folder "
                             "holding {train,t10k}-images-idx3-ubyte[.gz]");
  std::string label_path;
  std::tie(images_path_, label_path) = idx_split_files(o.path, o.split);
  const auto images = read_gz(images_path_);
  const auto labels = read_gz(label_path);
  if (images.size() < 16 || be32(images, 0) != 0x803)
    throw std::runtime_error(images_path_ + ": not an idx3 image file (bad magic number)");
  if (labels.size() < 8 || be32(labels, 0) != 0x801)
    throw std::runtime_error(label_path + ": not an idx1 label file (bad magic number)");
  count_ = be32(images, 4);
  const int64_t rows = be32(images, 8), cols = be32(images, 12);
  if (int64_t(images.size()) != 16 + count_ * rows * cols)
    throw std::runtime_error(images_path_ + ": truncated (header says " + std::to_string(count_) +
                             " images of " + std::to_string(rows) + "x" + std::to_string(cols) + ")");
  if (be32(labels, 4) != count_ || int64_t(labels.size()) != 8 + count_)
    throw std::runtime_error(label_path + ": label count does not match " + images_path_);
  labels_.assign(labels.begin() + 8, labels.end());
  num_classes_ = *std::max_element(labels_.begin(), labels_.end()) + 1;

  resolution_ = o.resolution;
  channels_ = o.channels > 0 ? o.channels : format_channels("idx");
  if (channels_ != 1 && channels_ != 3) throw std::runtime_error("data.channels must be 1 or 3");
  const int64_t R = resolution_, out_bytes = channels_ * R * R;
  pixels_.resize(size_t(count_ * out_bytes));
  for (int64_t i = 0; i < count_; ++i) {
    Image img;
    img.width = int(cols);
    img.height = int(rows);
    img.channels = 1;
    img.pixels.assign(images.begin() + 16 + i * rows * cols, images.begin() + 16 + (i + 1) * rows * cols);
    if (rows != R || cols != R) img = center_crop_resize(img, int(R));
    uint8_t* dst = pixels_.data() + i * out_bytes;
    for (int64_t c = 0; c < channels_; ++c) std::copy(img.pixels.begin(), img.pixels.end(), dst + c * R * R);
  }
}

void IdxDataset::read(int64_t index, uint8_t* out) const {
  const int64_t n = sample_bytes();
  std::copy(pixels_.begin() + index * n, pixels_.begin() + (index + 1) * n, out);
}

std::string IdxDataset::source(int64_t index) const {
  return images_path_ + " #" + std::to_string(index);
}

}  // namespace vdm
