// Datasets, the packer and the loader on real files the tests write: idx (raw and gzip),
// an image folder with JPEG, PNG, corrupt and non-image files and an empty class, packed
// shards (reading, resuming, bad shards), and the loader's determinism and skip policy.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/idx_dataset.h"
#include "data/image_codec.h"
#include "data/image_folder_dataset.h"
#include "data/loader.h"
#include "data/packed_dataset.h"
#include "data/packer.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes, bool gz) {
  if (gz) {
    gzFile f = gzopen(p.c_str(), "wb");
    gzwrite(f, bytes.data(), unsigned(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
}

// n images of r x r where pixel (y, x) of image i is (i * 40 + y * r + x) mod 256; label i mod 3.
void write_idx(const fs::path& dir, const std::string& prefix, int n, int r, bool gz) {
  std::vector<uint8_t> img, lab;
  put_be32(img, 0x803);
  put_be32(img, n);
  put_be32(img, r);
  put_be32(img, r);
  put_be32(lab, 0x801);
  put_be32(lab, n);
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < r * r; ++p) img.push_back(uint8_t((i * 40 + p) % 256));
    lab.push_back(uint8_t(i % 3));
  }
  const std::string ext = gz ? ".gz" : "";
  write_bytes(dir / (prefix + "-images-idx3-ubyte" + ext), img, gz);
  write_bytes(dir / (prefix + "-labels-idx1-ubyte" + ext), lab, gz);
}

Image pattern(int w, int h, int seed) {
  Image im;
  im.width = w;
  im.height = h;
  im.channels = 3;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) im.pixels.push_back(uint8_t((x * 7 + y * 3 + c * 50 + seed * 31) % 256));
  return im;
}

// root/a_class: 2 PNG + 1 corrupt JPEG; root/b_class: 2 JPEG + a text file; root/c_empty.
fs::path make_image_folder(const fs::path& base) {
  const auto root = base / "images";
  fs::create_directories(root / "a_class");
  fs::create_directories(root / "b_class");
  fs::create_directories(root / "c_empty");
  write_file((root / "a_class" / "1.png").string(), encode_png(pattern(40, 30, 1)));
  write_file((root / "a_class" / "2.png").string(), encode_png(pattern(30, 40, 2)));
  auto jpeg = encode_jpeg(pattern(50, 40, 3));
  jpeg.resize(jpeg.size() / 2);  // truncated
  write_file((root / "a_class" / "3_broken.jpg").string(), jpeg);
  write_file((root / "b_class" / "1.JPEG").string(), encode_jpeg(pattern(64, 48, 4), 95));
  write_file((root / "b_class" / "2.jpg").string(), encode_jpeg(pattern(48, 64, 5), 95));
  std::ofstream(root / "b_class" / "notes.txt") << "not an image\n";
  return root;
}

DataOptions folder_options(const fs::path& root, int64_t resolution = 8) {
  DataOptions o;
  o.format = "imagefolder";
  o.path = root.string();
  o.resolution = resolution;
  return o;
}

TEST(IdxDataset, ReadsRawAndGzip) {
  TempDir tmp;
  write_idx(tmp.path, "train", 5, 4, /*gz=*/true);
  write_idx(tmp.path, "t10k", 3, 4, /*gz=*/false);
  DataOptions o;
  o.path = tmp.path.string();
  o.resolution = 4;
  auto train = open_dataset(o);
  ASSERT_EQ(train->size(), 5);
  EXPECT_EQ(train->channels(), 1);
  EXPECT_EQ(train->num_classes(), 3);
  std::vector<uint8_t> px(16);
  train->read(2, px.data());
  for (int p = 0; p < 16; ++p) EXPECT_EQ(px[p], (80 + p) % 256);
  EXPECT_EQ(train->label(4), 1);
  o.split = "test";
  EXPECT_EQ(open_dataset(o)->size(), 3);
  o.resolution = 8;  // resized once at open
  EXPECT_EQ(open_dataset(o)->sample_bytes(), 64);
  o.split = "val";
  EXPECT_THROW(open_dataset(o), std::runtime_error);
}

