// TensorBoard event files (see tensorboard_log.h): Event messages compiled from
// proto/tensorboard_event.proto, framed as TFRecords with CRC-32C.
#include "training/tensorboard_log.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <unistd.h>

#include "training/crc32c.h"

#if VDM_WITH_TENSORBOARD
#include "proto/tensorboard_event.pb.h"
#endif

namespace vdm {

namespace {

void flatten(const nlohmann::json& object, const std::string& prefix, bool top, std::map<std::string, double>& out) {
  for (const auto& [key, value] : object.items()) {
    if (top && (key == "step" || key == "epoch")) continue;
    const std::string tag = prefix.empty() ? key : prefix + "/" + key;
    if (value.is_number()) out[tag] = value.get<double>();  // is_number() excludes booleans
    else if (value.is_object()) flatten(value, tag, false, out);
  }
}

// PNG: 8-byte signature, then IHDR first: length, "IHDR", width, height (big-endian), bit
// depth, colour type.
bool png_header(const std::vector<uint8_t>& png, int& width, int& height, int& channels) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (png.size() < 26 || std::memcmp(png.data(), kSignature, 8) != 0 || std::memcmp(png.data() + 12, "IHDR", 4) != 0)
    return false;
  auto be32 = [&](size_t at) {
    return int((uint32_t(png[at]) << 24) | (uint32_t(png[at + 1]) << 16) | (uint32_t(png[at + 2]) << 8) | png[at + 3]);
  };
  width = be32(16);
  height = be32(20);
  switch (png[25]) {
    case 0: channels = 1; break;  // gray
    case 2: channels = 3; break;  // RGB
    case 3: channels = 3; break;  // palette: decoded as RGB
    case 4: channels = 2; break;  // gray + alpha
    case 6: channels = 4; break;  // RGBA
    default: return false;
  }
  return true;
}

}  // namespace

#if VDM_WITH_TENSORBOARD

// The file is a sequence of TFRecords, each one serialized tensorboard.Event:
//
//   uint64  length of the data, little-endian
//   uint32  masked CRC-32C of those 8 length bytes
//   bytes   data (length bytes)
//   uint32  masked CRC-32C of the data
//
// with mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (crc32c.h). The first event holds
// only file_version "brain.Event:2", which tells readers the format of the rest. A reader
// stops at a record whose length or CRCs do not check out, so a record torn by a crash costs
// that record alone.
struct TensorBoardLog::Impl {
  std::string path;
  std::FILE* file = nullptr;
  bool write_failed = false;

  ~Impl() {
    if (file) std::fclose(file);
  }

  static void put_le(std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(char((v >> (8 * i)) & 0xFF));
  }

  void write(tensorboard::Event& event) {
    event.set_wall_time(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    std::string data;
    event.SerializeToString(&data);
    std::string record;
    record.reserve(data.size() + 16);
    put_le(record, data.size(), 8);
    put_le(record, mask_crc32c(crc32c(record.data(), 8)), 4);
    record += data;
    put_le(record, mask_crc32c(crc32c(data.data(), data.size())), 4);
    const bool ok = std::fwrite(record.data(), 1, record.size(), file) == record.size() && std::fflush(file) == 0;
    // A full disk should not end a training run over its plots: say it once and go on.
    if (!ok && !write_failed) {
      write_failed = true;
      spdlog::warn("tensorboard: cannot write {}: {}", path, std::strerror(errno));
    }
  }
};

bool TensorBoardLog::built_in() { return true; }

TensorBoardLog::TensorBoardLog(const std::string& dir, bool enabled, int64_t start_step) {
  if (!enabled) return;
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || !host[0]) std::strcpy(host, "localhost");
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string base = (fs::path(dir) / ("events.out.tfevents." + std::to_string(seconds) + "." + host + "." +
                                             std::to_string(getpid()) + ".vdm")).string();
  auto impl = std::make_unique<Impl>();
  // "x": never append to another writer's file (two logs of one process in one second).
  for (int n = 0; !impl->file && n < 100; ++n) {
    impl->path = n == 0 ? base : base + "." + std::to_string(n);
    impl->file = std::fopen(impl->path.c_str(), "wbx");
    if (!impl->file && errno != EEXIST) break;
  }
  if (!impl->file) throw std::runtime_error("cannot create " + impl->path + ": " + std::strerror(errno));
  tensorboard::Event version;
  version.set_file_version("brain.Event:2");
  impl->write(version);
  if (start_step >= 0) {
    tensorboard::Event start;
    start.set_step(start_step);
    start.mutable_session_log()->set_status(tensorboard::SessionLog::START);
    impl->write(start);
  }
  impl_ = std::move(impl);
}

void TensorBoardLog::add_scalars(int64_t step, const std::map<std::string, double>& values) {
  if (!impl_ || values.empty()) return;
  tensorboard::Event event;
  event.set_step(step);
  auto* summary = event.mutable_summary();
  for (const auto& [tag, value] : values) {
    auto* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(float(value));
  }
  impl_->write(event);
}

void TensorBoardLog::add_image(const std::string& tag, int64_t step, const std::vector<uint8_t>& png, int height,
                               int width, int channels) {
  if (!impl_) return;
  tensorboard::Event event;
  event.set_step(step);
  auto* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  auto* image = v->mutable_image();
  image->set_height(height);
  image->set_width(width);
  image->set_colorspace(channels);
  image->set_encoded_image_string(png.data(), png.size());
  impl_->write(event);
}

#else  // !VDM_WITH_TENSORBOARD

struct TensorBoardLog::Impl {
  std::string path;
};

bool TensorBoardLog::built_in() { return false; }

TensorBoardLog::TensorBoardLog(const std::string&, bool enabled, int64_t) {
  // Once per process: a run without RUN/tb/ should not look like a bug.
  static std::atomic<bool> said{false};
  if (enabled && !said.exchange(true))
    spdlog::info("tensorboard: not built in (no protobuf when vdm was built: VDM_WITH_TENSORBOARD=OFF); "
                 "no RUN/tb/ files are written");
}

void TensorBoardLog::add_scalars(int64_t, const std::map<std::string, double>&) {}

void TensorBoardLog::add_image(const std::string&, int64_t, const std::vector<uint8_t>&, int, int, int) {}

#endif

TensorBoardLog::~TensorBoardLog() = default;

bool TensorBoardLog::active() const { return impl_ != nullptr; }

std::string TensorBoardLog::path() const { return impl_ ? impl_->path : std::string(); }

void TensorBoardLog::add_scalars(int64_t step, const nlohmann::json& record, const std::string& prefix) {
  if (!impl_ || !record.is_object()) return;
  std::map<std::string, double> values;
  flatten(record, prefix, /*top=*/true, values);
  add_scalars(step, values);
}

bool TensorBoardLog::add_png(const std::string& tag, int64_t step, const std::vector<uint8_t>& png) {
  int width = 0, height = 0, channels = 0;
  if (!png_header(png, width, height, channels)) return false;
  add_image(tag, step, png, height, width, channels);
  return true;
}

void TensorBoardLog::flush() {
#if VDM_WITH_TENSORBOARD
  if (impl_) std::fflush(impl_->file);
#endif
}

}  // namespace vdm
