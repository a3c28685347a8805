// TensorBoard event files (training/tensorboard_log.h) read back by a reader written here from the
// TFRecord format (both CRCs checked), with the Event messages protoc generated; CRC-32C against
// published test vectors; MetricsLog's records and sample grid reaching the events file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/image_codec.h"
#include "training/crc32c.h"
#include "training/metrics_log.h"
#include "training/tensorboard_log.h"

#if VDM_WITH_TENSORBOARD
#include "proto/tensorboard_event.pb.h"
#endif

namespace fs = std::filesystem;

namespace vdm {
namespace {

// Without test_support.h, which would bring LibTorch into this file.
struct TbTempDir {
  fs::path path;
  TbTempDir() {
    std::string pattern = (fs::temp_directory_path() / "vdm_tb_test_XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed in " + pattern);
    path = pattern;
  }
  ~TbTempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  return out;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> small_png(int width, int height, int channels) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  image.pixels.resize(size_t(width) * height * channels);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = uint8_t(i * 37);
  return encode_png(image);
}

TEST(Crc32c, PublishedTestVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  // RFC 3720 (iSCSI), appendix B.4: 32 bytes of zeros, of ones.
  const std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // Continued over pieces, the same as at once.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
  // The mask of TFRecord: rotate right by 15, add a constant.
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8u);
  EXPECT_EQ(mask_crc32c(0x00008000u), 0xa282ead8u + 1u);
}

TEST(TensorBoardLog, DisabledWritesNothing) {
  TbTempDir tmp;
  TensorBoardLog log((tmp.path / "tb").string(), /*enabled=*/false, 0);
  EXPECT_FALSE(log.active());
  EXPECT_EQ(log.path(), "");
  log.add_scalars(1, nlohmann::json{{"loss", 1.0}}, "train");
  log.add_png("samples", 1, small_png(4, 4, 1));
  log.flush();
  EXPECT_FALSE(fs::exists(tmp.path / "tb"));
}

#if VDM_WITH_TENSORBOARD

// The TFRecord framing, written here from the format's description rather than shared with the
// writer: uint64 length, masked CRC-32C of those 8 bytes, the data, masked CRC-32C of the data.
std::vector<tensorboard::Event> read_events(const fs::path& path) {
  const std::string bytes = read_bytes(path);
  auto le = [&](size_t at, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(uint8_t(bytes[at + i])) << (8 * i);
    return v;
  };
  std::vector<tensorboard::Event> events;
  size_t at = 0;
  while (at < bytes.size()) {
    if (at + 12 > bytes.size()) throw std::runtime_error("torn record header");
    const uint64_t length = le(at, 8);
    if (uint32_t(le(at + 8, 4)) != mask_crc32c(crc32c(bytes.data() + at, 8)))
      throw std::runtime_error("bad length CRC at byte " + std::to_string(at));
    if (at + 12 + length + 4 > bytes.size()) throw std::runtime_error("torn record");
    const std::string data = bytes.substr(at + 12, length);
    if (uint32_t(le(at + 12 + length, 4)) != mask_crc32c(crc32c(data.data(), data.size())))
      throw std::runtime_error("bad data CRC at byte " + std::to_string(at));
    tensorboard::Event event;
    if (!event.ParseFromString(data)) throw std::runtime_error("not an Event");
    events.push_back(event);
    at += 12 + length + 4;
  }
  return events;
}

std::map<std::string, float> scalars_of(const tensorboard::Event& event) {
  std::map<std::string, float> out;
  for (const auto& v : event.summary().value())
    if (v.value_case() == tensorboard::Summary::Value::kSimpleValue) out[v.tag()] = v.simple_value();
  return out;
}

TEST(TensorBoardLog, ScalarsAndImageReadBack) {
  TbTempDir tmp;
  const fs::path dir = tmp.path / "tb";
  const auto png = small_png(6, 5, 3);
  std::string path;
  {
    TensorBoardLog log(dir.string(), /*enabled=*/true, /*start_step=*/11);
    ASSERT_TRUE(log.active());
    path = log.path();
    log.add_scalars(20, nlohmann::json{{"step", 20}, {"epoch", 1}, {"loss", 1.5}, {"bpd", 3.25},
                                       {"skipped_steps", 2}, {"weights", "ema"}, {"monotone", true},
                                       {"terms", {{"prior", 0.125}}}},
                    "train");
    log.add_scalars(30, std::map<std::string, double>{{"eval/fid", 12.5}});
    ASSERT_TRUE(log.add_png("samples", 30, png));
    EXPECT_FALSE(log.add_png("not_png", 30, std::vector<uint8_t>{1, 2, 3}));
    // Flushed by each add_*: readable before the log is closed.
    EXPECT_EQ(read_events(path).size(), 5u);
  }
  const auto files = files_in(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].string(), path);
  const std::string name = files[0].filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(".vdm"), std::string::npos) << name;

  const auto events = read_events(files[0]);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_GT(events[0].wall_time(), 1.6e9);  // seconds since 1970, not 0
  EXPECT_EQ(events[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(events[1].step(), 11);

  EXPECT_EQ(events[2].step(), 20);
  const std::map<std::string, float> want{
      {"train/loss", 1.5f}, {"train/bpd", 3.25f}, {"train/skipped_steps", 2.0f}, {"train/terms/prior", 0.125f}};
  EXPECT_EQ(scalars_of(events[2]), want);  // no step, epoch, string or boolean

  EXPECT_EQ(events[3].step(), 30);
  EXPECT_EQ(scalars_of(events[3]), (std::map<std::string, float>{{"eval/fid", 12.5f}}));

  EXPECT_EQ(events[4].step(), 30);
  ASSERT_EQ(events[4].summary().value_size(), 1);
  const auto& value = events[4].summary().value(0);
  EXPECT_EQ(value.tag(), "samples");
  ASSERT_TRUE(value.has_image());
  EXPECT_EQ(value.image().width(), 6);
  EXPECT_EQ(value.image().height(), 5);
  EXPECT_EQ(value.image().colorspace(), 3);
  EXPECT_EQ(value.image().encoded_image_string(), std::string(png.begin(), png.end()));
}

TEST(TensorBoardLog, NoSessionStartUnlessAsked) {
  TbTempDir tmp;
  TensorBoardLog log((tmp.path / "tb").string(), true);
  log.add_scalars(1, nlohmann::json{{"loss", 1.0}}, "");
  const auto events = read_events(log.path());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].what_case(), tensorboard::Event::kSummary);
  EXPECT_EQ(scalars_of(events[1]), (std::map<std::string, float>{{"loss", 1.0f}}));
}

