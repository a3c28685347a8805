// Image decoding/encoding and the training transforms, on real files written to a fresh temp
// directory, plus a comparison of center_crop_resize with Pillow's output
// (tests/fixtures/make_image_fixtures.py generated the fixtures once).
#include <gtest/gtest.h>
#include <png.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "data/image_codec.h"
#include "data/transforms.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;
using vdm::Image;
using vdm::ImageError;
using vdm::ImageFormat;
using vdm::ResizeFilter;

const std::string kFixtures = std::string(VDM_SOURCE_DIR) + "/tests/fixtures/";

// A fresh directory per test, removed afterwards.
Image make_image(int w, int h, int c) {
  Image img;
  img.width = w, img.height = h, img.channels = c;
  img.pixels.resize(size_t(w) * h * c);
  return img;
}

// A smooth RGB gradient: JPEG-friendly, and every channel differs.
Image gradient(int w, int h) {
  Image img = make_image(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.pixels[(size_t(y) * w + x) * 3];
      p[0] = uint8_t(255 * x / (w - 1));
      p[1] = uint8_t(255 * y / (h - 1));
      p[2] = uint8_t((x + 2 * y) % 256);
    }
  return img;
}

uint8_t px(const Image& img, int x, int y, int ch = 0) {
  return img.pixels[(size_t(y) * img.width + x) * img.channels + ch];
}

double mean_abs_diff(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) sum += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return sum / double(a.pixels.size());
}

int max_abs_diff(const Image& a, const Image& b) {
  int m = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
  return m;
}

// Writes a PNG in a layout encode_png does not produce (RGBA, 16-bit, palette) with libpng's
// simplified write API.
void write_png_raw(const std::string& path, int w, int h, png_uint_32 format, const void* pixels,
                   const void* colormap = nullptr, int colormap_entries = 0) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = png_uint_32(w);
  img.height = png_uint_32(h);
  img.format = format;
  img.colormap_entries = png_uint_32(colormap_entries);
  ASSERT_TRUE(png_image_write_to_file(&img, path.c_str(), 0, pixels, 0, colormap)) << img.message;
}

// Pillow's convert("L"): ITU-R 601-2 luma.
uint8_t luma(int r, int g, int b) { return uint8_t((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16); }

// ---- codec -----------------------------------------------------------------------------

TEST(ImageCodec, SniffsFormatByMagicBytes) {
  const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0};
  const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
  EXPECT_EQ(vdm::sniff_format(jpeg, sizeof jpeg), ImageFormat::Jpeg);
  EXPECT_EQ(vdm::sniff_format(png, sizeof png), ImageFormat::Png);
  EXPECT_EQ(vdm::sniff_format(png, 7), ImageFormat::Unknown);
  EXPECT_EQ(vdm::sniff_format(gif, sizeof gif), ImageFormat::Unknown);
  EXPECT_EQ(vdm::sniff_format(nullptr, 0), ImageFormat::Unknown);
}

TEST(ImageCodec, RgbPngRoundTripsExactly) {
  TempDir dir;
  const Image src = gradient(53, 31);
  vdm::write_file(dir.file("g.png"), vdm::encode_png(src));
  const Image got = vdm::read_image_file(dir.file("g.png"), 3);
  ASSERT_EQ(got.width, 53);
  ASSERT_EQ(got.height, 31);
  ASSERT_EQ(got.channels, 3);
  EXPECT_EQ(got.pixels, src.pixels);
}

TEST(ImageCodec, RgbJpegQuality95RoundTripsClosely) {
  TempDir dir;
  const Image src = gradient(96, 64);
  const auto bytes = vdm::encode_jpeg(src, 95);
  EXPECT_EQ(vdm::sniff_format(bytes.data(), bytes.size()), ImageFormat::Jpeg);
  vdm::write_file(dir.file("g.jpg"), bytes);
  const Image got = vdm::read_image_file(dir.file("g.jpg"), 3);
  ASSERT_EQ(got.width, 96);
  ASSERT_EQ(got.height, 64);
  ASSERT_EQ(got.channels, 3);
  EXPECT_LT(mean_abs_diff(got, src), 1.5);
}

