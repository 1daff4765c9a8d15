#include "edgehmr/sat_frame.h"

#include <algorithm>
#include <cmath>

#include "edgehmr/errors.h"

namespace edgehmr {

namespace {
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

constexpr int kCoefBits = 11;  // OpenCV's INTER_RESIZE_COEF_BITS
constexpr int kCoefOne = 1 << kCoefBits;

// Two-tap fixed-point coefficients of one axis as OpenCV's uint8 INTER_LINEAR computes them: the source position
// in double, narrowed to float before the floor and the fraction, each weight rounded (to even) on its own.
struct Taps {
  std::vector<int> index;  // first source sample (second: index + 1, clamped)
  std::vector<int> w0, w1;
  int last_interior = 0;  // columns from here on copy their clamped sample (x axis only)
};

Taps taps(int out, int in, bool clamp_start) {
  const double scale = 1.0 / (static_cast<double>(out) / in);  // OpenCV: scale = 1/inv_scale
  Taps t;
  t.index.resize(out);
  t.w0.resize(out);
  t.w1.resize(out);
  t.last_interior = out;
  for (int d = 0; d < out; ++d) {
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    int s = static_cast<int>(std::floor(f));
    f -= static_cast<float>(s);
    if (clamp_start && s < 0) {  // columns only: rows keep their fraction and clamp the row index instead
      f = 0.f;
      s = 0;
    }
    if (clamp_start && s + 1 >= in) {
      t.last_interior = std::min(t.last_interior, d);
      if (s >= in - 1) {
        f = 0.f;
        s = in - 1;
      }
    }
    t.index[d] = s;
    t.w0[d] = static_cast<int>(std::nearbyint((1.f - f) * static_cast<float>(kCoefOne)));
    t.w1[d] = static_cast<int>(std::nearbyint(f * static_cast<float>(kCoefOne)));
  }
  return t;
}

// One side set to exactly `side`, the other by the float32 rate, truncated (the reference's torch arithmetic:
// `int / tensor` is a float32 reciprocal times the int, then a float32 product).
void side_to(int width, int height, int side, bool along_width, Frame& f) {
  const float rate = static_cast<float>(side) * (1.0f / static_cast<float>(along_width ? width : height));
  const int other = static_cast<int>(rate * static_cast<float>(along_width ? height : width));
  f.scale = rate;
  f.resized_w = along_width ? side : other;
  f.resized_h = along_width ? other : side;
}
}  // namespace

void fit_resize(int width, int height, int canvas_w, int canvas_h, Frame& f) {
  const bool long_is_width = width >= height;
  for (const bool along : {long_is_width, !long_is_width}) {
    side_to(width, height, along ? canvas_w : canvas_h, along, f);
    if (f.resized_w <= canvas_w && f.resized_h <= canvas_h) return;
  }
  throw ImageError("a frame does not fit the canvas either way");  // unreachable, as in Python
}

std::vector<uint8_t> resize_bilinear_u8(const std::vector<uint8_t>& src, int width, int height, int out_w,
                                        int out_h) {
  const Taps tx = taps(out_w, width, true), ty = taps(out_h, height, false);
  // Horizontal pass per source row in exact integers (weights sum to 2^11)...
  std::vector<int32_t> rows(static_cast<size_t>(height) * out_w * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < out_w; ++x) {
      const int s0 = tx.index[x], s1 = std::min(s0 + 1, width - 1);
      for (int c = 0; c < 3; ++c) {
        const int p0 = src[(static_cast<size_t>(y) * width + s0) * 3 + c];
        const int p1 = src[(static_cast<size_t>(y) * width + s1) * 3 + c];
        rows[(static_cast<size_t>(y) * out_w + x) * 3 + c] =
            x < tx.last_interior ? p0 * tx.w0[x] + p1 * tx.w1[x] : p0 * kCoefOne;
      }
    }
  // ...then the vertical blend of two rows with OpenCV's shifts: each product of a row value shifted right by 4
  // and a weight, shifted right by 16, summed, rounded by (sum + 2) >> 2.
  std::vector<uint8_t> out(static_cast<size_t>(out_h) * out_w * 3);
  for (int y = 0; y < out_h; ++y) {
    const int r0 = std::clamp(ty.index[y], 0, height - 1), r1 = std::clamp(ty.index[y] + 1, 0, height - 1);
    const int32_t* row0 = &rows[static_cast<size_t>(r0) * out_w * 3];
    const int32_t* row1 = &rows[static_cast<size_t>(r1) * out_w * 3];
    for (int i = 0; i < out_w * 3; ++i) {
      const int v = (((ty.w0[y] * (row0[i] >> 4)) >> 16) + ((ty.w1[y] * (row1[i] >> 4)) >> 16) + 2) >> 2;
      out[static_cast<size_t>(y) * out_w * 3 + i] = static_cast<uint8_t>(std::clamp(v, 0, 255));
    }
  }
  return out;
}

Frame prepare_frame(const Image& image, int canvas_w, int canvas_h) {
  if (image.width <= 0 || image.height <= 0 || image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw ImageError("an empty or malformed image was given for the SAT-HMR frame");
  Frame f;
  fit_resize(image.width, image.height, canvas_w, canvas_h, f);
  const std::vector<uint8_t> resized = resize_bilinear_u8(image.rgb, image.width, image.height, f.resized_w,
                                                         f.resized_h);
  const size_t plane = static_cast<size_t>(canvas_w) * canvas_h;
  f.chw.resize(3 * plane);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < canvas_h; ++y)
      for (int x = 0; x < canvas_w; ++x) {
        const float v = (y < f.resized_h && x < f.resized_w)
                            ? static_cast<float>(resized[(static_cast<size_t>(y) * f.resized_w + x) * 3 + c]) : 0.f;
        // numpy: float32 / 255.0 stays float32, then (v - mean) / std in float32
        f.chw[c * plane + static_cast<size_t>(y) * canvas_w + x] = (v / 255.0f - kMean[c]) / kStd[c];
      }
  return f;
}

}  // namespace edgehmr
