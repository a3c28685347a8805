// Image decoding and encoding for the data pipeline: JPEG via the TurboJPEG API (with DCT-domain
// downscaling), PNG via libpng, both to 8-bit gray or RGB in HWC order. Every failure on bad
// input becomes an ImageError with a reason; nothing is printed to stderr.
#include "data/image_codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>

namespace vdm {
namespace {

// A corrupt header can claim 65535 x 65535 pixels; refuse before allocating rather than die
// with std::bad_alloc. 2^28 pixels (16384 x 16384) is far beyond any training image.
constexpr int64_t kMaxPixels = int64_t(1) << 28;

void check_channels(int channels) {
  if (channels != 1 && channels != 3)
    throw std::invalid_argument("image channels must be 1 or 3, got " + std::to_string(channels));
}

void check_size(int64_t width, int64_t height) {
  if (width <= 0 || height <= 0)
    throw ImageError("invalid image size " + std::to_string(width) + "x" + std::to_string(height));
  if (width * height > kMaxPixels)
    throw ImageError("image too large (" + std::to_string(width) + "x" + std::to_string(height) +
                     " pixels)");
}

void check_image(const Image& image) {
  check_channels(image.channels);
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != size_t(image.width) * size_t(image.height) * size_t(image.channels))
    throw std::invalid_argument("image buffer does not match " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + "x" +
                                std::to_string(image.channels));
}

// ITU-R 601-2 luma with weights 19595/38470/7471 (/65536), the same definition Pillow's
// convert("L") uses, so gray images match what a PIL-based pipeline would feed a model.
inline uint8_t luma(unsigned r, unsigned g, unsigned b) {
  return uint8_t((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// Converts interleaved 8-bit pixels with `in_ch` channels (1 gray, 2 gray+alpha, 3 RGB,
// 4 RGBA) to `out_ch` channels (1 or 3). Alpha is dropped, not composited: that is what
// Pillow's convert("RGB") does and hence what ADM/EDM training images look like.
void convert_channels(const uint8_t* src, int in_ch, uint8_t* dst, int out_ch, size_t count) {
  if (in_ch == out_ch) {
    std::memcpy(dst, src, count * size_t(in_ch));
    return;
  }
  const bool in_gray = in_ch <= 2;
  for (size_t i = 0; i < count; ++i, src += in_ch) {
    if (out_ch == 1) {
      *dst++ = in_gray ? src[0] : luma(src[0], src[1], src[2]);
    } else if (in_gray) {
      dst[0] = dst[1] = dst[2] = src[0];
      dst += 3;
    } else {
      dst[0] = src[0], dst[1] = src[1], dst[2] = src[2];
      dst += 3;
    }
  }
}

// ---- JPEG ------------------------------------------------------------------------------

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

// A decompressor per thread: creating one allocates libjpeg's state, which costs about as much
// as decoding a thumbnail.
TjHandle& thread_decompressor() {
  thread_local TjHandle handle;
  return handle;
}

tjhandle decompressor() {
  TjHandle& handle = thread_decompressor();
  if (!handle) {
    handle.reset(tjInitDecompress());
    if (!handle) throw std::runtime_error(std::string("tjInitDecompress: ") + tjGetErrorStr2(nullptr));
  }
  return handle.get();
}

[[noreturn]] void throw_tj(tjhandle handle, const char* what) {
  std::string msg = std::string("corrupt JPEG (") + what + "): " + tjGetErrorStr2(handle);
  // Warnings are libjpeg's "recoverable" problems -- above all "Premature end of JPEG file" for
  // a truncated download, which would otherwise decode as a grey-padded image. A training set
  // should never see those pixels, so a warning counts as corruption.
  if (tjGetErrorCode(handle) == TJERR_WARNING) msg += " (warning treated as an error)";
  // TurboJPEG 2.1 does not reset libjpeg's state when tjDecompressHeader3 fails, so the next
  // file on the same handle fails too (seen: "Unsupported marker type" forever after). Errors
  // are rare: start the next decode on a fresh handle.
  thread_decompressor().reset();
  throw ImageError(msg);
}

// Only the power-of-two reductions: they mirror ADM's repeated 2x box downscaling, so with
// min_side = R the decoded shorter side lands in [R, 2R) exactly where ADM's loop stops.
// TurboJPEG also offers 3/8, 5/8, ...; those would change which resize the bicubic step sees.
tjscalingfactor pick_scale(int width, int height, int min_side) {
  tjscalingfactor best{1, 1};
  if (min_side <= 0) return best;
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  for (int i = 0; factors && i < count; ++i) {
    const tjscalingfactor f = factors[i];
    const bool power_of_two_reduction = f.num == 1 && f.denom >= 1 && (f.denom & (f.denom - 1)) == 0;
    if (!power_of_two_reduction) continue;
    const int w = TJSCALED(width, f), h = TJSCALED(height, f);
    if (std::min(w, h) >= min_side && f.denom > best.denom) best = f;
  }
  return best;
}

// CMYK and YCCK JPEGs (a few dozen in ImageNet) cannot be converted to RGB by libjpeg; decode
// them to CMYK and convert here. Like Pillow (JpegImagePlugin: rawmode "CMYK;I", "assume adobe
// conventions") the stored values are taken as Adobe-inverted, i.e. 255 means no ink, so
// R = C' K' / 255 -- Pillow's (255 - C)(255 - K) / 255 after its inversion.
void cmyk_to_output(const uint8_t* cmyk, uint8_t* dst, int out_ch, size_t count) {
  for (size_t i = 0; i < count; ++i, cmyk += 4) {
    const unsigned k = cmyk[3];
    const unsigned r = (cmyk[0] * k + 127) / 255, g = (cmyk[1] * k + 127) / 255,
                   b = (cmyk[2] * k + 127) / 255;
    if (out_ch == 1) {
      *dst++ = luma(r, g, b);
    } else {
      dst[0] = uint8_t(r), dst[1] = uint8_t(g), dst[2] = uint8_t(b);
      dst += 3;
    }
  }
}

Image decode_jpeg(const uint8_t* data, size_t size, int channels, int min_side) {
  if (size > std::numeric_limits<unsigned long>::max()) throw ImageError("JPEG too large");
  tjhandle tj = decompressor();
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &width, &height, &subsamp,
                          &colorspace) != 0)
    throw_tj(tj, "header");
  // A stream that ends before its frame header reads as "tables only": no error, no size.
  if (width <= 0 || height <= 0) {
    thread_decompressor().reset();
    throw ImageError("corrupt JPEG (header): no image data (truncated?)");
  }
  check_size(width, height);

  const tjscalingfactor scale = pick_scale(width, height, min_side);
  Image out;
  out.width = TJSCALED(width, scale);
  out.height = TJSCALED(height, scale);
  out.channels = channels;
  const size_t count = size_t(out.width) * size_t(out.height);
  out.pixels.resize(count * size_t(channels));

  // LIMITSCANS: refuse progressive files with absurd scan counts (a known CPU-exhaustion
  // vector). STOPONWARNING: see throw_tj.
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  if (!cmyk) {
    const int pf = channels == 1 ? TJPF_GRAY : TJPF_RGB;
    if (tjDecompress2(tj, data, static_cast<unsigned long>(size), out.pixels.data(), out.width, 0,
                      out.height, pf, flags) != 0)
      throw_tj(tj, "data");
  } else {
    std::vector<uint8_t> buf(count * 4);
    if (tjDecompress2(tj, data, static_cast<unsigned long>(size), buf.data(), out.width, 0,
                      out.height, TJPF_CMYK, flags) != 0)
      throw_tj(tj, "data");
    cmyk_to_output(buf.data(), out.pixels.data(), channels, count);
  }
  return out;
}

// ---- PNG -------------------------------------------------------------------------------
//
// libpng's low-level API reports errors by longjmp. The simplified png_image API would hide
// that, but it colour-manages: it treats 16-bit files as linear light and converts them (and
// files whose gAMA is not sRGB) to sRGB, whereas Pillow -- and so every PIL-based training
// pipeline -- takes the stored values as they are. So the low-level API is used, and every
// call that can fail runs inside one of two small functions whose frames hold only trivially
// destructible objects: a longjmp out of libpng lands at their setjmp and skips no C++
// destructor. Buffers are allocated by ordinary C++ between the two calls.

struct PngState {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  char message[256] = {0};
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

// Warnings (bad ancillary chunks, "known incorrect sRGB profile", ...) do not affect pixels;
// libpng would print them to stderr, which a data loader must not do.
void png_on_warning(png_structp, png_const_charp) {}

void png_read_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (length > state->size - state->pos) png_error(png, "truncated file (unexpected end of data)");
  std::memcpy(out, state->data + state->pos, length);
  state->pos += length;
}

struct PngHeader {
  png_uint_32 width = 0, height = 0;
  int channels = 0;
  size_t rowbytes = 0;
};

// Reads the header and sets up the transformations to 8-bit gray / gray+alpha / RGB / RGBA.
bool png_read_header_guarded(png_structp png, png_infop info, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, 1u << 16, 1u << 16);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // 16 -> 8 bits with rounding (v * 255 / 65535); Pillow keeps the high byte, at most 1 apart.
  if (bit_depth == 16) png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  header->width = png_get_image_width(png, info);
  header->height = png_get_image_height(png, info);
  header->channels = png_get_channels(png, info);
  header->rowbytes = png_get_rowbytes(png, info);
  return true;
}

bool png_read_rows_guarded(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  // Chunks after the image data (and a missing IEND) are not read: the pixels are complete.
  return true;
}

struct PngReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngReadGuard() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

Image decode_png(const uint8_t* data, size_t size, int channels) {
  PngState state;
  state.data = data;
  state.size = size;
  PngReadGuard guard;
  guard.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_on_error, png_on_warning);
  if (!guard.png) throw std::runtime_error("png_create_read_struct failed");
  guard.info = png_create_info_struct(guard.png);
  if (!guard.info) throw std::runtime_error("png_create_info_struct failed");
  png_set_read_fn(guard.png, &state, png_read_memory);