TEST(ImageCodec, GrayPngRoundTripsAndExpandsToRgb) {
  TempDir dir;
  Image src = make_image(20, 10, 1);
  for (size_t i = 0; i < src.pixels.size(); ++i) src.pixels[i] = uint8_t(i * 7);
  vdm::write_file(dir.file("gray.png"), vdm::encode_png(src));
  EXPECT_EQ(vdm::read_image_file(dir.file("gray.png"), 1).pixels, src.pixels);
  const Image rgb = vdm::read_image_file(dir.file("gray.png"), 3);
  ASSERT_EQ(rgb.channels, 3);
  for (size_t i = 0; i < src.pixels.size(); ++i)
    for (int ch = 0; ch < 3; ++ch) ASSERT_EQ(rgb.pixels[i * 3 + ch], src.pixels[i]);
}

TEST(ImageCodec, GrayJpegDecodesToBothChannelCounts) {
  Image src = make_image(32, 16, 1);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 32; ++x) src.pixels[y * 32 + x] = uint8_t(x * 8);
  const auto bytes = vdm::encode_jpeg(src, 95);
  const Image gray = vdm::decode_image(bytes.data(), bytes.size(), 1);
  const Image rgb = vdm::decode_image(bytes.data(), bytes.size(), 3);
  EXPECT_LT(mean_abs_diff(gray, src), 1.5);
  for (size_t i = 0; i < gray.pixels.size(); ++i)
    for (int ch = 0; ch < 3; ++ch) ASSERT_EQ(rgb.pixels[i * 3 + ch], gray.pixels[i]);
}

TEST(ImageCodec, RgbaPngDropsAlpha) {
  // Alpha is dropped, not composited, as Pillow's convert("RGB") does (ADM/EDM data).
  TempDir dir;
  std::vector<uint8_t> rgba(8 * 4 * 4);
  for (size_t i = 0; i < rgba.size(); i += 4)
    rgba[i] = uint8_t(i), rgba[i + 1] = 100, rgba[i + 2] = 200, rgba[i + 3] = uint8_t(i * 3);
  write_png_raw(dir.file("rgba.png"), 8, 4, PNG_FORMAT_RGBA, rgba.data());
  const Image got = vdm::read_image_file(dir.file("rgba.png"), 3);
  ASSERT_EQ(got.width, 8);
  ASSERT_EQ(got.height, 4);
  for (size_t i = 0; i < 32; ++i)
    for (int ch = 0; ch < 3; ++ch) ASSERT_EQ(got.pixels[i * 3 + ch], rgba[i * 4 + ch]);
  const Image gray = vdm::read_image_file(dir.file("rgba.png"), 1);
  EXPECT_EQ(gray.pixels[5], luma(rgba[20], 100, 200));
}

TEST(ImageCodec, SixteenBitPngScalesTo8Bit) {
  TempDir dir;
  std::vector<uint16_t> rgb16(6 * 3 * 3);
  for (size_t i = 0; i < rgb16.size(); ++i) rgb16[i] = uint16_t(i * 3000 + 7);
  // PNG_FORMAT_LINEAR_RGB writes 16-bit samples; the decoder takes stored values as they are
  // (no gamma conversion, like Pillow), rounding v * 255 / 65535.
  write_png_raw(dir.file("rgb16.png"), 6, 3, PNG_FORMAT_LINEAR_RGB, rgb16.data());
  const Image got = vdm::read_image_file(dir.file("rgb16.png"), 3);
  ASSERT_EQ(got.width, 6);
  ASSERT_EQ(got.height, 3);
  for (size_t i = 0; i < rgb16.size(); ++i)
    ASSERT_NEAR(got.pixels[i], rgb16[i] * 255.0 / 65535.0, 0.51) << i;
}

