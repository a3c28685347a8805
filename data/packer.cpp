// Packing (see packer.h). Shard k holds source samples [k S, (k+1) S) minus unreadable ones, so
// a re-run knows which shards exist without reading any image. Within a shard, worker threads
// take samples from an atomic counter and write into their slot of the shard buffer; the
// surviving records are then compacted in source order, which makes the output independent of
// thread timing. A shard is committed by writing .bin, .labels and finally .json atomically.
// Splits are packed one after the other, each into its own folder with its own dataset.json
// (version 2: the folder holds exactly the split it records).
#include "data/packer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "data/atomic_file.h"
#include "data/image_codec.h"
#include "data/idx_dataset.h"
#include "data/image_folder_dataset.h"
#include "data/packed_dataset.h"

namespace vdm {

namespace fs = std::filesystem;

PackSummary pack_dataset(const PackOptions& o, const std::function<void(const PackProgress&)>& progress) {
  if (o.source.format == "packed") throw std::runtime_error("vdm pack reads idx or imagefolder data, not packed");
  if (o.shard_size < 1 || o.threads < 1) throw std::runtime_error("pack: shard size and threads must be >= 1");
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  DatasetPtr source;
  std::vector<std::string> classes;
  if (o.source.format == "imagefolder") {
    auto folder = std::make_shared<ImageFolderDataset>(o.source, o.filter);
    classes = folder->classes();
    source = folder;
  } else {
    source = open_dataset(o.source);
  }
  fs::create_directories(o.out);
  const int64_t N = source->size(), bytes = source->sample_bytes();
  const int64_t num_shards = (N + o.shard_size - 1) / o.shard_size;

  PackSummary summary;
  PackProgress state{0, N, 0, 0, {}};
  nlohmann::json shard_list = nlohmann::json::array();
  for (int64_t k = 0; k < num_shards; ++k) {
    const int64_t first = k * o.shard_size, count = std::min(o.shard_size, N - first);
    const std::string name = shard_name(k);
    PackedShardInfo info;
    if (read_shard_json(o.out, name, info) && info.resolution == source->resolution() &&
        info.channels == source->channels() && info.first_source == first &&
        fs::exists(fs::path(o.out) / (name + ".bin")) &&
        fs::file_size(fs::path(o.out) / (name + ".bin")) == uint64_t(info.count * bytes)) {
      ++summary.reused_shards;
    } else {
      std::vector<uint8_t> records(size_t(count * bytes));
      std::vector<int64_t> labels(static_cast<size_t>(count));
      std::vector<char> ok(size_t(count), 0);
      std::atomic<int64_t> next{0}, done{0}, bad{0};
      std::atomic<bool> failed{false};
      std::string failure;
      std::mutex failure_mutex;
      auto worker = [&] {
        for (int64_t i; !failed && (i = next++) < count;) {
          try {
            source->read(first + i, records.data() + i * bytes);
            labels[i] = source->label(first + i);
            ok[i] = 1;
          } catch (const ImageError& e) {
            if (o.source.on_error == "fail") {
              std::lock_guard<std::mutex> lock(failure_mutex);
              failure = e.what();
              failed = true;
            } else {
              spdlog::warn("skipping unreadable sample: {}", e.what());
              ++bad;
            }
          }
          ++done;
        }
      };
      std::vector<std::thread> pool;
      for (int64_t t = 0; t < o.threads; ++t) pool.emplace_back(worker);
      while (done < count && !failed) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (progress) progress({state.done + done, N, state.skipped + bad, elapsed(), {}});
      }
      for (auto& t : pool) t.join();
      if (failed)
        throw std::runtime_error("pack: " + failure + " (data.on_error=fail; use skip to leave such files out)");
      int64_t kept = 0;
      for (int64_t i = 0; i < count; ++i) {
        if (!ok[i]) continue;
        if (kept != i) std::memmove(records.data() + kept * bytes, records.data() + i * bytes, size_t(bytes));
        labels[kept++] = labels[i];
      }
      info = {name, source->resolution(), source->channels(), kept, first, count - kept};
      write_file_atomically((fs::path(o.out) / (name + ".bin")).string(), records.data(), size_t(kept * bytes));
      write_file_atomically((fs::path(o.out) / (name + ".labels")).string(), labels.data(), size_t(kept * 8));
      write_file_atomically((fs::path(o.out) / (name + ".json")).string(), shard_json(info));
    }
    summary.images += info.count;
    summary.skipped += info.skipped;
    summary.bytes += info.count * (bytes + 8);
    ++summary.shards;
    state.done += count;
    state.skipped += info.skipped;
    shard_list.push_back({{"name", name}, {"count", info.count}});
    if (progress) progress({state.done, N, state.skipped, elapsed(), {}});
  }
  int64_t num_classes = int64_t(classes.size());
  if (num_classes == 0) num_classes = source->num_classes();
  nlohmann::json index{{"format", "vdm-packed"},
                       {"version", 2},
                       {"resolution", source->resolution()},
                       {"channels", source->channels()},
                       {"num_classes", num_classes},
                       {"classes", classes},
                       {"count", summary.images},
                       {"skipped", summary.skipped},
                       // absolute, as it goes into the vdm pack command of missing-split errors
                       {"source", fs::absolute(o.source.path).lexically_normal().string()},
                       {"source_format", o.source.format},
                       {"split", o.as_split.empty() ? o.source.split : o.as_split},
                       {"source_split", o.source.split},
                       {"shard_size", o.shard_size},
                       {"shards", shard_list}};
  write_file_atomically((fs::path(o.out) / "dataset.json").string(), index.dump(2));
  summary.seconds = elapsed();
  return summary;
}

