// Held-out splits that are really held out: `pack_splits` writes one shard set per split
// (DIR/<split>), the packed, image-folder and idx datasets open exactly the split asked for, and
// a split the data lacks is an error naming the folder or files and the fix, never the training
// images. Data are small real files the tests write (PNG and JPEG, idx).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/idx_dataset.h"
#include "data/image_codec.h"
#include "data/image_folder_dataset.h"
#include "data/packed_dataset.h"
#include "data/packer.h"
#include "tests/test_support.h"

// A named namespace: the unity build puts this file beside test_datasets.cpp's helpers.
namespace vdm::split_tests {

namespace fs = std::filesystem;

// A w x h RGB image whose pixels depend on seed, so every file of every split differs.
Image split_pattern(int w, int h, int seed) {
  Image im;
  im.width = w;
  im.height = h;
  im.channels = 3;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) im.pixels.push_back(uint8_t((x * 5 + y * 11 + c * 70 + seed * 37) % 256));
  return im;
}

// root/<split>/<class>/<n images>, PNG and JPEG alternately; seeds offset by split so that the
// splits hold different pixels.
void write_split(const fs::path& root, const std::string& split, int per_class, int seed_base) {
  int seed = seed_base;
  for (const char* cls : {"cat", "dog", "fox"}) {
    const auto dir = split.empty() ? root / cls : root / split / cls;
    fs::create_directories(dir);
    for (int i = 0; i < per_class; ++i, ++seed) {
      const auto img = split_pattern(24 + i, 20, seed);
      if (i % 2)
        write_file((dir / (std::to_string(i) + ".jpg")).string(), encode_jpeg(img, 95));
      else
        write_file((dir / (std::to_string(i) + ".png")).string(), encode_png(img));
    }
  }
}

void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

// n idx images of r x r, pixel p of image i = (i * 13 + p + offset) mod 256; label (i + offset) mod 4.
void write_idx_split(const fs::path& dir, const std::string& prefix, int n, int r, int offset) {
  std::vector<uint8_t> img, lab;
  put_be32(img, 0x803);
  put_be32(img, uint32_t(n));
  put_be32(img, uint32_t(r));
  put_be32(img, uint32_t(r));
  put_be32(lab, 0x801);
  put_be32(lab, uint32_t(n));
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < r * r; ++p) img.push_back(uint8_t((i * 13 + p + offset) % 256));
    lab.push_back(uint8_t((i + offset) % 4));
  }
  std::ofstream(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(img.data()), std::streamsize(img.size()));
  std::ofstream(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(lab.data()), std::streamsize(lab.size()));
}

DataOptions options(const std::string& format, const fs::path& path, const std::string& split, int64_t r) {
  DataOptions o;
  o.format = format;
  o.path = path.string();
  o.split = split;
  o.resolution = r;
  return o;
}