TEST(ImageCodec, PalettePngExpandsToRgb) {
  TempDir dir;
  const uint8_t palette[3 * 3] = {255, 0, 0, 0, 255, 0, 10, 20, 30};
  std::vector<uint8_t> idx(5 * 2);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = uint8_t(i % 3);
  write_png_raw(dir.file("pal.png"), 5, 2, PNG_FORMAT_RGB_COLORMAP, idx.data(), palette, 3);
  const Image got = vdm::read_image_file(dir.file("pal.png"), 3);
  for (size_t i = 0; i < idx.size(); ++i)
    for (int ch = 0; ch < 3; ++ch) ASSERT_EQ(got.pixels[i * 3 + ch], palette[idx[i] * 3 + ch]);
}

TEST(ImageCodec, RgbDecodesToOneChannel) {
  TempDir dir;
  const Image src = gradient(40, 30);
  vdm::write_file(dir.file("g.png"), vdm::encode_png(src));
  const Image gray = vdm::read_image_file(dir.file("g.png"), 1);
  ASSERT_EQ(gray.channels, 1);
  ASSERT_EQ(gray.pixels.size(), size_t(40 * 30));
  for (size_t i = 0; i < gray.pixels.size(); ++i)
    ASSERT_EQ(gray.pixels[i], luma(src.pixels[i * 3], src.pixels[i * 3 + 1], src.pixels[i * 3 + 2]));
  // A JPEG's gray decode is its luma plane: close to the same formula.
  vdm::write_file(dir.file("g.jpg"), vdm::encode_jpeg(src, 95));
  const Image jgray = vdm::read_image_file(dir.file("g.jpg"), 1);
  EXPECT_LT(mean_abs_diff(jgray, gray), 1.5);
}

TEST(ImageCodec, CmykJpegDecodesLikePillow) {
  // cmyk_32x24.jpg was written by Pillow (Adobe marker, inverted CMYK); the PNG is Pillow's
  // convert("RGB") of it. Both decoders run libjpeg's accurate IDCT, so they agree closely.
  const Image got = vdm::read_image_file(kFixtures + "cmyk_32x24.jpg", 3);
  const Image want = vdm::read_image_file(kFixtures + "cmyk_32x24_pil_rgb.png", 3);
  ASSERT_EQ(got.width, 32);
  ASSERT_EQ(got.height, 24);
  EXPECT_LE(max_abs_diff(got, want), 1);
  const Image gray = vdm::read_image_file(kFixtures + "cmyk_32x24.jpg", 1);
  EXPECT_EQ(gray.pixels[0], luma(got.pixels[0], got.pixels[1], got.pixels[2]));
}

TEST(ImageCodec, CmykJpegFromTurboJpegDecodesToRgb) {
  // TurboJPEG writes CMYK as YCCK with an Adobe marker; stored values are "inverted" (255 = no
  // ink), so C' = R, M' = G, Y' = B, K' = 255 encodes the RGB gradient.
  const Image rgb = gradient(48, 32);
  std::vector<uint8_t> cmyk(48 * 32 * 4);
  for (size_t i = 0; i < 48 * 32; ++i) {
    for (int ch = 0; ch < 3; ++ch) cmyk[i * 4 + ch] = rgb.pixels[i * 3 + ch];
    cmyk[i * 4 + 3] = 255;
  }
  tjhandle tj = tjInitCompress();
  ASSERT_NE(tj, nullptr);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  ASSERT_EQ(tjCompress2(tj, cmyk.data(), 48, 0, 32, TJPF_CMYK, &buf, &size, TJSAMP_444, 98, 0), 0)
      << tjGetErrorStr2(tj);
  std::vector<uint8_t> bytes(buf, buf + size);
  tjFree(buf);
  tjDestroy(tj);
  const Image got = vdm::decode_image(bytes.data(), bytes.size(), 3);
  EXPECT_LT(mean_abs_diff(got, rgb), 2.0);
}