TEST(IdxDataset, BadFiles) {
  TempDir tmp;
  write_idx(tmp.path, "train", 5, 4, false);
  DataOptions o;
  o.path = tmp.path.string();
  o.resolution = 4;
  fs::resize_file(tmp.path / "train-images-idx3-ubyte", 40);  // truncated
  EXPECT_THROW(open_dataset(o), std::runtime_error);
  std::ofstream(tmp.path / "train-images-idx3-ubyte", std::ios::binary) << "garbage!garbage!garbage!";
  try {
    open_dataset(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("magic"), std::string::npos) << e.what();
  }
  o.path = (tmp.path / "nope").string();
  EXPECT_THROW(open_dataset(o), std::runtime_error);
}

TEST(IdxDataset, FashionMnistFromDebian) {
  const std::string path = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(path)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  DataOptions o;
  o.path = path;
  o.resolution = 28;
  auto ds = open_dataset(o);
  EXPECT_EQ(ds->size(), 60000);
  EXPECT_EQ(ds->num_classes(), 10);
  EXPECT_EQ(ds->label(0), 9);  // the first training image is an ankle boot
  o.split = "test";
  EXPECT_EQ(open_dataset(o)->size(), 10000);
}

TEST(ImageFolderDataset, ClassesFilesAndBadInput) {
  TempDir tmp;
  const auto root = make_image_folder(tmp.path);
  auto o = folder_options(root);
  ImageFolderDataset ds(o);
  EXPECT_EQ(ds.num_classes(), 3);  // the empty class keeps its index
  EXPECT_EQ(ds.skipped_at_open(), 1);
  ASSERT_EQ(ds.size(), 6);
  EXPECT_EQ(ds.classes()[0], "a_class");
  EXPECT_EQ(ds.label(0), 0);
  EXPECT_EQ(ds.label(3), 1);
  EXPECT_NE(ds.source(2).find("3_broken.jpg"), std::string::npos);
  std::vector<uint8_t> out(3 * 8 * 8);
  EXPECT_NO_THROW(ds.read(0, out.data()));
  EXPECT_NO_THROW(ds.read(3, out.data()));
  EXPECT_THROW(ds.read(2, out.data()), ImageError);  // truncated JPEG
  EXPECT_THROW(ds.read(5, out.data()), ImageError);  // notes.txt
  o.on_error = "fail";
  EXPECT_THROW(ImageFolderDataset{o}, std::runtime_error);  // the empty class
  o.path = (tmp.path / "missing").string();
  EXPECT_THROW(open_dataset(o), std::runtime_error);
}

TEST(Packer, PacksReadsAndResumes) {
  TempDir tmp;
  const auto root = make_image_folder(tmp.path);
  PackOptions p;
  p.source = folder_options(root);
  p.out = (tmp.path / "packed").string();
  p.shard_size = 2;  // shards: {a1,a2} {a3_broken,b1} {b2,notes}
  p.threads = 2;
  auto s = pack_dataset(p);
  EXPECT_EQ(s.images, 4);
  EXPECT_EQ(s.skipped, 2);
  EXPECT_EQ(s.shards, 3);
  EXPECT_EQ(s.reused_shards, 0);

  ImageFolderDataset folder(folder_options(root));
  DataOptions po;
  po.format = "packed";
  po.path = p.out;
  po.resolution = 8;
  auto packed = open_dataset(po);
  ASSERT_EQ(packed->size(), 4);
  EXPECT_EQ(packed->num_classes(), 3);
  const std::vector<int64_t> source_of = {0, 1, 3, 4};
  std::vector<uint8_t> a(192), b(192);
  for (int64_t i = 0; i < 4; ++i) {
    packed->read(i, a.data());
    folder.read(source_of[i], b.data());
    EXPECT_EQ(a, b) << i;
    EXPECT_EQ(packed->label(i), folder.label(source_of[i]));
  }
  // A re-run finds every shard complete; losing one shard's JSON rebuilds just that one.
  EXPECT_EQ(pack_dataset(p).reused_shards, 3);
  fs::remove(fs::path(p.out) / "shard_00001.json");
  auto again = pack_dataset(p);
  EXPECT_EQ(again.reused_shards, 2);
  EXPECT_EQ(again.images, 4);
}

