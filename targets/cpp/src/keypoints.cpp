#include "edgehmr/keypoints.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace edgehmr {

namespace {
constexpr int kDarkKernel = 11;

// OpenCV's BORDER_REFLECT_101 index (the edge pixel is not repeated).
int reflect101(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}
}  // namespace

std::vector<double> gaussian_blur_map(const std::vector<double>& map, int height, int width, int ksize) {
  // getGaussianKernel(ksize, sigma <= 0): sigma = 0.3*((ksize-1)*0.5 - 1) + 0.8, normalised to sum 1
  const double sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8;
  const int r = ksize / 2;
  std::vector<double> kernel(ksize);
  double sum = 0;
  for (int i = 0; i < ksize; ++i) sum += kernel[i] = std::exp(-0.5 / (sigma * sigma) * (i - r) * (i - r));
  for (double& k : kernel) k /= sum;
  std::vector<double> rows(map.size()), out(map.size());
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      double acc = 0;
      for (int i = 0; i < ksize; ++i) acc += kernel[i] * map[y * width + reflect101(x + i - r, width)];
      rows[y * width + x] = acc;
    }
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      double acc = 0;
      for (int i = 0; i < ksize; ++i) acc += kernel[i] * rows[reflect101(y + i - r, height) * width + x];
      out[y * width + x] = acc;
    }
  return out;
}

std::vector<std::array<double, 3>> decode_heatmaps(const float* heatmaps, int keypoints, int height, int width,
                                                   const std::array<double, 2>& center,
                                                   const std::array<double, 2>& size) {
  std::vector<std::array<double, 3>> out;
  const size_t plane = static_cast<size_t>(height) * width;
  for (int k = 0; k < keypoints; ++k) {
    const float* hm = heatmaps + k * plane;
    const size_t peak = static_cast<size_t>(std::max_element(hm, hm + plane) - hm);  // first maximum, as argmax
    const double maxval = hm[peak];
    double x = static_cast<double>(peak % width), y = static_cast<double>(peak / width);
    if (maxval <= 0) x = y = -1.0;

    // DARK-UDP: log of the blurred map, edge-padded by one pixel; derivatives at the (clamped) peak
    const std::vector<double> blurred = gaussian_blur_map(std::vector<double>(hm, hm + plane), height, width,
                                                          kDarkKernel);
    auto at = [&](int px, int py) {  // the padded log map at padded coordinates (px, py), clamped like numpy
      px = std::clamp(px, 0, width + 1);
      py = std::clamp(py, 0, height + 1);
      const int sx = std::clamp(px - 1, 0, width - 1), sy = std::clamp(py - 1, 0, height - 1);
      return std::log(std::clamp(blurred[sy * width + sx], 0.001, 50.0));
    };
    const int cx = std::clamp(static_cast<int>(x), 0, width - 1) + 1;
    const int cy = std::clamp(static_cast<int>(y), 0, height - 1) + 1;
    const double i0 = at(cx, cy);
    const double dx = 0.5 * (at(cx + 1, cy) - at(cx - 1, cy));
    const double dy = 0.5 * (at(cx, cy + 1) - at(cx, cy - 1));
    const double dxx = at(cx + 1, cy) - 2 * i0 + at(cx - 1, cy);
    const double dyy = at(cx, cy + 1) - 2 * i0 + at(cx, cy - 1);
    const double dxy = 0.5 * (at(cx + 1, cy + 1) - at(cx + 1, cy) - at(cx, cy + 1) + 2 * i0 - at(cx - 1, cy) -
                              at(cx, cy - 1) + at(cx - 1, cy - 1));
    const double eps = std::numeric_limits<float>::epsilon();  // added to the Hessian's diagonal, as Python
    const double a = dxx + eps, b = dxy, d = dyy + eps;
    const double det = a * d - b * b;
    const double sx = (d * dx - b * dy) / det, sy = (a * dy - b * dx) / det;
    // a step beyond one pixel means a flat or non-maximal log map: keep the argmax (see keypoints.py)
    if (std::isfinite(sx) && std::isfinite(sy) && std::abs(sx) <= 1.0 && std::abs(sy) <= 1.0) {
      x -= sx;
      y -= sy;
    }
    // UDP inverse transform: heatmap pixel centres 0 and W-1 are the crop region's edges
    out.push_back({x * size[0] / (width - 1) + center[0] - size[0] / 2.0,
                   y * size[1] / (height - 1) + center[1] - size[1] / 2.0, maxval});
  }
  return out;
}

}  // namespace edgehmr