TEST(ImageCodec, DctScalingPicksTheSmallestScaleAboveMinSide) {
  TempDir dir;
  const auto bytes = vdm::encode_jpeg(gradient(500, 375), 90);
  vdm::write_file(dir.file("big.jpg"), bytes);
  struct Case {
    int min_side, width, height;
  };
  // TurboJPEG's scaled size is ceil(side * num / denom): 1/4 -> 125x94, 1/8 -> 63x47.
  for (const Case c : {Case{0, 500, 375}, Case{64, 125, 94}, Case{94, 125, 94}, Case{95, 250, 188},
                       Case{188, 250, 188}, Case{189, 500, 375}, Case{47, 63, 47}, Case{1, 63, 47},
                       Case{1000, 500, 375}}) {
    const Image img = vdm::read_image_file(dir.file("big.jpg"), 3, c.min_side);
    EXPECT_EQ(img.width, c.width) << "min_side " << c.min_side;
    EXPECT_EQ(img.height, c.height) << "min_side " << c.min_side;
    if (c.min_side <= 375) {
      EXPECT_GE(std::min(img.width, img.height), c.min_side);
    }
  }
  // Portrait, and a PNG (no DCT scaling: min_side is ignored).
  const auto tall = vdm::encode_jpeg(gradient(375, 500), 90);
  const Image t = vdm::decode_image(tall.data(), tall.size(), 1, 64);
  EXPECT_EQ(t.width, 94);
  EXPECT_EQ(t.height, 125);
  const auto png = vdm::encode_png(gradient(500, 375));
  EXPECT_EQ(vdm::decode_image(png.data(), png.size(), 3, 64).width, 500);
}

TEST(ImageCodec, DctScaledDecodeStillLooksLikeTheImage) {
  const Image src = gradient(256, 128);
  const auto bytes = vdm::encode_jpeg(src, 95);
  const Image quarter = vdm::decode_image(bytes.data(), bytes.size(), 3, 32);
  ASSERT_EQ(quarter.width, 64);
  // The red channel is a horizontal ramp: the 1/4-scale pixel x sits at source x * 4 + 1.5.
  for (int x = 0; x < 64; x += 9) EXPECT_NEAR(px(quarter, x, 10, 0), 4 * x + 1.5, 3.0);
}

void expect_image_error(const std::string& path, const std::string& what) {
  ::testing::internal::CaptureStderr();
  try {
    vdm::read_image_file(path, 3, 32);
    ::testing::internal::GetCapturedStderr();
    ADD_FAILURE() << what << ": no ImageError";
  } catch (const ImageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << what << ": message does not name the file: " << msg;
    EXPECT_GT(msg.size(), path.size() + 8) << what << ": no reason given: " << msg;
    // libjpeg/libpng must not print their warnings.
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << what;
  }
}

