#include "edgehmr/sat_frame.h"

#include <algorithm>
#include <cmath>

#include "edgehmr/errors.h"

namespace edgehmr {

namespace {
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

struct Taps {
  std::vector<int> index;  // left/top source sample
  std::vector<float> a0, a1;
};

// Two-tap coefficients as OpenCV's float INTER_LINEAR resize gives them: the source position and its fraction in
// double, the weights rounded to float once; edges clamp by zeroing the weight. (Measured against opencv-python
// 5.0 on float images: 3e-5 grey levels apart at most; a position rounded to float first is 100x further off.)
Taps taps(int out, int in) {
  const double scale = 1.0 / (static_cast<double>(out) / in);  // OpenCV: scale = 1/inv_scale
  Taps t;
  t.index.resize(out);
  t.a0.resize(out);
  t.a1.resize(out);
  for (int d = 0; d < out; ++d) {
    double f = (d + 0.5) * scale - 0.5;
    int s = static_cast<int>(std::floor(f));
    f -= s;
    if (s < 0) {
      f = 0.0;
      s = 0;
    }
    if (s >= in - 1) {
      f = 0.0;
      s = in - 1;
    }
    t.index[d] = s;
    t.a0[d] = static_cast<float>(1.0 - f);
    t.a1[d] = static_cast<float>(f);
  }
  return t;
}
}  // namespace

std::vector<float> resize_bilinear(const std::vector<float>& src, int width, int height, int out_w, int out_h) {
  const Taps tx = taps(out_w, width), ty = taps(out_h, height);
  // Horizontal pass per source row, then the vertical blend of two rows: OpenCV's order of operations.
  std::vector<float> rows(static_cast<size_t>(height) * out_w * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < out_w; ++x) {
      const int s0 = tx.index[x], s1 = std::min(s0 + 1, width - 1);
      for (int c = 0; c < 3; ++c) {
        const float p0 = src[(static_cast<size_t>(y) * width + s0) * 3 + c];
        const float p1 = src[(static_cast<size_t>(y) * width + s1) * 3 + c];
        rows[(static_cast<size_t>(y) * out_w + x) * 3 + c] = p0 * tx.a0[x] + p1 * tx.a1[x];
      }
    }
  std::vector<float> out(static_cast<size_t>(out_h) * out_w * 3);
  for (int y = 0; y < out_h; ++y) {
    const int r0 = ty.index[y], r1 = std::min(r0 + 1, height - 1);
    for (int i = 0; i < out_w * 3; ++i)
      out[static_cast<size_t>(y) * out_w * 3 + i] = rows[static_cast<size_t>(r0) * out_w * 3 + i] * ty.a0[y] +
                                                      rows[static_cast<size_t>(r1) * out_w * 3 + i] * ty.a1[y];
  }
  return out;
}

Frame prepare_frame(const Image& image, int canvas_w, int canvas_h) {
  if (image.width <= 0 || image.height <= 0 || image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw ImageError("an empty or malformed image was given for the SAT-HMR frame");
  Frame f;
  f.scale = std::min(static_cast<double>(canvas_w) / image.width, static_cast<double>(canvas_h) / image.height);
  f.resized_w = std::min(static_cast<int>(image.width * f.scale), canvas_w);
  f.resized_h = std::min(static_cast<int>(image.height * f.scale), canvas_h);
  const std::vector<float> src(image.rgb.begin(), image.rgb.end());
  const std::vector<float> resized = resize_bilinear(src, image.width, image.height, f.resized_w, f.resized_h);
  const size_t plane = static_cast<size_t>(canvas_w) * canvas_h;
  f.chw.resize(3 * plane);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < canvas_h; ++y)
      for (int x = 0; x < canvas_w; ++x) {
        const float v = (y < f.resized_h && x < f.resized_w)
                            ? resized[(static_cast<size_t>(y) * f.resized_w + x) * 3 + c] : 0.f;
        // numpy: float32 / 255.0 stays float32, then (v - mean) / std in float32
        f.chw[c * plane + static_cast<size_t>(y) * canvas_w + x] = (v / 255.0f - kMean[c]) / kStd[c];
      }
  return f;
}

}  // namespace edgehmr
