// The ADM/EDM center crop + resize (guided-diffusion image_datasets.py center_crop_arr), built on
// a separable resampler with PIL-style antialiasing, plus HWC -> CHW and horizontal flips.
// All pixel arithmetic is in float; only the final result is rounded and clamped to uint8.
#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <memory>
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
// Sampling model (the one Pillow's resize uses, libImaging/Resample.c): output pixel i covers the source interval
// [i, i + 1) * scale, scale = in / out, and its centre is (i + 0.5) * scale. When downscaling,
// the kernel is stretched by the scale factor so it integrates over every source pixel the
// output covers (antialiasing); when upscaling it is used as is. Weights are normalised to sum
// to 1, which also handles the taps cut off at the image border. With the same model and
// kernels, results equal Pillow's float32 ("F" mode) resize exactly (see test_image.cpp).
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

// Horizontal taps applied to one float row (the row starts at source column `col0`), giving
// tx.first.size() output pixels. One scalar accumulator per channel keeps the sums in
// registers (an accumulator array in memory costs a store-forwarding round trip per tap).
template <int C>
void horizontal_fixed(const float* __restrict row, int col0, const AxisTaps& tx, float* __restrict out) {
  static_assert(C == 1 || C == 3, "specialised for gray and RGB");
  const int nx = int(tx.first.size());
  for (int x = 0; x < nx; ++x) {
    const float* wt = tx.weights.data() + size_t(x) * tx.max_taps;
    const float* p = row + size_t(tx.first[x] - col0) * C;
    const int n = tx.taps[x];
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int j = 0; j < n; ++j, p += C) {
      const float wj = wt[j];
      a0 += wj * p[0];
      if constexpr (C == 3) {
        a1 += wj * p[1];
        a2 += wj * p[2];
      }
    }
    out[x * C] = a0;
    if constexpr (C == 3) {
      out[x * C + 1] = a1;
      out[x * C + 2] = a2;
    }
  }
}

void horizontal(const float* row, int col0, int c, const AxisTaps& tx, float* out) {
  if (c == 3) return horizontal_fixed<3>(row, col0, tx, out);
  if (c == 1) return horizontal_fixed<1>(row, col0, tx, out);
  const int nx = int(tx.first.size());
  for (int x = 0; x < nx; ++x) {
    const float* wt = tx.weights.data() + size_t(x) * tx.max_taps;
    const float* p = row + size_t(tx.first[x] - col0) * c;
    for (int ch = 0; ch < c; ++ch) {
      float acc = 0.0f;
      for (int j = 0; j < tx.taps[x]; ++j) acc += wt[j] * p[j * c + ch];
      out[x * c + ch] = acc;
    }
  }
}

// dst[i] (+)= weight * src[i] along a row; __restrict lets the compiler vectorise it.
template <class T>
void scaled_row(float* __restrict dst, const T* __restrict src, float weight, size_t n, bool accumulate) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) dst[i] += weight * float(src[i]);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = weight * float(src[i]);
  }
}

// out[x] = scale * (in[2x] + in[2x + 1]) per channel: the horizontal half of a 2x box
// reduction. The channel count is a template argument so the loop compiles to straight code.
template <int C>
void pair_sum_fixed(const float* __restrict in, float* __restrict out, size_t nx, float scale) {
  for (size_t x = 0; x < nx; ++x)
    for (int ch = 0; ch < C; ++ch) out[x * C + ch] = scale * (in[2 * x * C + ch] + in[(2 * x + 1) * C + ch]);
}

void pair_sum(const float* in, float* out, size_t nx, int c, float scale) {
  if (c == 3) return pair_sum_fixed<3>(in, out, nx, scale);
  if (c == 1) return pair_sum_fixed<1>(in, out, nx, scale);
  for (size_t x = 0; x < nx; ++x)
    for (int ch = 0; ch < c; ++ch) out[x * c + ch] = scale * (in[2 * x * c + ch] + in[(2 * x + 1) * c + ch]);
}

// Per-thread scratch memory reused across calls: a fresh multi-megabyte buffer per image costs
// more in page faults and zeroing than the arithmetic done in it. Buffers grown beyond
// kKeepFloats (images far larger than ImageNet's) are released after the call.
constexpr size_t kKeepFloats = size_t(4) << 20;

struct Scratch {
  std::unique_ptr<float[]> data;
  size_t capacity = 0;
  float* get(size_t n) {
    if (n > capacity) {
      data.reset(new float[n]);
      capacity = n;
    }
    return data.get();
  }
  void trim() {
    if (capacity > kKeepFloats) data.reset(), capacity = 0;
  }
};