TEST(Packer, BadShardsAndResolution) {
  TempDir tmp;
  const auto root = make_image_folder(tmp.path);
  PackOptions p;
  p.source = folder_options(root);
  p.out = (tmp.path / "packed").string();
  p.shard_size = 2;
  pack_dataset(p);
  DataOptions po;
  po.format = "packed";
  po.path = p.out;
  po.resolution = 16;  // packed at 8
  EXPECT_THROW(open_dataset(po), std::runtime_error);
  po.resolution = 8;
  // A shard whose header claims another resolution is skipped (skip) or refused (fail).
  PackedShardInfo info;
  ASSERT_TRUE(read_shard_json(p.out, "shard_00000", info));
  info.resolution = 16;
  std::ofstream(fs::path(p.out) / "shard_00000.json") << shard_json(info);
  auto ds = open_dataset(po);
  EXPECT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->skipped_at_open(), 1);
  po.on_error = "fail";
  EXPECT_THROW(open_dataset(po), std::runtime_error);
  // A truncated shard file is caught by its size.
  po.on_error = "skip";
  fs::resize_file(fs::path(p.out) / "shard_00002.bin", 10);
  EXPECT_EQ(open_dataset(po)->size(), 1);
  fs::remove(fs::path(p.out) / "dataset.json");
  EXPECT_THROW(open_dataset(po), std::runtime_error);
}

TEST(Loader, DeterministicWhateverTheThreads) {
  TempDir tmp;
  write_idx(tmp.path, "train", 23, 4, false);
  DataOptions o;
  o.path = tmp.path.string();
  o.resolution = 4;
  auto ds = open_dataset(o);
  auto batches = [&](int64_t workers) {
    SamplerOptions so;
    so.dataset_size = ds->size();
    so.seed = 5;
    LoaderOptions lo;
    lo.batch_size = 4;
    lo.workers = workers;
    lo.seed = 5;
    Loader loader(ds, DistributedSampler(so), lo);
    std::vector<Batch> out;
    for (int i = 0; i < 12; ++i) out.push_back(loader.next());  // crosses two epochs
    return out;
  };
  auto a = batches(0), b = batches(2);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << i;
    EXPECT_TRUE(torch::equal(a[i].indices, b[i].indices)) << i;
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    // labels travel with their images
    for (int k = 0; k < 4; ++k) EXPECT_EQ(a[i].labels[k].item<int64_t>(), a[i].indices[k].item<int64_t>() % 3);
    // each image is the stored one, flipped exactly when flip_sample says so
    for (int k = 0; k < 4; ++k) {
      const int64_t idx = a[i].indices[k].item<int64_t>();
      auto want = torch::empty({1, 4, 4}, torch::kUInt8);
      ds->read(idx, want.data_ptr<uint8_t>());
      if (flip_sample(5, a[i].epoch, idx)) want = want.flip({2});
      EXPECT_TRUE(torch::equal(a[i].images[k], want)) << "batch " << i << " sample " << k;
    }
  }
  EXPECT_EQ(a.back().epoch, 2);  // 23 samples, 5 batches of 4 per epoch
}

TEST(Loader, SkipsOrFailsOnBrokenFiles) {
  TempDir tmp;
  const auto root = make_image_folder(tmp.path);
  auto ds = std::make_shared<ImageFolderDataset>(folder_options(root));
  SamplerOptions so;
  so.dataset_size = ds->size();
  so.shuffle = false;
  LoaderOptions lo;
  lo.batch_size = 6;
  lo.flip = false;
  lo.workers = 0;  // no read-ahead, so the skip count is exactly this batch's
  Loader loader(ds, DistributedSampler(so), lo);
  auto b = loader.next();
  EXPECT_EQ(b.images.size(0), 6);
  EXPECT_EQ(loader.skipped(), 2);
  // the broken #2 is replaced by #3 and notes.txt (#5) by #0 (wrapping around)
  EXPECT_EQ(b.indices[2].item<int64_t>(), 3);
  EXPECT_EQ(b.indices[5].item<int64_t>(), 0);
  lo.on_error = "fail";
  Loader strict(ds, DistributedSampler(so), lo);
  EXPECT_THROW(strict.next(), std::runtime_error);
}

}  // namespace
}  // namespace vdm