// The message of the std::runtime_error that open_dataset throws ("" when it opens).
std::string open_error(const DataOptions& o) {
  try {
    open_dataset(o);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// Every sample of a equals the same sample of b, pixels and label.
void expect_same_samples(const Dataset& a, const Dataset& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.sample_bytes(), b.sample_bytes());
  std::vector<uint8_t> x(size_t(a.sample_bytes())), y(x.size());
  for (int64_t i = 0; i < a.size(); ++i) {
    a.read(i, x.data());
    b.read(i, y.data());
    EXPECT_EQ(x, y) << "sample " << i;
    EXPECT_EQ(a.label(i), b.label(i)) << "sample " << i;
  }
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << "'" << (part) << "' not in: " << (text)

TEST(PackSplits, ImageFolderTrainAndValEachInItsOwnFolder) {
  TempDir tmp;
  const auto src = tmp.path / "src", out = tmp.path / "packed";
  write_split(src, "train", 3, 0);  // 9 images
  write_split(src, "val", 2, 100);  // 6 images
  PackOptions p;
  p.source = options("imagefolder", src, "", 8);
  p.out = out.string();
  p.shard_size = 4;
  EXPECT_EQ(source_splits(p.source), (std::vector<std::string>{"train", "val"}));
  std::vector<std::string> done;
  const auto summaries = pack_splits(p, {}, [&](const SplitPackSummary& s) { done.push_back(s.split); });
  EXPECT_EQ(done, (std::vector<std::string>{"train", "val"}));
  ASSERT_EQ(summaries.size(), 2u);
  EXPECT_EQ(summaries[0].summary.images, 9);
  EXPECT_EQ(summaries[0].summary.shards, 3);
  EXPECT_EQ(summaries[0].dir, (out / "train").string());
  EXPECT_EQ(summaries[1].summary.images, 6);
  EXPECT_EQ(summaries[1].summary.shards, 2);
  for (const char* split : {"train", "val"}) {
    EXPECT_TRUE(fs::exists(out / split / "dataset.json")) << split;
    EXPECT_TRUE(fs::exists(out / split / "shard_00000.bin")) << split;
  }
  EXPECT_FALSE(fs::exists(out / "dataset.json"));  // nothing of any split directly in DIR
  EXPECT_EQ(packed_splits(out.string()), (std::vector<std::string>{"train", "val"}));

  // Each split opens its own images: the same pixels and labels as the folder it came from.
  for (const char* split : {"train", "val"}) {
    SCOPED_TRACE(split);
    auto packed = open_dataset(options("packed", out, split, 8));
    auto folder = open_dataset(options("imagefolder", src, split, 8));
    EXPECT_EQ(packed->size(), std::string(split) == "train" ? 9 : 6);
    EXPECT_EQ(packed->num_classes(), 3);
    expect_same_samples(*packed, *folder);
  }
  std::vector<uint8_t> a(192), b(192);
  open_dataset(options("packed", out, "train", 8))->read(0, a.data());
  open_dataset(options("packed", out, "val", 8))->read(0, b.data());
  EXPECT_NE(a, b);

  // A split the pack lacks: the path, the splits it has, and the command that adds it.
  const std::string e = open_error(options("packed", out, "test", 8));
  EXPECT_HAS(e, "no split 'test'");
  EXPECT_HAS(e, (out / "test").string() + " does not exist");
  EXPECT_HAS(e, "its splits: train, val");
  EXPECT_HAS(e, "vdm pack " + src.string() + " --split test --resolution 8 --out " + out.string());

  // A re-run finds every shard of every split complete; --split packs only the one named.
  for (const auto& s : pack_splits(p)) EXPECT_EQ(s.summary.reused_shards, s.summary.shards) << s.split;
  fs::remove(out / "val" / "shard_00001.json");
  p.splits = {"val"};
  const auto again = pack_splits(p);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].split, "val");
  EXPECT_EQ(again[0].summary.reused_shards, 1);
  EXPECT_EQ(again[0].summary.images, 6);
}

TEST(PackSplits, MissingSourceSplitFailsBeforePacking) {
  TempDir tmp;
  const auto src = tmp.path / "src", out = tmp.path / "packed";
  write_split(src, "train", 1, 0);
  write_split(src, "val", 1, 50);
  PackOptions p;
  p.source = options("imagefolder", src, "", 8);
  p.out = out.string();
  p.splits = {"train", "test"};
  try {
    pack_splits(p);
    FAIL() << "packed a split the source lacks";
  } catch (const std::runtime_error& e) {
    EXPECT_HAS(std::string(e.what()), (src / "test").string());
    EXPECT_HAS(std::string(e.what()), "train, val");
  }
  EXPECT_FALSE(fs::exists(out / "train"));  // checked before any split was packed
}

