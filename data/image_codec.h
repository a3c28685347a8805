// Image decoding and encoding: JPEG through libjpeg-turbo (with DCT-domain downscaling when a
// much smaller result is wanted) and PNG through libpng, to 8-bit gray or RGB in HWC order.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace vdm {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;              // height x width x channels, row-major
};

// A file that is not a decodable JPEG/PNG: corrupt, truncated, or another format.
struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class ImageFormat { Jpeg, Png, Unknown };
ImageFormat sniff_format(const uint8_t* data, size_t size);

// Decodes to `channels` (1 or 3) channels, converting colour spaces as needed. min_side > 0
// lets a JPEG decode at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's DCT scaling, much faster) as
// long as the shorter side stays >= min_side. Throws ImageError.
Image decode_image(const uint8_t* data, size_t size, int channels, int min_side = 0);
Image read_image_file(const std::string& path, int channels, int min_side = 0);

std::vector<uint8_t> encode_png(const Image& image);
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 90);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace vdm
