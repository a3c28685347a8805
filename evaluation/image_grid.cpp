// Tiling of image batches into one PNG.
#include "evaluation/image_grid.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "data/atomic_file.h"

namespace vdm {

Image make_grid(const torch::Tensor& images, int64_t columns, int64_t padding, uint8_t pad_value) {
  if (images.dim() != 4 || images.scalar_type() != torch::kUInt8)
    throw std::invalid_argument("image grid: want uint8 [N, C, H, W], got " +
                                std::string(images.dtype().name()) + " " + c10::str(images.sizes()));
  const int64_t N = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  if (N < 1 || (C != 1 && C != 3))
    throw std::invalid_argument("image grid: want N >= 1 images of 1 or 3 channels, got " +
                                c10::str(images.sizes()));
  if (padding < 0 || columns < 0)
    throw std::invalid_argument("image grid: columns and padding must be >= 0");
  if (columns == 0) columns = int64_t(std::ceil(std::sqrt(double(N))));
  columns = std::min(columns, N);
  const int64_t rows = (N + columns - 1) / columns;
  const int64_t height = rows * H + (rows + 1) * padding, width = columns * W + (columns + 1) * padding;

  auto src = images.to(torch::kCPU).permute({0, 2, 3, 1});  // NHWC, as Image stores pixels
  auto canvas = torch::full({height, width, C}, int64_t(pad_value), torch::kUInt8);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t y = padding + (n / columns) * (H + padding), x = padding + (n % columns) * (W + padding);
    canvas.slice(0, y, y + H).slice(1, x, x + W).copy_(src[n]);
  }
  Image out;
  out.width = int(width);
  out.height = int(height);
  out.channels = int(C);
  out.pixels.assign(canvas.data_ptr<uint8_t>(), canvas.data_ptr<uint8_t>() + canvas.numel());
  return out;
}

void write_image_grid(const std::string& path, const torch::Tensor& images, int64_t columns,
                      int64_t padding) {
  const auto png = encode_png(make_grid(images, columns, padding));
  write_file_atomically(path, png.data(), png.size());
}

}  // namespace vdm
