// Packed-shard reader (see packed_dataset.h).
#include "data/packed_dataset.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace vdm {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string shard_name(int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard_%05lld", static_cast<long long>(index));
  return buf;
}

std::string shard_json(const PackedShardInfo& s) {
  return json{{"name", s.name},          {"resolution", s.resolution}, {"channels", s.channels},
              {"count", s.count},        {"first_source", s.first_source},
              {"skipped", s.skipped},    {"record_bytes", s.channels * s.resolution * s.resolution}}
      .dump(2);
}

bool read_shard_json(const std::string& dir, const std::string& name, PackedShardInfo& info) {
  std::ifstream in(fs::path(dir) / (name + ".json"));
  if (!in) return false;
  try {
    auto j = json::parse(in);
    info.name = name;
    info.resolution = j.at("resolution").get<int64_t>();
    info.channels = j.at("channels").get<int64_t>();
    info.count = j.at("count").get<int64_t>();
    info.first_source = j.value("first_source", int64_t(0));
    info.skipped = j.value("skipped", int64_t(0));
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

namespace {

// A read-only mapping of a whole file.
struct Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
  Mapping() = default;
  explicit Mapping(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw std::runtime_error("cannot open " + path);
    struct stat st {};
    ::fstat(fd, &st);
    size = size_t(st.st_size);
    if (size > 0) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      ::close(fd);
      if (p == MAP_FAILED) throw std::runtime_error("cannot map " + path);
      data = static_cast<const uint8_t*>(p);
    } else {
      ::close(fd);
    }
  }
  ~Mapping() {
    if (data) ::munmap(const_cast<uint8_t*>(data), size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

}  // namespace

struct PackedDataset::Mapped {
  PackedShardInfo info;
  Mapping records, labels;
  Mapped(const std::string& dir, const PackedShardInfo& i)
      : info(i), records((fs::path(dir) / (i.name + ".bin")).string()),
        labels((fs::path(dir) / (i.name + ".labels")).string()) {}
};

PackedDataset::PackedDataset(const DataOptions& o) : dir_(o.path) {
  const auto index_path = fs::path(dir_) / "dataset.json";
  std::ifstream in(index_path);
  if (!in)
    throw std::runtime_error("data.path " + dir_ + " has no dataset.json; create packed shards "
                             "with `vdm pack SOURCE --resolution R --out " + dir_ + "`");
  json index;
  try {
    index = json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error(index_path.string() + " is not valid JSON (" + e.what() +
                             "); re-run vdm pack to rewrite it");
  }
  resolution_ = index.value("resolution", int64_t(0));
  channels_ = index.value("channels", int64_t(0));
  num_classes_ = index.value("num_classes", int64_t(0));
  if (resolution_ != o.resolution)
    throw std::runtime_error("packed data at " + dir_ + " is " + std::to_string(resolution_) +
                             " px but data.resolution is " + std::to_string(o.resolution) +
                             "; set data.resolution=" + std::to_string(resolution_) +
                             " or repack with vdm pack --resolution " + std::to_string(o.resolution));
  if (o.channels > 0 && o.channels != channels_)
    throw std::runtime_error("packed data at " + dir_ + " has " + std::to_string(channels_) +
                             " channels, data.channels asks for " + std::to_string(o.channels));
  const int64_t record_bytes = channels_ * resolution_ * resolution_;
  for (const auto& entry : index.value("shards", json::array())) {
    const std::string name = entry.value("name", std::string());
    PackedShardInfo info;
    std::string problem;
    if (!read_shard_json(dir_, name, info)) {
      problem = "missing or unreadable " + name + ".json (an unfinished pack? re-run vdm pack)";
    } else if (info.resolution != resolution_ || info.channels != channels_) {
      problem = name + ".json says " + std::to_string(info.resolution) + " px x" +
                std::to_string(info.channels) + ", the dataset " + std::to_string(resolution_) +
                " px x" + std::to_string(channels_);
    }
    std::unique_ptr<Mapped> shard;
    if (problem.empty()) {
      try {
        shard = std::make_unique<Mapped>(dir_, info);
        if (shard->records.size != size_t(info.count * record_bytes) ||
            shard->labels.size != size_t(info.count * 8))
          problem = name + ": file sizes do not match its count " + std::to_string(info.count) +
                    " (truncated?)";
      } catch (const std::exception& e) {
        problem = e.what();
      }
    }
    if (!problem.empty()) {
      if (o.on_error == "fail")
        throw std::runtime_error("packed data at " + dir_ + ": " + problem + " (data.on_error=fail)");
      spdlog::warn("packed data at {}: skipping shard: {}", dir_, problem);
      ++skipped_shards_;
      continue;
    }
    starts_.push_back(total_);
    total_ += info.count;
    shards_.push_back(std::move(shard));
  }
  if (total_ == 0) throw std::runtime_error("packed data at " + dir_ + " holds no usable records");
}

PackedDataset::~PackedDataset() = default;

std::pair<size_t, int64_t> PackedDataset::locate(int64_t index) const {
  if (index < 0 || index >= total_) throw std::out_of_range("packed index " + std::to_string(index));
  const size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), index) - starts_.begin()) - 1;
  return {s, index - starts_[s]};
}

const uint8_t* PackedDataset::record(int64_t index) const {
  auto [s, i] = locate(index);
  return shards_[s]->records.data + i * sample_bytes();
}

void PackedDataset::read(int64_t index, uint8_t* out) const {
  std::memcpy(out, record(index), size_t(sample_bytes()));
}

int64_t PackedDataset::label(int64_t index) const {
  auto [s, i] = locate(index);
  int64_t v;
  std::memcpy(&v, shards_[s]->labels.data + i * 8, 8);
  return v;
}

std::string PackedDataset::source(int64_t index) const {
  auto [s, i] = locate(index);
  return dir_ + "/" + shards_[s]->info.name + ".bin #" + std::to_string(i);
}

}  // namespace vdm