TEST(PackSplits, IdxTrainAndTest) {
  TempDir tmp;
  const auto src = tmp.path / "idx", out = tmp.path / "packed";
  fs::create_directories(src);
  write_idx_split(src, "train", 7, 4, 0);
  write_idx_split(src, "t10k", 3, 4, 200);
  PackOptions p;
  p.source = options("idx", src, "", 4);
  p.out = out.string();
  p.shard_size = 5;
  EXPECT_EQ(source_splits(p.source), (std::vector<std::string>{"train", "test"}));
  const auto summaries = pack_splits(p);
  ASSERT_EQ(summaries.size(), 2u);
  EXPECT_EQ(summaries[0].split, "train");
  EXPECT_EQ(summaries[0].summary.images, 7);
  EXPECT_EQ(summaries[0].summary.shards, 2);
  EXPECT_EQ(summaries[1].split, "test");
  EXPECT_EQ(summaries[1].summary.images, 3);
  for (const char* split : {"train", "test"}) {
    SCOPED_TRACE(split);
    auto packed = open_dataset(options("packed", out, split, 4));
    auto idx = open_dataset(options("idx", src, split, 4));
    EXPECT_EQ(packed->channels(), 1);
    expect_same_samples(*packed, *idx);
  }
  // The test split's first pixel is (0 + 0 + 200) mod 256: not a training image.
  std::vector<uint8_t> px(16);
  open_dataset(options("packed", out, "test", 4))->read(0, px.data());
  EXPECT_EQ(px[0], 200);
  EXPECT_EQ(open_dataset(options("packed", out, "test", 4))->label(0), 0);  // 200 mod 4

  const std::string e = open_error(options("packed", out, "val", 4));
  EXPECT_HAS(e, "no split 'val'");
  EXPECT_HAS(e, (out / "val").string());
  EXPECT_HAS(e, "its splits: train, test");
  EXPECT_HAS(e, "--split val");

  // Only the split asked for.
  const auto only = tmp.path / "only_test";
  p.out = only.string();
  p.splits = {"test"};
  ASSERT_EQ(pack_splits(p).size(), 1u);
  EXPECT_TRUE(fs::exists(only / "test" / "dataset.json"));
  EXPECT_FALSE(fs::exists(only / "train"));
  const std::string e2 = open_error(options("packed", only, "train", 4));
  EXPECT_HAS(e2, "no split 'train'");
  EXPECT_HAS(e2, "its splits: test");
  EXPECT_HAS(e2, "vdm pack " + src.string() + " --split train --resolution 4 --out " + only.string());
}

TEST(IdxSplits, OtherSplitNamesAndMissingFilesNameTheFiles) {
  TempDir tmp;
  write_idx_split(tmp.path, "train", 2, 4, 0);
  const std::string e = open_error(options("idx", tmp.path, "val", 4));
  EXPECT_HAS(e, "not 'val'");
  EXPECT_HAS(e, "train-images-idx3-ubyte");
  EXPECT_HAS(e, "t10k-images-idx3-ubyte");
  EXPECT_HAS(e, "t10k-labels-idx1-ubyte");
  const std::string e2 = open_error(options("idx", tmp.path, "test", 4));  // no t10k files here
  EXPECT_HAS(e2, "t10k-images-idx3-ubyte[.gz]");
  EXPECT_HAS(e2, "split 'test'");
  EXPECT_EQ(idx_splits(tmp.path.string()), std::vector<std::string>{"train"});
  PackOptions p;
  p.source = options("idx", tmp.path, "", 4);
  p.out = (tmp.path / "packed").string();
  p.splits = {"valid"};
  EXPECT_THROW(resolve_pack_splits(p), std::runtime_error);
}

TEST(ImageFolderSplits, MissingSplitIsAnErrorNotTheTrainingImages) {
  TempDir tmp;
  const auto root = tmp.path / "split_layout";
  write_split(root, "train", 2, 0);
  write_split(root, "val", 1, 30);
  EXPECT_EQ(image_folder_splits(root.string()), (std::vector<std::string>{"train", "val"}));
  EXPECT_EQ(open_dataset(options("imagefolder", root, "train", 8))->size(), 6);
  EXPECT_EQ(open_dataset(options("imagefolder", root, "val", 8))->size(), 3);
  const std::string e = open_error(options("imagefolder", root, "test", 8));
  EXPECT_HAS(e, (root / "test").string() + " does not exist");
  EXPECT_HAS(e, "its split folders: train, val");
  EXPECT_HAS(e, (root / "test").string() + "/<class>/<images>");

  // A layout with only a val folder has no training set at root either.
  const auto val_only = tmp.path / "val_only";
  write_split(val_only, "val", 1, 0);
  const std::string e2 = open_error(options("imagefolder", val_only, "train", 8));
  EXPECT_HAS(e2, (val_only / "train").string() + " does not exist");
  EXPECT_HAS(e2, "its split folders: val");
}