TEST(ImageCodec, CorruptTruncatedAndNonImageInputsThrowImageError) {
  TempDir dir;
  const Image src = gradient(120, 90);
  const auto jpeg = vdm::encode_jpeg(src, 90);
  const auto png = vdm::encode_png(src);
  auto write_prefix = [&](const std::string& name, const std::vector<uint8_t>& bytes, size_t n) {
    vdm::write_file(dir.file(name), std::vector<uint8_t>(bytes.begin(), bytes.begin() + n));
    return dir.file(name);
  };
  expect_image_error(write_prefix("half.jpg", jpeg, jpeg.size() / 2), "truncated JPEG");
  expect_image_error(write_prefix("no_eoi.jpg", jpeg, jpeg.size() - 2), "JPEG without EOI");
  expect_image_error(write_prefix("head.jpg", jpeg, 40), "JPEG header only");
  expect_image_error(write_prefix("soi.jpg", jpeg, 3), "JPEG magic only");
  expect_image_error(write_prefix("half.png", png, png.size() / 2), "truncated PNG");
  expect_image_error(write_prefix("sig.png", png, 8), "PNG signature only");

  std::vector<uint8_t> bad_crc = png;
  bad_crc[bad_crc.size() / 2] ^= 0x55;  // inside IDAT: CRC (and zlib) mismatch
  vdm::write_file(dir.file("crc.png"), bad_crc);
  expect_image_error(dir.file("crc.png"), "PNG with a corrupt IDAT");

  std::mt19937 rng(1);
  std::vector<uint8_t> noise(4096);
  for (auto& b : noise) b = uint8_t(rng());
  noise[0] = 0x12;  // not accidentally a magic number
  vdm::write_file(dir.file("random.jpg"), noise);
  expect_image_error(dir.file("random.jpg"), "random bytes");
  std::vector<uint8_t> jpeg_noise = noise;  // JPEG magic, then garbage
  jpeg_noise[0] = 0xFF, jpeg_noise[1] = 0xD8, jpeg_noise[2] = 0xFF;
  vdm::write_file(dir.file("noise.jpg"), jpeg_noise);
  expect_image_error(dir.file("noise.jpg"), "JPEG magic + random bytes");

  vdm::write_file(dir.file("empty.png"), {});
  expect_image_error(dir.file("empty.png"), "empty file");
  const std::string text = "this is not an image\n";
  vdm::write_file(dir.file("notes.jpg"), std::vector<uint8_t>(text.begin(), text.end()));
  expect_image_error(dir.file("notes.jpg"), "text file");

  EXPECT_THROW(vdm::decode_image(jpeg.data(), jpeg.size() / 2, 3), ImageError);
  EXPECT_THROW(vdm::decode_image(nullptr, 0, 3), ImageError);
}

TEST(ImageCodec, MissingFileThrowsNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("does_not_exist.JPEG");
  try {
    vdm::read_image_file(path, 3);
    FAIL() << "no exception";
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(vdm::read_image_file(dir.path.string(), 3), ImageError);  // a directory
}

TEST(ImageCodec, ImplausibleHeaderSizeIsRejectedBeforeAllocating) {
  // A JPEG whose frame header claims 40000 x 40000 pixels (4.5 GiB of RGB; libjpeg itself
  // stops at 65500 per side).
  auto jpeg = vdm::encode_jpeg(gradient(16, 16), 90);
  size_t sof = 0;
  for (size_t i = 2; i + 9 < jpeg.size(); ++i)
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  ASSERT_NE(sof, 0u);
  for (size_t k = sof + 5; k < sof + 9; k += 2) jpeg[k] = 0x9C, jpeg[k + 1] = 0x40;  // height, width
  try {
    vdm::decode_image(jpeg.data(), jpeg.size(), 3);
    FAIL() << "no exception";
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
}

TEST(ImageCodec, DecoderIsUsableAfterAnError) {
  // The TurboJPEG handle is reused per thread; no kind of failure may poison the next decode
  // (TurboJPEG 2.1 keeps a failed header read's state: JPEG magic + garbage did that).
  const auto jpeg = vdm::encode_jpeg(gradient(64, 48), 90);
  std::vector<uint8_t> garbage(512);
  std::mt19937 rng(2);
  for (auto& b : garbage) b = uint8_t(rng());
  garbage[0] = 0xFF, garbage[1] = 0xD8, garbage[2] = 0xFF;
  const std::vector<std::vector<uint8_t>> bad = {
      std::vector<uint8_t>(jpeg.begin(), jpeg.end() - 100), std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 40),
      garbage};
  for (const auto& b : bad) {
    EXPECT_THROW(vdm::decode_image(b.data(), b.size(), 3), ImageError);
    const Image ok = vdm::decode_image(jpeg.data(), jpeg.size(), 3);
    EXPECT_EQ(ok.width, 64);
  }
}

TEST(ImageCodec, RejectsBadArguments) {
  const auto png = vdm::encode_png(gradient(8, 8));
  EXPECT_THROW(vdm::decode_image(png.data(), png.size(), 2), std::invalid_argument);
  Image bad = make_image(4, 4, 3);
  bad.pixels.pop_back();
  EXPECT_THROW(vdm::encode_png(bad), std::invalid_argument);
  EXPECT_THROW(vdm::encode_jpeg(gradient(8, 8), 0), std::invalid_argument);
}

// ---- transforms ------------------------------------------------------------------------

TEST(Transforms, ConstantImageStaysConstant) {
  for (const ResizeFilter f : {ResizeFilter::Bicubic, ResizeFilter::Lanczos})
    for (const auto& [w, h, r] : std::vector<std::array<int, 3>>{{500, 375, 64}, {37, 91, 16}, {10, 7, 32}}) {
      Image img = make_image(w, h, 3);
      for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i % 3 == 0 ? 17 : i % 3 == 1 ? 128 : 254);
      const Image out = vdm::center_crop_resize(img, r, f);
      ASSERT_EQ(out.width, r);
      for (size_t i = 0; i < out.pixels.size(); ++i)
        ASSERT_EQ(out.pixels[i], img.pixels[i % 3]) << w << "x" << h << " -> " << r;
    }
}

