// Image transforms for training data: the ADM/EDM center crop + resize (repeated 2x box
// downscaling while the image is at least twice the target, then one bicubic or Lanczos
// resize of the shorter side to R, then a center crop), HWC -> CHW, and horizontal flips.
#pragma once

#include <cstdint>

#include "data/image_codec.h"

namespace vdm {

enum class ResizeFilter { Bicubic, Lanczos };

Image center_crop_resize(const Image& image, int resolution, ResizeFilter filter = ResizeFilter::Bicubic);

// Writes image as channels x height x width into out (height * width * channels bytes).
void to_chw(const Image& image, uint8_t* out);

// Mirrors a CHW uint8 image left-right in place.
void flip_horizontal_chw(uint8_t* chw, int channels, int height, int width);

}  // namespace vdm