TEST(ImageFolderSplits, PlainLayoutIsTrainOnly) {
  TempDir tmp;
  const auto root = tmp.path / "plain";
  write_split(root, "", 2, 0);
  // A class that happens to be called "test" holds images, not class folders: still a class.
  fs::create_directories(root / "test");
  write_file((root / "test" / "0.png").string(), encode_png(split_pattern(20, 20, 9)));
  EXPECT_TRUE(image_folder_splits(root.string()).empty());
  auto train = open_dataset(options("imagefolder", root, "train", 8));
  EXPECT_EQ(train->size(), 7);
  EXPECT_EQ(train->num_classes(), 4);
  for (const char* split : {"val", "test"}) {
    SCOPED_TRACE(split);
    const std::string e = open_error(options("imagefolder", root, split, 8));
    EXPECT_HAS(e, "no split '" + std::string(split) + "'");
    EXPECT_HAS(e, (root / split).string());
    EXPECT_HAS(e, "has no split folders");
    EXPECT_HAS(e, (root / "train").string() + "/<class>/");
  }
  // Packed, a plain layout is the single split train.
  PackOptions p;
  p.source = options("imagefolder", root, "", 8);
  p.out = (tmp.path / "packed").string();
  const auto s = pack_splits(p);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].split, "train");
  EXPECT_EQ(s[0].summary.images, 7);
  EXPECT_HAS(open_error(options("packed", tmp.path / "packed", "val", 8)), "its splits: train");
}

TEST(PackSplits, AsSplitPacksAHeldOutFolderKeptApart) {
  TempDir tmp;
  const auto val = tmp.path / "elsewhere_val", out = tmp.path / "packed";
  write_split(val, "", 1, 70);  // a plain layout: on its own it is only "train"
  PackOptions p;
  p.source = options("imagefolder", val, "", 8);
  p.out = out.string();
  p.as_split = "val";
  const auto s = pack_splits(p);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].split, "val");
  EXPECT_EQ(s[0].dir, (out / "val").string());
  EXPECT_EQ(open_dataset(options("packed", out, "val", 8))->size(), 3);
  EXPECT_HAS(open_error(options("packed", out, "train", 8)), "its splits: val");
}

TEST(PackedSplits, OldSingleSplitLayoutOpensOnlyAsTrain) {
  TempDir tmp;
  const auto src = tmp.path / "src", dir = tmp.path / "old";
  write_split(src, "", 1, 0);
  PackOptions p;
  p.source = options("imagefolder", src, "train", 8);
  p.out = dir.string();
  pack_dataset(p);  // shards directly in dir
  // Rewrite the index as packs made before split folders had it (version 1).
  std::ifstream in(dir / "dataset.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto at = text.find("\"version\": 2");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 12, "\"version\": 1");
  std::ofstream(dir / "dataset.json") << text;

  EXPECT_EQ(open_dataset(options("packed", dir, "train", 8))->size(), 3);
  const std::string e = open_error(options("packed", dir, "test", 8));
  EXPECT_HAS(e, "no split 'test'");
  EXPECT_HAS(e, (dir / "test").string() + " does not exist");
  EXPECT_HAS(e, "serve only as split 'train'");
  EXPECT_HAS(e, "vdm pack " + src.string() + " --split test --resolution 8 --out " + dir.string());
}

TEST(PackedSplits, PathGivenAsOneSplitsFolder) {
  TempDir tmp;
  const auto src = tmp.path / "src", out = tmp.path / "packed";
  write_split(src, "train", 1, 0);
  write_split(src, "test", 1, 40);
  PackOptions p;
  p.source = options("imagefolder", src, "", 8);
  p.out = out.string();
  pack_splits(p);
  // data.path at DIR/test with split test is that split; with split train it is refused.
  auto direct = open_dataset(options("packed", out / "test", "test", 8));
  expect_same_samples(*direct, *open_dataset(options("packed", out, "test", 8)));
  const std::string e = open_error(options("packed", out / "test", "train", 8));
  EXPECT_HAS(e, "is split 'test' of a pack, not split 'train'");
  EXPECT_HAS(e, "set data.path to the pack's folder " + out.string());
  // A split folder without its dataset.json is an interrupted pack.
  fs::remove(out / "train" / "dataset.json");
  EXPECT_HAS(open_error(options("packed", out, "train", 8)), "interrupted pack");
  // Nothing packed at all.
  fs::create_directories(tmp.path / "empty");
  EXPECT_HAS(open_error(options("packed", tmp.path / "empty", "train", 8)), "holds no packed data");
}

}  // namespace vdm::split_tests