TEST(Transforms, GeometryOfImagenetSizedImage) {
  const Image out = vdm::center_crop_resize(gradient(500, 375), 64);
  EXPECT_EQ(out.width, 64);
  EXPECT_EQ(out.height, 64);
  EXPECT_EQ(out.channels, 3);
  EXPECT_EQ(out.pixels.size(), size_t(64 * 64 * 3));
  Image gray = make_image(375, 500, 1);
  const Image g = vdm::center_crop_resize(gray, 32, ResizeFilter::Lanczos);
  EXPECT_EQ(g.width, 32);
  EXPECT_EQ(g.height, 32);
  EXPECT_EQ(g.channels, 1);
}

TEST(Transforms, CropIsCentered) {
  // 300x100, left half black, right half white, R = 32: halved to 150x50, resized to 96x32,
  // cropped at x = 32. The edge sits at x = 48 of the resized image, i.e. between columns 15
  // and 16 of the crop, and the crop is mirror-symmetric about it.
  Image img = make_image(300, 100, 1);
  for (int y = 0; y < 100; ++y)
    for (int x = 150; x < 300; ++x) img.pixels[y * 300 + x] = 255;
  for (const ResizeFilter f : {ResizeFilter::Bicubic, ResizeFilter::Lanczos}) {
    const Image out = vdm::center_crop_resize(img, 32, f);
    for (int y = 0; y < 32; ++y) {
      EXPECT_LT(px(out, 15, y), 128);
      EXPECT_GT(px(out, 16, y), 128);
      for (int x = 0; x < 16; ++x) EXPECT_NEAR(px(out, x, y) + px(out, 31 - x, y), 255, 1) << x;
      EXPECT_EQ(px(out, 0, y), 0);
      EXPECT_EQ(px(out, 31, y), 255);
    }
  }
}

TEST(Transforms, SquareImageAtTargetSizeIsUnchanged) {
  Image img = make_image(24, 24, 3);
  std::mt19937 rng(3);
  for (auto& p : img.pixels) p = uint8_t(rng());
  EXPECT_EQ(vdm::center_crop_resize(img, 24).pixels, img.pixels);
  EXPECT_EQ(vdm::center_crop_resize(img, 24, ResizeFilter::Lanczos).pixels, img.pixels);
  // Already R wide but taller: only the center crop happens.
  Image tall = make_image(16, 40, 1);
  for (size_t i = 0; i < tall.pixels.size(); ++i) tall.pixels[i] = uint8_t(i);
  const Image crop = vdm::center_crop_resize(tall, 16);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) ASSERT_EQ(px(crop, x, y), px(tall, x, y + 12));
}

TEST(Transforms, BoxHalvingAveragesTwoByTwoBlocks) {
  // A checkerboard of 2x2 blocks: one halving (64 -> 32) gives a 1-pixel checkerboard exactly;
  // a second (R = 16) averages each 2x2 of it to 127.5, rounded half up to 128.
  Image img = make_image(64, 64, 1);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) img.pixels[y * 64 + x] = ((x / 2 + y / 2) % 2) ? 255 : 0;
  const Image once = vdm::center_crop_resize(img, 32);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) ASSERT_EQ(px(once, x, y), ((x + y) % 2) ? 255 : 0);
  const Image twice = vdm::center_crop_resize(img, 16);
  for (uint8_t v : twice.pixels) ASSERT_EQ(v, 128);
}