  PngHeader header;
  if (!png_read_header_guarded(guard.png, guard.info, &header))
    throw ImageError(std::string("corrupt PNG (header): ") + state.message);
  check_size(header.width, header.height);
  if (header.channels < 1 || header.channels > 4 ||
      header.rowbytes != size_t(header.width) * size_t(header.channels))
    throw ImageError("unsupported PNG layout");

  std::vector<uint8_t> raw(header.rowbytes * header.height);
  std::vector<png_bytep> rows(header.height);
  for (png_uint_32 y = 0; y < header.height; ++y) rows[y] = raw.data() + size_t(y) * header.rowbytes;
  if (!png_read_rows_guarded(guard.png, rows.data()))
    throw ImageError(std::string("corrupt PNG (data): ") + state.message);

  Image out;
  out.width = int(header.width);
  out.height = int(header.height);
  out.channels = channels;
  const size_t count = size_t(out.width) * size_t(out.height);
  out.pixels.resize(count * size_t(channels));
  convert_channels(raw.data(), header.channels, out.pixels.data(), channels, count);
  return out;
}

// Names a few formats that show up in scraped image folders, for a more useful message.
std::string describe_unknown(const uint8_t* d, size_t n) {
  auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(d, magic, len) == 0; };
  if (starts("GIF8", 4)) return "GIF";
  if (starts("BM", 2)) return "BMP";
  if (n >= 12 && starts("RIFF", 4) && std::memcmp(d + 8, "WEBP", 4) == 0) return "WebP";
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return "TIFF";
  if (n >= 12 && std::memcmp(d + 4, "ftyp", 4) == 0) return "HEIF/AVIF or video";
  return "unknown";
}

}  // namespace