// Two logs of one process in one second: two files, neither appended to the other.
TEST(TensorBoardLog, SecondLogGetsItsOwnFile) {
  TbTempDir tmp;
  TensorBoardLog a((tmp.path / "tb").string(), true), b((tmp.path / "tb").string(), true);
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(files_in(tmp.path / "tb").size(), 2u);
  EXPECT_EQ(read_events(a.path()).size(), 1u);
  EXPECT_EQ(read_events(b.path()).size(), 1u);
}

// The hook the trainer uses: metrics.jsonl and eval.jsonl records, and eval's sample grid.
TEST(TensorBoardLog, MetricsLogRecordsReachTheEventsFile) {
  TbTempDir tmp;
  const auto png = small_png(8, 8, 1);
  const fs::path grid = tmp.path / "step_00000004.png";
  {
    std::ofstream(grid, std::ios::binary).write(reinterpret_cast<const char*>(png.data()), png.size());
  }
  auto tb = std::make_shared<TensorBoardLog>((tmp.path / "tb").string(), true, 0);
  {
    MetricsLog train((tmp.path / "metrics.jsonl").string(), true, -1, tb, "train");
    MetricsLog eval((tmp.path / "eval.jsonl").string(), true, -1, tb, "eval");
    train.write({{"step", 2}, {"epoch", 0}, {"loss", 0.5}, {"lr", 1e-3}});
    eval.write({{"step", 4}, {"bpd", 4.5}, {"samples", grid.string()}, {"weights", "ema"}});
  }
  const auto events = read_events(tb->path());
  ASSERT_EQ(events.size(), 5u);  // version, START, train scalars, eval scalars, image
  EXPECT_EQ(events[2].step(), 2);
  EXPECT_EQ(scalars_of(events[2]), (std::map<std::string, float>{{"train/loss", 0.5f}, {"train/lr", 1e-3f}}));
  EXPECT_EQ(events[3].step(), 4);
  EXPECT_EQ(scalars_of(events[3]), (std::map<std::string, float>{{"eval/bpd", 4.5f}}));
  EXPECT_EQ(events[4].step(), 4);
  const auto& value = events[4].summary().value(0);
  EXPECT_EQ(value.tag(), "samples");
  EXPECT_EQ(value.image().colorspace(), 1);
  EXPECT_EQ(value.image().encoded_image_string(), read_bytes(grid));
  // The JSON lines are written as before.
  EXPECT_NE(read_bytes(tmp.path / "metrics.jsonl").find("\"loss\":0.5"), std::string::npos);
}

// A reader that checks the CRCs must be able to fail: one flipped bit in the data is caught.
TEST(TensorBoardLog, ReaderCatchesACorruptRecord) {
  TbTempDir tmp;
  std::string path;
  {
    TensorBoardLog log((tmp.path / "tb").string(), true);
    log.add_scalars(1, nlohmann::json{{"loss", 1.0}}, "train");
    path = log.path();
  }
  std::string bytes = read_bytes(path);
  bytes[bytes.size() - 6] ^= 0x10;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THROW(read_events(path), std::runtime_error);
}

#else

TEST(TensorBoardLog, NotBuiltInWritesNothing) {
  TbTempDir tmp;
  EXPECT_FALSE(TensorBoardLog::built_in());
  TensorBoardLog log((tmp.path / "tb").string(), true, 0);
  EXPECT_FALSE(log.active());
  log.add_scalars(1, nlohmann::json{{"loss", 1.0}}, "train");
  EXPECT_TRUE(files_in(tmp.path / "tb").empty());
}

#endif

}  // namespace
}  // namespace vdm
