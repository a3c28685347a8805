// Encoding real images for FID. Batches are filled on the calling thread: decoding is cheap
// next to the feature network, and datasets' read() is thread-safe should that ever change.
#include "evaluation/fid_statistics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "data/image_codec.h"

namespace vdm {
namespace {

void check_share(int64_t rank, int64_t world, const FeatureEncodingOptions& o) {
  if (world < 1 || rank < 0 || rank >= world) throw std::invalid_argument("FID: need 0 <= rank < world");
  if (o.batch_size < 1) throw std::invalid_argument("FID: batch_size must be >= 1");
}

int64_t share(int64_t total, int64_t rank, int64_t world) {
  return rank < total ? (total - rank + world - 1) / world : 0;
}

}  // namespace

FeatureStats dataset_feature_stats(FeatureExtractor& extractor, const Dataset& dataset,
                                   Communicator* comm, int64_t rank, int64_t world,
                                   const FeatureEncodingOptions& o, const EncodingProgress& progress) {
  check_share(rank, world, o);
  FeatureStats stats(extractor.dims());
  const int64_t total = o.max_samples > 0 ? std::min(o.max_samples, dataset.size()) : dataset.size();
  const int64_t local = share(total, rank, world), bytes = dataset.sample_bytes();
  const int64_t C = dataset.channels(), R = dataset.resolution();
  for (int64_t done = 0; done < local;) {
    const int64_t n = std::min(o.batch_size, local - done);
    auto pixels = torch::empty({n, C, R, R}, torch::kUInt8);
    for (int64_t j = 0; j < n; ++j)
      dataset.read(rank + (done + j) * world, pixels.data_ptr<uint8_t>() + j * bytes);
    stats.add(extractor.features(pixels));
    done += n;
    if (progress) progress(done, local);
  }
  stats.reduce_to_root(comm);
  return stats;
}

std::vector<std::string> list_image_files(const std::string& folder) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(folder))
    throw std::runtime_error(folder + " is not a folder (expected a folder of .png/.jpg images or "
                             "an .npz statistics file)");
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") files.push_back(entry.path().string());
  }
  if (files.empty()) throw std::runtime_error(folder + " holds no .png/.jpg/.jpeg images");
  std::sort(files.begin(), files.end());
  return files;
}

FeatureStats image_files_feature_stats(FeatureExtractor& extractor, const std::vector<std::string>& files,
                                       Communicator* comm, int64_t rank, int64_t world,
                                       const FeatureEncodingOptions& o, const EncodingProgress& progress) {
  check_share(rank, world, o);
  FeatureStats stats(extractor.dims());
  const int64_t total = o.max_samples > 0 ? std::min<int64_t>(o.max_samples, int64_t(files.size()))
                                          : int64_t(files.size());
  const int64_t local = share(total, rank, world);
  const int channels = int(extractor.input_channels());
  std::vector<Image> batch;
  int64_t encoded = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    const int64_t n = int64_t(batch.size()), h = batch[0].height, w = batch[0].width;
    auto pixels = torch::empty({n, h, w, channels}, torch::kUInt8);
    for (int64_t j = 0; j < n; ++j)
      std::memcpy(pixels.data_ptr<uint8_t>() + j * h * w * channels, batch[j].pixels.data(), size_t(h * w * channels));
    stats.add(extractor.features(pixels.permute({0, 3, 1, 2}).contiguous()));
    batch.clear();
    encoded += n;
    if (progress) progress(encoded, local);
  };
  for (int64_t i = 0; i < local; ++i) {
    Image image = read_image_file(files[size_t(rank + i * world)], channels);
    if (!batch.empty() && (image.width != batch[0].width || image.height != batch[0].height)) flush();
    batch.push_back(std::move(image));
    if (int64_t(batch.size()) == o.batch_size) flush();
  }
  flush();
  stats.reduce_to_root(comm);
  return stats;
}

}  // namespace vdm