ImageFormat sniff_format(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (data && size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return ImageFormat::Jpeg;
  if (data && size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFormat::Png;
  return ImageFormat::Unknown;
}

Image decode_image(const uint8_t* data, size_t size, int channels, int min_side) {
  check_channels(channels);
  if (!data || size == 0) throw ImageError("empty file");
  // Decide by content, not by file name: ImageNet's train set has a PNG named .JPEG.
  switch (sniff_format(data, size)) {
    case ImageFormat::Jpeg:
      return decode_jpeg(data, size, channels, min_side);
    case ImageFormat::Png:
      return decode_png(data, size, channels);
    default:
      throw ImageError("not a JPEG or PNG file (format: " + describe_unknown(data, size) + ")");
  }
}

Image read_image_file(const std::string& path, int channels, int min_side) {
  // file_size first: it reports a missing file or a directory by name (an ifstream happily
  // "opens" a directory and then claims an absurd size).
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw ImageError(path + ": cannot read: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size)))
    throw ImageError(path + ": read error");
  try {
    return decode_image(bytes.data(), bytes.size(), channels, min_side);
  } catch (const ImageError& e) {
    throw ImageError(path + ": " + e.what());
  }
}

std::vector<uint8_t> encode_png(const Image& image) {
  check_image(image);
  // The simplified write API keeps libpng's longjmp internal (png_safe_execute); for 8-bit data
  // it stores the values as given and tags them sRGB.
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = png_uint_32(image.width);
  img.height = png_uint_32(image.height);
  img.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t bytes = PNG_IMAGE_PNG_SIZE_MAX(img);
  std::vector<uint8_t> out(bytes);
  if (!png_image_write_to_memory(&img, out.data(), &bytes, 0, image.pixels.data(), 0, nullptr)) {
    const std::string msg = img.message;
    png_image_free(&img);
    throw std::runtime_error("PNG encoding failed: " + msg);
  }
  out.resize(bytes);
  return out;
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  check_image(image);
  if (quality < 1 || quality > 100)
    throw std::invalid_argument("JPEG quality must be in [1, 100], got " + std::to_string(quality));
  TjHandle tj(tjInitCompress());
  if (!tj) throw std::runtime_error(std::string("tjInitCompress: ") + tjGetErrorStr2(nullptr));
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const bool gray = image.channels == 1;
  // 4:2:0 is what cameras and ImageNet use; gray has no chroma.
  if (tjCompress2(tj.get(), image.pixels.data(), image.width, 0, image.height,
                  gray ? TJPF_GRAY : TJPF_RGB, &buf, &size, gray ? TJSAMP_GRAY : TJSAMP_420,
                  quality, 0) != 0) {
    const std::string msg = tjGetErrorStr2(tj.get());
    tjFree(buf);
    throw std::runtime_error("JPEG encoding failed: " + msg);
  }
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(path + ": cannot open for writing: " + std::strerror(errno));
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
}

}  // namespace vdm
