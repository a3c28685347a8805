// Sample grids: a batch of uint8 NCHW images tiled row-major into one picture with padding
// between and around the tiles, and written as a PNG atomically.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "data/image_codec.h"

namespace vdm {

// images: uint8 [N, C, H, W] with C = 1 or 3, N >= 1, on any device. columns = 0 picks
// ceil(sqrt(N)); more columns than images are cut to N. Unused tiles and the padding take
// pad_value.
Image make_grid(const torch::Tensor& images, int64_t columns = 0, int64_t padding = 2,
                uint8_t pad_value = 255);

void write_image_grid(const std::string& path, const torch::Tensor& images, int64_t columns = 0,
                      int64_t padding = 2);

}  // namespace vdm
