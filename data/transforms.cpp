// The ADM/EDM center crop + resize (guided-diffusion image_datasets.py center_crop_arr), built on
// a separable resampler with PIL-style antialiasing, plus HWC -> CHW and horizontal flips.
// All pixel arithmetic is in float; only the final result is rounded and clamped to uint8.
#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace vdm {
namespace {

enum class Kernel { Box, Bicubic, Lanczos3 };

double kernel_support(Kernel k) {
  switch (k) {
    case Kernel::Box: return 0.5;
    case Kernel::Bicubic: return 2.0;
    case Kernel::Lanczos3: return 3.0;
  }
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= 3.14159265358979323846;
  return std::sin(x) / x;
}

double kernel_value(Kernel k, double x) {
  switch (k) {
    case Kernel::Box:
      // Half-open so that a source pixel centre on an output pixel boundary counts once;
      // the same side as Pillow's box filter.
      return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    case Kernel::Bicubic: {
      // Keys' cubic convolution with a = -0.5 (Keys 1981; PIL's BICUBIC).
      constexpr double a = -0.5;
      x = std::abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
      if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
      return 0.0;
    }
    case Kernel::Lanczos3:
      return (x > -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
  }
  return 0.0;
}

// The taps of one axis for output indices [begin, begin + count): output i reads source
// samples [first[i], first[i] + taps[i]) with weights[i * max_taps + j].
//
// Sampling model (the one PIL's resize uses): output pixel i covers the source interval
// [i, i + 1) * scale, scale = in / out, and its centre is (i + 0.5) * scale. When downscaling,
// the kernel is stretched by the scale factor so it integrates over every source pixel the
// output covers (antialiasing); when upscaling it is used as is. Weights are normalised to sum
// to 1, which also handles the taps cut off at the image border.
struct AxisTaps {
  int max_taps = 0;
  std::vector<int> first, taps;
  std::vector<float> weights;
};

AxisTaps make_taps(int in_size, int out_size, Kernel kernel, int begin, int count) {
  const double scale = double(in_size) / double(out_size);
  const double stretch = std::max(scale, 1.0);
  const double support = kernel_support(kernel) * stretch;
  AxisTaps t;
  t.max_taps = int(std::ceil(support)) * 2 + 1;
  t.first.resize(count);
  t.taps.resize(count);
  t.weights.assign(size_t(count) * t.max_taps, 0.0f);
  std::vector<double> w(t.max_taps);
  for (int i = 0; i < count; ++i) {
    const double center = (begin + i + 0.5) * scale;
    const int lo = std::max(int(std::floor(center - support + 0.5)), 0);
    const int hi = std::min(int(std::floor(center + support + 0.5)), in_size);
    const int n = std::min(hi - lo, t.max_taps);
    double total = 0.0;
    for (int j = 0; j < n; ++j) {
      w[j] = kernel_value(kernel, (lo + j + 0.5 - center) / stretch);
      total += w[j];
    }
    t.first[i] = lo;
    t.taps[i] = n;
    for (int j = 0; j < n; ++j) t.weights[size_t(i) * t.max_taps + j] = float(total != 0.0 ? w[j] / total : 0.0);
  }
  return t;
}

// Horizontal pass: for each of `rows` rows of `src` (width w, C channels, row stride w * C),
// writes the output columns described by `tx` into dst (tx.first.size() columns per row).
template <int C, class T>
void horizontal_fixed(const T* src, int w, int rows, const AxisTaps& tx, float* dst) {
  const int nx = int(tx.first.size());
  for (int y = 0; y < rows; ++y) {
    const T* row = src + size_t(y) * w * C;
    float* out = dst + size_t(y) * nx * C;
    for (int x = 0; x < nx; ++x) {
      const float* wt = tx.weights.data() + size_t(x) * tx.max_taps;
      const T* p = row + size_t(tx.first[x]) * C;
      float acc[C] = {};
      for (int j = 0; j < tx.taps[x]; ++j)
        for (int ch = 0; ch < C; ++ch) acc[ch] += wt[j] * float(p[j * C + ch]);
      for (int ch = 0; ch < C; ++ch) out[x * C + ch] = acc[ch];
    }
  }
}

template <class T>
void horizontal_any(const T* src, int w, int c, int rows, const AxisTaps& tx, float* dst) {
  const int nx = int(tx.first.size());
  for (int y = 0; y < rows; ++y) {
    const T* row = src + size_t(y) * w * c;
    float* out = dst + size_t(y) * nx * c;
    for (int x = 0; x < nx; ++x) {
      const float* wt = tx.weights.data() + size_t(x) * tx.max_taps;
      const T* p = row + size_t(tx.first[x]) * c;
      for (int ch = 0; ch < c; ++ch) {
        float acc = 0.0f;
        for (int j = 0; j < tx.taps[x]; ++j) acc += wt[j] * float(p[j * c + ch]);
        out[x * c + ch] = acc;
      }
    }
  }
}

template <class T>
void horizontal(const T* src, int w, int c, int rows, const AxisTaps& tx, float* dst) {
  if (c == 3) return horizontal_fixed<3>(src, w, rows, tx, dst);
  if (c == 1) return horizontal_fixed<1>(src, w, rows, tx, dst);
  horizontal_any(src, w, c, rows, tx, dst);
}

// Resamples a w x h x c image to out_w x out_h, computing only the window
// [x0, x0 + nx) x [y0, y0 + ny) of the output (the center crop: the pixels outside it would be
// thrown away). Horizontal pass first, then vertical, as PIL does. An axis whose size does not
// change is copied, not filtered (the kernels are interpolating, so that is the same result).
template <class T>
std::vector<float> resample(const T* src, int w, int h, int c, int out_w, int out_h, Kernel kernel,
                            int x0, int nx, int y0, int ny) {
  const bool filter_x = out_w != w, filter_y = out_h != h;
  AxisTaps ty;
  int row_lo = y0, row_hi = y0 + ny;  // source rows the vertical pass reads
  if (filter_y) {
    ty = make_taps(h, out_h, kernel, y0, ny);
    row_lo = ty.first.front();
    row_hi = ty.first.back() + ty.taps.back();
    for (int i = 0; i < ny; ++i) {  // first[] is monotone, but be safe with tap counts
      row_lo = std::min(row_lo, ty.first[i]);
      row_hi = std::max(row_hi, ty.first[i] + ty.taps[i]);
    }
  }
  const int rows = row_hi - row_lo;
  const size_t row_len = size_t(nx) * c;

  std::vector<float> tmp(size_t(rows) * row_len);
  const T* src_rows = src + size_t(row_lo) * w * c;
  if (filter_x) {
    horizontal(src_rows, w, c, rows, make_taps(w, out_w, kernel, x0, nx), tmp.data());
  } else {
    for (int y = 0; y < rows; ++y) {
      const T* in = src_rows + size_t(y) * w * c + size_t(x0) * c;
      std::transform(in, in + row_len, tmp.data() + size_t(y) * row_len, [](T v) { return float(v); });
    }
  }
  if (!filter_y) return tmp;  // rows == ny, starting at y0

  std::vector<float> out(size_t(ny) * row_len, 0.0f);
  for (int y = 0; y < ny; ++y) {
    float* dst = out.data() + size_t(y) * row_len;
    const float* wt = ty.weights.data() + size_t(y) * ty.max_taps;
    for (int j = 0; j < ty.taps[y]; ++j) {
      const float* in = tmp.data() + size_t(ty.first[y] + j - row_lo) * row_len;
      const float wj = wt[j];
      for (size_t i = 0; i < row_len; ++i) dst[i] += wj * in[i];  // vectorises over the row
    }
  }
  return out;
}

// Exact 2x downscaling of an image with even width and height: the mean of each 2x2 block.
// This is what the box resample gives at scale exactly 2, only faster.
template <class T>
std::vector<float> halve_even(const T* src, int w, int h, int c) {
  const int ow = w / 2, oh = h / 2;
  std::vector<float> out(size_t(ow) * oh * c);
  const size_t stride = size_t(w) * c;
  for (int y = 0; y < oh; ++y) {
    const T* r0 = src + size_t(2 * y) * stride;
    const T* r1 = r0 + stride;
    float* dst = out.data() + size_t(y) * ow * c;
    for (int x = 0; x < ow; ++x)
      for (int ch = 0; ch < c; ++ch) {
        const size_t a = size_t(2 * x) * c + ch, b = a + c;
        dst[x * c + ch] = 0.25f * ((float(r0[a]) + float(r0[b])) + (float(r1[a]) + float(r1[b])));
      }
  }
  return out;
}

// ADM's reduction step, pil_image.resize((w // 2, h // 2), Image.BOX): the size is floored, and
// for an odd side the scale is w / (w // 2) > 2, so PIL's box filter averages the 2 or 3 source
// pixels whose centres fall in each output pixel. Reproduced exactly (up to float rounding)
// through the general resampler; even sizes take the 2x2-mean fast path.
template <class T>
std::vector<float> halve(const T* src, int w, int h, int c) {
  if (w % 2 == 0 && h % 2 == 0) return halve_even(src, w, h, c);
  return resample(src, w, h, c, w / 2, h / 2, Kernel::Box, 0, w / 2, 0, h / 2);
}

uint8_t to_u8(float v) {
  // Round half up, as PIL's fixed-point resampler does; clamp the bicubic/Lanczos overshoot.
  return uint8_t(std::min(std::max(v, 0.0f), 255.0f) + 0.5f);
}

}  // namespace

Image center_crop_resize(const Image& image, int resolution, ResizeFilter filter) {
  const int R = resolution, c = image.channels;
  if (R <= 0) throw std::invalid_argument("center_crop_resize: resolution must be > 0");
  if (image.width <= 0 || image.height <= 0 || c <= 0 ||
      image.pixels.size() != size_t(image.width) * image.height * c)
    throw std::invalid_argument("center_crop_resize: malformed image " + std::to_string(image.width) +
                                "x" + std::to_string(image.height) + "x" + std::to_string(c));
  int w = image.width, h = image.height;

  // 1. While the image is at least twice the target, halve it with a box filter (cheap, and a
  //    proper low-pass before the final bicubic, which only antialiases over its own support).
  std::vector<float> cur;
  while (std::min(w, h) >= 2 * R) {
    cur = cur.empty() ? halve(image.pixels.data(), w, h, c) : halve(cur.data(), w, h, c);
    w /= 2, h /= 2;
  }

  // 2. Resize so the shorter side is R. ADM: scale = R / min(w, h), size = round(x * scale) with
  //    Python's round (half to even) -- std::nearbyint in the default rounding mode. The max()
  //    only guards against a floating-point R - 1 on the shorter side.
  const double scale = double(R) / double(std::min(w, h));
  const int out_w = std::max(int(std::nearbyint(double(w) * scale)), R);
  const int out_h = std::max(int(std::nearbyint(double(h) * scale)), R);

  // 3. Center crop R x R at ((size - R) / 2) floored; only that window is ever computed.
  const int x0 = (out_w - R) / 2, y0 = (out_h - R) / 2;
  const Kernel kernel = filter == ResizeFilter::Lanczos ? Kernel::Lanczos3 : Kernel::Bicubic;
  const std::vector<float> out =
      cur.empty() ? resample(image.pixels.data(), w, h, c, out_w, out_h, kernel, x0, R, y0, R)
                  : resample(cur.data(), w, h, c, out_w, out_h, kernel, x0, R, y0, R);

  Image result;
  result.width = R;
  result.height = R;
  result.channels = c;
  result.pixels.resize(out.size());
  std::transform(out.begin(), out.end(), result.pixels.begin(), to_u8);
  return result;
}

void to_chw(const Image& image, uint8_t* out) {
  const size_t plane = size_t(image.width) * image.height;
  const int c = image.channels;
  const uint8_t* src = image.pixels.data();
  if (c == 1) {
    std::copy(src, src + plane, out);
    return;
  }
  for (size_t i = 0; i < plane; ++i)
    for (int ch = 0; ch < c; ++ch) out[size_t(ch) * plane + i] = src[i * c + ch];
}

void flip_horizontal_chw(uint8_t* chw, int channels, int height, int width) {
  for (int r = 0; r < channels * height; ++r) {
    uint8_t* row = chw + size_t(r) * width;
    std::reverse(row, row + width);
  }
}

}  // namespace vdm
