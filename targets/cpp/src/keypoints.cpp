#include "edgehmr/keypoints.h"

#include <algorithm>
#include <cmath>

namespace edgehmr {

namespace {
constexpr int kDarkKernel = 11;
constexpr float kClipLow = 0.001f, kClipHigh = 50.0f;  // blurred values are clipped to this before the log

// OpenCV's BORDER_REFLECT_101 index (the edge pixel is not repeated).
int reflect101(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

// cv::getGaussianKernel(ksize, 0, CV_32F) for an odd ksize > 7: sigma = 0.15*ksize + 0.35 (one rounding, as
// OpenCV's fused form), the half-kernel's exponentials summed and doubled plus the centre's 1, each value times
// the reciprocal of that sum, rounded to float.
std::vector<float> opencv_gaussian_kernel(int ksize) {
  const double sigma = std::fma(double(ksize), 0.15, 0.35);
  const double scale = -0.125 / (sigma * sigma);  // -0.5 / sigma^2 with x counted in half steps below
  const int half = (ksize - 1) / 2;
  std::vector<double> values(half);
  double sum = 0;
  for (int i = 0, x = 1 - ksize; i < half; ++i, x += 2) sum += values[i] = std::exp(double(x * x) * scale);
  sum = sum * 2.0 + 1.0;
  const double mul = 1.0 / sum;
  std::vector<float> k(ksize);
  for (int i = 0; i < half; ++i) k[i] = k[ksize - 1 - i] = float(values[i] * mul);
  k[half] = float(mul);
  return k;
}
}  // namespace

std::vector<float> gaussian_blur_map(const float* map, int height, int width, int ksize) {
  const std::vector<float> k = opencv_gaussian_kernel(ksize);
  const int r = ksize / 2;
  std::vector<float> rows(size_t(height) * width), out(size_t(height) * width);
  // Rows (OpenCV's RowVec_32f): left to right, fused.
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const float* s = map + size_t(y) * width;
      float acc = k[0] * s[reflect101(x - r, width)];
      for (int i = 1; i < ksize; ++i) acc = std::fma(k[i], s[reflect101(x + i - r, width)], acc);
      rows[size_t(y) * width + x] = acc;
    }
  // Columns (SymmColumnVec_32f): the centre, then each symmetric pair from the inside out, fused.
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      auto px = [&](int yy) { return rows[size_t(reflect101(yy, height)) * width + x]; };
      float acc = px(y) * k[r];
      for (int j = 1; j <= r; ++j) acc = std::fma(px(y - j) + px(y + j), k[r + j], acc);
      out[size_t(y) * width + x] = acc;
    }
  return out;
}

std::vector<std::array<double, 3>> decode_heatmaps(const float* heatmaps, int keypoints, int height, int width,
                                                   const std::array<double, 2>& center,
                                                   const std::array<double, 2>& size, double max_step) {
  const size_t plane = size_t(height) * width;
  // The log of every blurred, clipped map, edge-padded by one pixel, the maps one after another: the Newton step
  // reads its neighbours by flat offsets into this, as the original does.
  const int pw = width + 2, ph = height + 2;
  const size_t pplane = size_t(pw) * ph;
  std::vector<float> logs(pplane * keypoints);
  for (int k = 0; k < keypoints; ++k) {
    const std::vector<float> blurred = gaussian_blur_map(heatmaps + k * plane, height, width, kDarkKernel);
    float* p = logs.data() + k * pplane;
    for (int y = 0; y < ph; ++y)
      for (int x = 0; x < pw; ++x) {
        const int sx = std::clamp(x - 1, 0, width - 1), sy = std::clamp(y - 1, 0, height - 1);
        const float v = std::clamp(blurred[size_t(sy) * width + sx], kClipLow, kClipHigh);
        p[size_t(y) * pw + x] = float(std::log(double(v)));  // the correctly rounded float log, as Python
      }
  }
  const long long total = static_cast<long long>(logs.size());
  auto at = [&](long long index) { return logs[size_t(((index % total) + total) % total)]; };  // numpy wrap

  std::vector<std::array<double, 3>> out;
  for (int k = 0; k < keypoints; ++k) {
    const float* hm = heatmaps + k * plane;
    const size_t peak = static_cast<size_t>(std::max_element(hm, hm + plane) - hm);  // first maximum, as argmax
    const double maxval = hm[peak];
    int ix = int(peak % width), iy = int(peak / width);
    if (maxval <= 0) ix = iy = -1;

    // DARK-UDP: derivatives at padded pixel (x + 1, y + 1) of map k, in float32 and in the original's order
    const long long c = (ix + 1) + (long long)(iy + 1) * pw + (long long)k * pplane;
    const float i0 = at(c), right = at(c + 1), left = at(c - 1), down = at(c + pw), up = at(c - pw);
    const float down_right = at(c + pw + 1), up_left = at(c - pw - 1);
    const float gx = 0.5f * (right - left), gy = 0.5f * (down - up);
    const float hxx = right - 2.0f * i0 + left, hyy = down - 2.0f * i0 + up;
    const float hxy = 0.5f * (down_right - right - down + i0 + i0 - left - up + up_left);
    // the Hessian plus float32 eps on its diagonal, inverted in double
    const double eps = std::numeric_limits<float>::epsilon();
    const double a = double(hxx) + eps, b = double(hxy), d = double(hyy) + eps;
    const double det = a * d - b * b;
    const double sx = (d * gx - b * gy) / det, sy = (a * gy - b * gx) / det;
    double x = ix, y = iy;
    if (std::isfinite(sx) && std::isfinite(sy) && std::abs(sx) <= max_step && std::abs(sy) <= max_step) {
      x = float(x - sx);  // the original keeps its coordinates in float32
      y = float(y - sy);
    }
    // UDP inverse transform: heatmap pixel centres 0 and W-1 are the crop region's edges
    out.push_back({x * size[0] / (width - 1) + center[0] - size[0] / 2.0,
                   y * size[1] / (height - 1) + center[1] - size[1] / 2.0, maxval});
  }
  return out;
}

}  // namespace edgehmr
