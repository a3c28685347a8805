// Checkpoint folders with manifests (see checkpoint_store.h): the commit protocol, CRC32
// verification with a reason per failure, retention, and the crash-injection test hook.
#include "training/checkpoint_store.h"

#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "data/atomic_file.h"

namespace vdm {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kManifest = "manifest.json";
constexpr const char* kLatest = "latest";

bool plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name != kManifest &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

std::string crc_hex(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

// Only canonical names ("step_" + at least 8 digits, as folder_name writes them) count, so a
// stray "step_1" or "step_00000001.bak" is never mistaken for a checkpoint.
std::optional<int64_t> parse_folder_name(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() < 13 || name.size() > 23) return std::nullopt;
  if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const int64_t step = std::stoll(name.substr(5));
  if (CheckpointStore::folder_name(step) != name) return std::nullopt;
  return step;
}

bool is_temporary(const std::string& name) {
  return name.size() > 10 && name.rfind(".step_", 0) == 0 &&
         name.compare(name.size() - 4, 4, ".tmp") == 0;
}

void fault_point(const char* where) {
  const char* fault = std::getenv("VDM_FAULT_CHECKPOINT");
  if (fault != nullptr && std::strcmp(fault, where) == 0) std::raise(SIGKILL);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Moves the finished tmp folder to its final name. A checkpoint of the same step that already
// exists is swapped out atomically (RENAME_EXCHANGE), so step_X is never absent, and deleted
// only after the swap is durable. Filesystems without the exchange fall back to moving the old
// one aside first: step_X is briefly absent, but older checkpoints remain to fall back on.
void move_into_place(const fs::path& tmp, const fs::path& final_path, const fs::path& dir) {
  if (!fs::exists(final_path)) {
    fs::rename(tmp, final_path);
    return;
  }
#ifdef RENAME_EXCHANGE
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0) {
    sync_directory(dir.string());
    fs::remove_all(tmp);  // now holds the replaced checkpoint
    return;
  }
#endif
  fs::path aside = tmp;
  aside.replace_filename("." + final_path.filename().string() + ".replaced.tmp");
  fs::remove_all(aside);
  fs::rename(final_path, aside);
  fs::rename(tmp, final_path);
  sync_directory(dir.string());
  fs::remove_all(aside);
}

}  // namespace

std::string CheckpointStore::folder_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

CheckpointStore::CheckpointStore(CheckpointStoreOptions options) : options_(std::move(options)) {
  if (options_.dir.empty()) throw CheckpointError("checkpoint store: no folder given");
  if (options_.keep_last < 1)
    throw CheckpointError("checkpoint store: keep_last must be >= 1, got " +
                          std::to_string(options_.keep_last));
  if (options_.keep_every < 0)
    throw CheckpointError("checkpoint store: keep_every must be >= 0, got " +
                          std::to_string(options_.keep_every));
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec) throw CheckpointError("cannot create checkpoint folder " + options_.dir + ": " + ec.message());
}