// Resamples a w x h x c image to out_w x out_h, computing only the window
// [x0, x0 + nx) x [y0, y0 + ny) of the output (the center crop: the pixels outside it would be
// thrown away), into out (ny x nx x c). Separable: for each output row, the weighted sum of
// its source rows (contiguous, vectorised) restricted to the columns the window needs, then
// the horizontal taps on that one row. In exact arithmetic the order of the two passes does
// not matter (PIL does horizontal first); this order needs one row of scratch and puts the
// bulk of the work in the vectorised loop. An axis whose size does not change is copied, not
// filtered (the kernels interpolate, so that is the same result).
template <class T>
void resample(const T* src, int w, int h, int c, int out_w, int out_h, Kernel kernel, int x0, int nx, int y0,
              int ny, float* out) {
  const bool filter_x = out_w != w, filter_y = out_h != h;
  AxisTaps tx, ty;
  int col_lo = x0, col_hi = x0 + nx;  // source columns the window reads
  if (filter_x) {
    tx = make_taps(w, out_w, kernel, x0, nx);
    col_lo = w, col_hi = 0;
    for (int i = 0; i < nx; ++i) {
      col_lo = std::min(col_lo, tx.first[i]);
      col_hi = std::max(col_hi, tx.first[i] + tx.taps[i]);
    }
  }
  if (filter_y) ty = make_taps(h, out_h, kernel, y0, ny);
  const bool pairs_x = kernel == Kernel::Box && w == 2 * out_w && x0 == 0;

  const size_t row_len = size_t(col_hi - col_lo) * c, out_len = size_t(nx) * c;
  std::vector<float> row(filter_x ? row_len : 0);
  for (int y = 0; y < ny; ++y) {
    float* dst = out + size_t(y) * out_len;
    float* acc = filter_x ? row.data() : dst;  // without x filtering the row is the output
    if (filter_y) {
      const float* wt = ty.weights.data() + size_t(y) * ty.max_taps;
      for (int j = 0; j < ty.taps[y]; ++j)
        scaled_row(acc, src + (size_t(ty.first[y] + j) * w + col_lo) * c, wt[j], row_len, j > 0);
    } else {
      const T* in = src + (size_t(y0 + y) * w + col_lo) * c;
      std::transform(in, in + row_len, acc, [](T v) { return float(v); });
    }
    if (pairs_x) {
      // Box at scale exactly 2 (an even width in a halving): the two taps are 0.5 and 0.5.
      pair_sum(acc, dst, size_t(nx), c, 0.5f);
    } else if (filter_x) {
      horizontal(acc, col_lo, c, tx, dst);
    }
  }
}

// Exact 2x downscaling of an image with even width and height: the mean of each 2x2 block.
// This is what the box resample gives at scale exactly 2, only faster: the vertical pair sum
// runs over whole rows (vectorised), then horizontal pairs are added.
template <class T>
void halve_even(const T* src, int w, int h, int c, float* out) {
  const int ow = w / 2, oh = h / 2;
  const size_t row_len = size_t(w) * c;
  std::vector<float> pair(row_len);
  float* __restrict sum = pair.data();
  for (int y = 0; y < oh; ++y) {
    const T* __restrict r0 = src + size_t(2 * y) * row_len;
    const T* __restrict r1 = r0 + row_len;
    for (size_t i = 0; i < row_len; ++i) sum[i] = float(r0[i]) + float(r1[i]);
    pair_sum(sum, out + size_t(y) * ow * c, size_t(ow), c, 0.25f);
  }
}

// ADM's reduction step, pil_image.resize((w // 2, h // 2), Image.BOX): the size is floored, and
// for an odd side the scale is w / (w // 2) > 2, so PIL's box filter averages the 2 or 3 source
// pixels whose centres fall in each output pixel. Reproduced exactly (up to float rounding)
// through the general resampler; even sizes take the 2x2-mean fast path.
template <class T>
void halve(const T* src, int w, int h, int c, float* out) {
  if (w % 2 == 0 && h % 2 == 0) return halve_even(src, w, h, c, out);
  resample(src, w, h, c, w / 2, h / 2, Kernel::Box, 0, w / 2, 0, h / 2, out);
}

// Round half up, as PIL's fixed-point resampler does, and clamp the bicubic/Lanczos overshoot.
// Written branch-free through int so that the loop vectorises.
void to_u8(const float* __restrict in, uint8_t* __restrict out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(in[i] + 0.5f, 0.0f), 255.0f);
    out[i] = uint8_t(int(v));
  }
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
  //    Intermediates stay float, ping-ponging between two scratch buffers.
  thread_local Scratch scratch[2];
  const float* cur = nullptr;
  int which = 0;
  while (std::min(w, h) >= 2 * R) {
    float* next = scratch[which].get(size_t(w / 2) * (h / 2) * c);
    if (cur)
      halve(cur, w, h, c, next);
    else
      halve(image.pixels.data(), w, h, c, next);
    cur = next, which ^= 1;
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
  std::vector<float> out(size_t(R) * R * c);
  if (cur)
    resample(cur, w, h, c, out_w, out_h, kernel, x0, R, y0, R, out.data());
  else
    resample(image.pixels.data(), w, h, c, out_w, out_h, kernel, x0, R, y0, R, out.data());
  scratch[0].trim(), scratch[1].trim();

  Image result;
  result.width = R;
  result.height = R;
  result.channels = c;
  result.pixels.resize(out.size());
  to_u8(out.data(), result.pixels.data(), out.size());
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
