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

// DIR/dataset.json, or null when it is missing or unreadable (the caller decides what that means).
json read_index(const fs::path& dir) {
  std::ifstream in(dir / "dataset.json");
  if (!in) return nullptr;
  try {
    return json::parse(in);
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::string split_list(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

// The command that packs `split` into root, with the source the pack was made from when one of
// its index files records it.
std::string pack_split_command(const DataOptions& o, const std::string& root, const std::string& split) {
  std::string source;
  std::vector<fs::path> candidates{fs::path(root)};
  for (const auto& s : packed_splits(root)) candidates.push_back(fs::path(root) / s);
  for (const auto& dir : candidates) {
    const json index = read_index(dir);
    if (index.is_object() && index.value("source", std::string()) != "") {
      source = index.value("source", std::string());
      break;
    }
  }
  return "`vdm pack " + (source.empty() ? std::string("SOURCE") : source) + " --split " + split +
         " --resolution " + std::to_string(o.resolution) + " --out " + root + "`";
}

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

std::vector<std::string> packed_splits(const std::string& root) {
  std::vector<std::string> splits;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.is_directory() && fs::exists(e.path() / "dataset.json")) splits.push_back(e.path().filename().string());
  auto rank = [](const std::string& s) {
    static const std::vector<std::string> order{"train", "val", "valid", "validation", "test"};
    return std::find(order.begin(), order.end(), s) - order.begin();
  };
  std::sort(splits.begin(), splits.end(),
            [&](const std::string& a, const std::string& b) { return std::make_pair(rank(a), a) < std::make_pair(rank(b), b); });
  return splits;
}

std::string packed_split_dir(const DataOptions& o) {
  const std::string& root = o.path;
  const std::string& split = o.split;
  if (split.empty())
    throw std::runtime_error("no split named for the packed data at " + root + "; its splits: " + split_list(packed_splits(root)));
  const fs::path dir = fs::path(root) / split;
  // A split folder without its dataset.json is an interrupted pack: the constructor says so.
  if (fs::is_directory(dir)) return dir.string();
  const json index = read_index(root);
  if (index.is_object()) {
    const std::string recorded = index.value("split", std::string("train"));
    if (index.value("version", int64_t(1)) >= 2) {
      // Version 2 is one split's folder of a per-split pack: its recorded split is the truth.
      if (recorded == split) return root;
      auto self = fs::absolute(root).lexically_normal();
      if (!self.has_filename()) self = self.parent_path();  // "DIR/train/"
      const std::string parent = self.parent_path().string();
      const auto siblings = packed_splits(parent);
      std::string fix = "set data.path to the pack's folder " + parent + " (its splits: " + split_list(siblings) + ")";
      if (std::find(siblings.begin(), siblings.end(), split) == siblings.end())
        fix += " and pack split '" + split + "' with " + pack_split_command(o, parent, split);
      throw std::runtime_error("packed data at " + root + " is split '" + recorded + "' of a pack, not split '" +
                               split + "' (" + dir.string() + " does not exist); " + fix);
    }
    // Shards directly in root: the single-split layout of packs made before split folders. It
    // is opened as `train` because that is what it almost always holds, and so old packs keep
    // training; it is never a held-out split, because its recorded split cannot be trusted
    // (`--split val` of a plain image folder packed the training images).
    if (split == "train" && recorded == "train") return root;
    throw std::runtime_error("packed data at " + root + " has no split '" + split + "': " + dir.string() +
                             " does not exist, and the shards directly in " + root + " (the single-split layout "
                             "of older packs, packed from split '" + recorded + "') serve only as split 'train'; "
                             "pack the split with " + pack_split_command(o, root, split) + ", or repack every split "
                             "into " + root + "/<split> by leaving out --split");
  }
  const auto splits = packed_splits(root);
  if (splits.empty())
    throw std::runtime_error("data.path " + root + " holds no packed data (no " + dir.string() + "/dataset.json, "
                             "no split folders); create it with " + pack_split_command(o, root, split) +
                             " (without --split: every split of SOURCE)");
  throw std::runtime_error("packed data at " + root + " has no split '" + split + "': " + dir.string() +
                           " does not exist (its splits: " + split_list(splits) + "); pack it with " +
                           pack_split_command(o, root, split));
}

struct PackedDataset::Mapped {
  PackedShardInfo info;
  Mapping records, labels;
  Mapped(const std::string& dir, const PackedShardInfo& i)
      : info(i), records((fs::path(dir) / (i.name + ".bin")).string()),
        labels((fs::path(dir) / (i.name + ".labels")).string()) {}
};

PackedDataset::PackedDataset(const DataOptions& o) : dir_(packed_split_dir(o)) {
  const auto index_path = fs::path(dir_) / "dataset.json";
  std::ifstream in(index_path);
  if (!in)
    throw std::runtime_error("packed split folder " + dir_ + " has no dataset.json (an interrupted pack?); "
                             "finish it by re-running the same vdm pack, e.g. " + pack_split_command(o, o.path, o.split));
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