// The commit protocol. A checkpoint is complete exactly when its folder step_XXXXXXXX exists
// with a manifest.json inside; list() looks at nothing else. Everything is first written under a
// hidden temporary name that list() ignores, so a crash at any point leaves either the old set
// of checkpoints or the old set plus the new one, never a half-written step_XXXXXXXX.
// - The manifest is written last, after every data file is fsynced: its presence (even in the
//   tmp folder) then means all the bytes it describes are on disk, and its sizes and CRC32s
//   catch what the filesystem still gets wrong (truncation after a power loss, bit rot, copies).
// - Folders are fsynced because fsync of a file does not make its directory entry durable: a
//   rename or a new file can vanish after a power loss unless its parent folder is synced too.
//   The tmp folder is synced before the rename, DIR after it and before `latest` is written.
// - `latest` is only a hint for people and scripts (and keeps prune() from deleting what it
//   names). It is written after the rename and may be stale or name a corrupt checkpoint, so
//   load_latest_valid() scans list() and verifies instead of trusting it.
std::string CheckpointStore::write(int64_t step, const std::map<std::string, std::string>& files) {
  if (step < 0) throw CheckpointError("checkpoint step must be >= 0, got " + std::to_string(step));
  for (const auto& [name, bytes] : files)
    if (!plain_name(name))
      throw CheckpointError("bad checkpoint file name '" + name +
                            "': must be a plain file name (no '/') other than manifest.json");
  const fs::path dir(options_.dir);
  const fs::path final_path = dir / folder_name(step);
  const fs::path tmp = dir / ("." + folder_name(step) + ".tmp");
  try {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    json entries = json::array();
    for (const auto& [name, bytes] : files) {
      write_file_atomically((tmp / name).string(), bytes);  // fsyncs the file and tmp
      const uint32_t crc = crc32_z(0L, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
      entries.push_back({{"name", name}, {"size", bytes.size()}, {"crc32", crc_hex(crc)}});
    }
    fault_point("before_manifest");
    const json manifest = {{"format_version", kFormatVersion}, {"step", step}, {"files", entries}};
    write_file_atomically((tmp / kManifest).string(), manifest.dump(2) + "\n");
    sync_directory(tmp.string());
    fault_point("before_rename");
    move_into_place(tmp, final_path, dir);
    sync_directory(dir.string());
    write_file_atomically((dir / kLatest).string(), folder_name(step) + "\n");
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw CheckpointError("cannot write checkpoint " + final_path.string() + ": " + e.what());
  }
  prune();
  return final_path.string();
}

std::vector<CheckpointInfo> CheckpointStore::list() const {
  std::vector<CheckpointInfo> found;
  std::error_code ec;
  for (fs::directory_iterator it(options_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto step = parse_folder_name(it->path().filename().string());
    std::error_code ec2;
    if (step && fs::is_directory(it->path(), ec2) && fs::exists(it->path() / kManifest, ec2))
      found.push_back({*step, it->path().string()});
  }
  std::sort(found.begin(), found.end(),
            [](const CheckpointInfo& a, const CheckpointInfo& b) { return a.step < b.step; });
  return found;
}

std::string CheckpointStore::check(const std::string& dir, LoadedCheckpoint* out) const {
  const fs::path folder(dir);
  std::error_code ec;
  if (!fs::is_regular_file(folder / kManifest, ec)) return std::string(kManifest) + ": missing";
  const json manifest = json::parse(read_text(folder / kManifest), nullptr, false);
  if (manifest.is_discarded()) return std::string(kManifest) + ": not valid JSON";

  LoadedCheckpoint loaded;
  loaded.path = dir;
  struct Entry { std::string name; uint64_t size; std::string crc; };
  std::vector<Entry> entries;
  try {
    if (manifest.at("format_version").get<int>() != kFormatVersion)
      return std::string(kManifest) + ": unknown format_version " + manifest.at("format_version").dump();
    loaded.step = manifest.at("step").get<int64_t>();
    for (const json& e : manifest.at("files"))
      entries.push_back({e.at("name").get<std::string>(), e.at("size").get<uint64_t>(),
                         e.at("crc32").get<std::string>()});
  } catch (const json::exception& e) {
    return std::string(kManifest) + ": malformed (" + e.what() + ")";
  }
  const auto folder_step = parse_folder_name(folder.filename().string());
  if (folder_step && *folder_step != loaded.step)
    return std::string(kManifest) + ": step " + std::to_string(loaded.step) +
           " does not match the folder name";

  std::vector<char> buffer(1 << 20);
  for (const Entry& entry : entries) {
    // A crafted name like "../x" must not make us read outside the checkpoint.
    if (!plain_name(entry.name)) return std::string(kManifest) + ": bad file name '" + entry.name + "'";
    const fs::path path = folder / entry.name;
    if (!fs::is_regular_file(path, ec)) return entry.name + ": missing";
    const uint64_t size = fs::file_size(path, ec);
    if (ec) return entry.name + ": cannot stat (" + ec.message() + ")";
    if (size != entry.size)
      return entry.name + ": size " + std::to_string(size) + ", manifest says " +
             std::to_string(entry.size) + (size < entry.size ? " (truncated)" : " (too long)");
    // Streamed, so verify() of a large checkpoint needs no memory for its bytes.
    std::ifstream in(path, std::ios::binary);
    std::string bytes;
    if (out != nullptr) bytes.reserve(size);
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    while (in.read(buffer.data(), std::streamsize(buffer.size())) || in.gcount() > 0) {
      const auto n = size_t(in.gcount());
      crc = crc32_z(crc, reinterpret_cast<const Bytef*>(buffer.data()), n);
      if (out != nullptr) bytes.append(buffer.data(), n);
      total += n;
    }
    if (total != size) return entry.name + ": read error after " + std::to_string(total) + " bytes";
    const std::string actual = crc_hex(uint32_t(crc));
    if (actual != entry.crc)
      return entry.name + ": checksum mismatch (manifest " + entry.crc + ", file " + actual + ")";
    if (out != nullptr) loaded.files[entry.name] = std::move(bytes);
  }
  if (out != nullptr) *out = std::move(loaded);
  return "";
}

std::string CheckpointStore::verify(const std::string& path) const { return check(path, nullptr); }

LoadedCheckpoint CheckpointStore::load(const std::string& path) const {
  LoadedCheckpoint loaded;
  const std::string reason = check(path, &loaded);
  if (!reason.empty()) throw CheckpointError(path + ": " + reason);
  return loaded;
}

std::optional<LoadedCheckpoint> CheckpointStore::load_latest_valid(
    std::vector<std::string>* problems) const {
  const auto all = list();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    LoadedCheckpoint loaded;
    const std::string reason = check(it->path, &loaded);
    if (reason.empty()) return loaded;
    spdlog::warn("checkpoint {} is corrupt ({}); using an older one", it->path, reason);
    if (problems != nullptr) problems->push_back(it->path + ": " + reason);
  }
  return std::nullopt;
}

void CheckpointStore::prune() {
  const auto all = list();
  std::string named = read_text(fs::path(options_.dir) / kLatest);
  while (!named.empty() && std::isspace(static_cast<unsigned char>(named.back()))) named.pop_back();
  const size_t first_kept = all.size() > size_t(options_.keep_last) ? all.size() - size_t(options_.keep_last) : 0;
  for (size_t i = 0; i < first_kept; ++i) {
    const CheckpointInfo& c = all[i];
    if ((options_.keep_every > 0 && c.step % options_.keep_every == 0) || folder_name(c.step) == named)
      continue;
    // Renamed out of list()'s sight first, so a crash mid-delete cannot leave a half-deleted
    // folder that still looks complete; remove_stale_temporaries() finishes the job.
    const fs::path doomed = fs::path(options_.dir) / ("." + folder_name(c.step) + ".deleted.tmp");
    std::error_code ec;
    fs::remove_all(doomed, ec);
    fs::rename(c.path, doomed, ec);
    if (!ec) fs::remove_all(doomed, ec);
    if (ec) spdlog::warn("cannot remove old checkpoint {}: {}", c.path, ec.message());
  }
}

int64_t CheckpointStore::remove_stale_temporaries() {
  std::vector<fs::path> stale;
  std::error_code ec;
  for (fs::directory_iterator it(options_.dir, ec), end; !ec && it != end; it.increment(ec))
    if (is_temporary(it->path().filename().string())) stale.push_back(it->path());
  int64_t removed = 0;
  for (const fs::path& path : stale) {
    fs::remove_all(path, ec);
    if (ec) spdlog::warn("cannot remove stale checkpoint temporary {}: {}", path.string(), ec.message());
    else ++removed;
  }
  return removed;
}

}  // namespace vdm