TEST(Transforms, FlipTwiceIsIdentity) {
  std::vector<uint8_t> chw(3 * 5 * 7);
  for (size_t i = 0; i < chw.size(); ++i) chw[i] = uint8_t(i);
  auto flipped = chw;
  vdm::flip_horizontal_chw(flipped.data(), 3, 5, 7);
  EXPECT_EQ(flipped[0], chw[6]);
  EXPECT_EQ(flipped[7 * 5 * 2 + 7 + 2], chw[7 * 5 * 2 + 7 + 4]);
  vdm::flip_horizontal_chw(flipped.data(), 3, 5, 7);
  EXPECT_EQ(flipped, chw);
}

TEST(Transforms, ToChwLayout) {
  Image img = make_image(4, 3, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) img.pixels[(y * 4 + x) * 3 + c] = uint8_t(100 * c + 10 * y + x);
  std::vector<uint8_t> chw(4 * 3 * 3);
  vdm::to_chw(img, chw.data());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) ASSERT_EQ(chw[(c * 3 + y) * 4 + x], 100 * c + 10 * y + x);
  Image gray = make_image(4, 3, 1);
  gray.pixels = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<uint8_t> g(12);
  vdm::to_chw(gray, g.data());
  EXPECT_EQ(g, gray.pixels);
}

TEST(Transforms, MatchesPillowCenterCropArr) {
  // Fixtures: tests/fixtures/make_image_fixtures.py (ADM's center_crop_arr under Pillow 9.4):
  //   /usr/bin/python3 tests/fixtures/make_image_fixtures.py tests/fixtures
  // The 75x47 source has odd sides, so the box halvings (47 -> 23 -> 11) use PIL's
  // non-integer BOX ratio. "*_float.png" ran the same pipeline in Pillow's float32 mode and
  // rounded once at the end, as vdm does: that must agree to rounding. The 8-bit Pillow output
  // rounds after every pass (two per resize), which drifts upwards -- box averages of integers
  // end in .5 half the time and round up -- so it is only required to agree loosely.
  const Image src = vdm::read_image_file(kFixtures + "resize_src_75x47.png", 3);
  struct Case {
    const char* name;
    int resolution;
    ResizeFilter filter;
  };
  for (const Case c : {Case{"resize_bicubic_16", 16, ResizeFilter::Bicubic},
                       Case{"resize_bicubic_8", 8, ResizeFilter::Bicubic},
                       Case{"resize_lanczos_16", 16, ResizeFilter::Lanczos}}) {
    const Image got = vdm::center_crop_resize(src, c.resolution, c.filter);
    const Image pil_float = vdm::read_image_file(kFixtures + c.name + "_float.png", 3);
    const Image pil_u8 = vdm::read_image_file(kFixtures + c.name + ".png", 3);
    ASSERT_EQ(got.width, pil_u8.width);
    ASSERT_EQ(got.height, pil_u8.height);
    const double mean_f = mean_abs_diff(got, pil_float), mean_u8 = mean_abs_diff(got, pil_u8);
    const int max_f = max_abs_diff(got, pil_float), max_u8 = max_abs_diff(got, pil_u8);
    std::printf("[ vs PIL   ] %s: float32 pipeline mean %.3f max %d; uint8 pipeline mean %.3f max %d\n",
                c.name, mean_f, max_f, mean_u8, max_u8);
    EXPECT_LE(mean_f, 0.05) << c.name;
    EXPECT_LE(max_f, 1) << c.name;
    EXPECT_LE(mean_u8, 1.0) << c.name;
    EXPECT_LE(max_u8, 4) << c.name;
  }
}

}  // namespace