std::vector<std::string> source_splits(const DataOptions& source) {
  if (source.format == "idx") return idx_splits(source.path);
  auto splits = image_folder_splits(source.path);
  if (splits.empty()) splits.push_back("train");  // a plain root/<class>/<images> layout
  return splits;
}

std::vector<std::string> resolve_pack_splits(const PackOptions& o) {
  if (o.source.format != "idx" && o.source.format != "imagefolder")
    throw std::runtime_error("vdm pack reads idx or imagefolder data, not " + o.source.format);
  std::vector<std::string> splits;
  for (const auto& s : o.splits.empty() ? source_splits(o.source) : o.splits)
    if (std::find(splits.begin(), splits.end(), s) == splits.end()) splits.push_back(s);
  if (splits.empty())
    throw std::runtime_error(o.source.path + " holds no idx split (train-images-idx3-ubyte[.gz] or "
                             "t10k-images-idx3-ubyte[.gz]); point it at the folder of idx files");
  if (!o.as_split.empty() && splits.size() != 1)
    throw std::runtime_error("--as-split packs one split, but " + o.source.path + " has " +
                             std::to_string(splits.size()) + "; choose it with --split");
  // The same checks (and messages) as opening each split, before hours go into the first one.
  for (const auto& s : splits) {
    if (o.source.format == "idx") {
      idx_split_files(o.source.path, s);
      continue;
    }
    try {
      image_folder_split_root(o.source.path, s);
    } catch (const std::runtime_error& e) {
      // A plain folder may well be a held-out set kept apart from the training one.
      if (!image_folder_splits(o.source.path).empty()) throw;
      throw std::runtime_error(std::string(e.what()) + "; or, to pack this folder as split '" + s +
                               "', use --as-split " + s + " instead of --split " + s);
    }
  }
  return splits;
}

std::vector<SplitPackSummary> pack_splits(const PackOptions& o, const std::function<void(const PackProgress&)>& progress,
                                          const std::function<void(const SplitPackSummary&)>& on_split) {
  const auto splits = resolve_pack_splits(o);
  std::vector<SplitPackSummary> out;
  for (const auto& s : splits) {
    PackOptions one = o;
    one.source.split = s;
    const std::string name = o.as_split.empty() ? s : o.as_split;
    one.out = (fs::path(o.out) / name).string();
    auto report = [&](const PackProgress& p) {
      PackProgress named = p;
      named.split = name;
      progress(named);
    };
    SplitPackSummary summary{name, one.out, {}};
    if (progress)
      summary.summary = pack_dataset(one, report);
    else
      summary.summary = pack_dataset(one);
    if (on_split) on_split(summary);
    out.push_back(summary);
  }
  return out;
}

}  // namespace vdm
