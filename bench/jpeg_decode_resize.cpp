// Single-thread throughput (img/s) of JPEG decode + the ADM center crop/resize to 64 px, with
// and without TurboJPEG's DCT-domain downscaling, on 64 synthetic ImageNet-sized JPEGs.
// Usage: jpeg_decode_resize [--images=DIR] [--resolution=R] [--benchmark_* flags]
//   --images=DIR  use the *.jpg files in DIR; if it has none, write the synthetic set there and
//                 keep it (bench/pil_decode_resize.py then measures Pillow on the same files;
//                 bench/run_jpeg_vs_pil.sh does both). Without it a temp dir is used and removed.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "data/image_codec.h"
#include "data/transforms.h"

namespace {

namespace fs = std::filesystem;

int g_resolution = 64;
std::vector<std::vector<uint8_t>> g_files;  // JPEG bytes, decoded from memory (no file I/O timed)

// Photo-like content so that JPEG sizes and entropy-decoding cost are realistic (ImageNet's
// train JPEGs average ~110 KB): a smooth colour field, a few soft-edged "objects", a fine
// texture and per-pixel sensor-like noise.
vdm::Image synthetic_photo(int w, int h, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> noise(0.0f, 9.0f);
  vdm::Image img;
  img.width = w, img.height = h, img.channels = 3;
  img.pixels.resize(size_t(w) * h * 3);
  float base[3], gx[3], gy[3], fx[3], fy[3];
  for (int c = 0; c < 3; ++c) {
    base[c] = 60 + 120 * u(rng), gx[c] = 80 * (u(rng) - 0.5f), gy[c] = 80 * (u(rng) - 0.5f);
    fx[c] = 0.005f + 0.02f * u(rng), fy[c] = 0.005f + 0.02f * u(rng);
  }
  struct Blob {
    float cx, cy, rx, ry, col[3];
  };
  std::vector<Blob> blobs(6);
  for (auto& b : blobs) {
    b.cx = w * u(rng), b.cy = h * u(rng), b.rx = 20 + 100 * u(rng), b.ry = 20 + 100 * u(rng);
    for (float& c : b.col) c = 255 * u(rng);
  }
  const float tex_f = 0.3f + 0.5f * u(rng);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float v[3];
      for (int c = 0; c < 3; ++c)
        v[c] = base[c] + gx[c] * x / w + gy[c] * y / h + 30 * std::sin(fx[c] * x + fy[c] * y + c);
      for (const Blob& b : blobs) {
        const float dx = (x - b.cx) / b.rx, dy = (y - b.cy) / b.ry;
        const float a = 1.0f / (1.0f + std::exp(8.0f * (dx * dx + dy * dy - 1.0f)));  // soft edge
        for (int c = 0; c < 3; ++c) v[c] += a * (b.col[c] - v[c]);
      }
      const float tex = 12 * std::sin(tex_f * x) * std::sin(tex_f * 1.3f * y);
      for (int c = 0; c < 3; ++c) {
        const float p = v[c] + tex + noise(rng);
        img.pixels[(size_t(y) * w + x) * 3 + c] = uint8_t(std::clamp(p, 0.0f, 255.0f) + 0.5f);
      }
    }
  return img;
}

// The common ImageNet shapes (landscape 4:3 and 3:2, portrait, near-square).
void write_synthetic_set(const fs::path& dir, int count) {
  const int sizes[][2] = {{500, 375}, {500, 333}, {375, 500}, {500, 375}, {500, 400}, {333, 500}};
  std::mt19937 rng(1234);
  size_t total = 0;
  for (int i = 0; i < count; ++i) {
    const auto& s = sizes[i % 6];
    const auto bytes = vdm::encode_jpeg(synthetic_photo(s[0], s[1], rng), 90);
    total += bytes.size();
    char name[32];
    std::snprintf(name, sizeof name, "img_%03d.jpg", i);
    vdm::write_file((dir / name).string(), bytes);
  }
  std::fprintf(stderr, "wrote %d JPEGs (quality 90, mean %.1f KB) to %s\n", count,
               total / 1024.0 / count, dir.string().c_str());
}

void load_set(const fs::path& dir) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg")) paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    g_files.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
}

// min_side_factor: 0 = full-size decode; k = let TurboJPEG reduce while the shorter side stays
// >= k * R (1: lands where ADM's box loop stops; 2: one box halving left to do).
void BM_DecodeCropResize(benchmark::State& state) {
  const int min_side = int(state.range(0)) * g_resolution;
  size_t i = 0;
  for (auto _ : state) {
    const auto& bytes = g_files[i++ % g_files.size()];
    vdm::Image img = vdm::decode_image(bytes.data(), bytes.size(), 3, min_side);
    vdm::Image out = vdm::center_crop_resize(img, g_resolution, vdm::ResizeFilter::Bicubic);
    benchmark::DoNotOptimize(out.pixels.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}

void BM_DecodeOnly(benchmark::State& state) {
  const int min_side = int(state.range(0)) * g_resolution;
  size_t i = 0;
  for (auto _ : state) {
    const auto& bytes = g_files[i++ % g_files.size()];
    vdm::Image img = vdm::decode_image(bytes.data(), bytes.size(), 3, min_side);
    benchmark::DoNotOptimize(img.pixels.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}

BENCHMARK(BM_DecodeCropResize)->ArgName("min_side_x_R")->Arg(0)->Arg(1)->Arg(2)->MinTime(2.0);
BENCHMARK(BM_DecodeOnly)->ArgName("min_side_x_R")->Arg(0)->Arg(1)->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  std::string images;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--images=", 9) == 0)
      images = argv[i] + 9;
    else if (std::strncmp(argv[i], "--resolution=", 13) == 0)
      g_resolution = std::atoi(argv[i] + 13);
    else
      rest.push_back(argv[i]);
  }
  if (g_resolution <= 0) {
    std::cerr << "--resolution must be > 0\n";
    return 2;
  }
  fs::path dir;
  bool temporary = false;
  if (images.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "vdm_jpeg_bench_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
    temporary = true;
  } else {
    dir = images;
    fs::create_directories(dir);
  }
  load_set(dir);
  if (g_files.empty()) {
    write_synthetic_set(dir, 64);
    load_set(dir);
  }
  std::fprintf(stderr, "%zu JPEGs from %s, resolution %d, one thread\n", g_files.size(),
               dir.string().c_str(), g_resolution);

  int rest_argc = int(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (temporary) fs::remove_all(dir);
  return 0;
}
