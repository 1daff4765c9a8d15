// Reproduces edgehmr/preprocess.py on top of the OpenCV build the Python side pins (opencv-python-headless 5.0).
// Measured facts this file relies on (see tests/test_cpp_runtime.py for the end-to-end check):
// - cv2.warpAffine INTER_LINEAR on float32 in OpenCV >= 4.11/5.x no longer quantises source positions to 1/32
//   (INTER_TAB_SIZE, the old remap tables): it inverts M in double, casts the inverse to float, maps each output
//   pixel with a per-row float term and one fused multiply-add per pixel, and interpolates with three fused lerps.
//   Written out here, this matches cv2 bit for bit on a 3-channel float image (its SIMD loop; OpenCV's scalar
//   tail, used for output widths that are not a multiple of its vector block, rounds differently — the model
//   input widths, 192, are multiples of every block size).
// - cv2.warpAffine on float64 (the HMR2.0 crop of a blurred image: its original warps skimage's float64 output)
//   still takes the classic path: the double inverse, source positions in fixed point rounded to 1/32 px
//   (cvRound of the inverse times 1024 per column and per row, summed, shifted), bilinear weights from the
//   1/32 grid as float products, and one unfused double sum v00*w00 + v01*w01 + v10*w10 + v11*w11. Written out in
//   warp_affine_fixed: bit for bit against cv2 on random affines, borders included.
// - cv2.GaussianBlur on float32 with ksize (0, 0): kernel size round(8*sigma+1)|1, float kernel, separable
//   (rows, then columns), with the summation order and fused multiply-adds of OpenCV's SIMD row/column filters
//   (measured against cv2 for kernel sizes 3, 5, 13, 27: bit for bit). OpenCV's scalar tails (the last few values
//   of a row when W*3 is not a multiple of its vector width) add unfused; there the two differ by ~1e-5 grey
//   levels. The border is BORDER_REPLICATE, as skimage's gaussian (mode 'nearest') in HMR2.0's original.
#include "edgehmr/preprocess.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "edgehmr/errors.h"

namespace edgehmr {

Box check_box(const Box& b, int width, int height) {
  const std::string s = "box " + std::to_string(b.x1) + "," + std::to_string(b.y1) + "," + std::to_string(b.x2) + "," +
                        std::to_string(b.y2);
  if (!std::isfinite(b.x1) || !std::isfinite(b.y1) || !std::isfinite(b.x2) || !std::isfinite(b.y2))
    throw BoxError(s + " is not finite.");
  if (b.x2 <= b.x1 || b.y2 <= b.y1) throw BoxError(s + " is empty: expected x1 < x2 and y1 < y2 (xyxy pixels).");
  if (b.x2 <= 0 || b.y2 <= 0 || b.x1 >= width || b.y1 >= height)
    throw BoxError(s + " lies outside the " + std::to_string(width) + "x" + std::to_string(height) + " image.");
  // Clipped to the image grown by kBoxMargin image sizes per side, as edgehmr.inputs.check_box: the crop (and the
  // blur its size sets) stays bounded by the image's size whatever the box.
  const double mx = kBoxMargin * width, my = kBoxMargin * height;
  return {std::max(b.x1, -mx), std::max(b.y1, -my), std::min(b.x2, width + mx), std::min(b.y2, height + my)};
}

void crop_region(const Box& box, const CropRule& rule, std::array<double, 2>& center, std::array<double, 2>& size) {
  double w = std::max(box.x2 - box.x1, 1.0), h = std::max(box.y2 - box.y1, 1.0);
  center = {(box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0};
  const double aspect = double(rule.input_w) / double(rule.input_h);
  if (rule.udp) {  // mmpose _box2cs: grow the short side to the input aspect, then pad
    if (w > aspect * h) h = w / aspect;
    else w = h * aspect;
    size = {w * rule.padding, h * rule.padding};
    return;
  }
  // HMR2.0: square of side max(h, w/aspect); the model sees its central input-aspect part.
  const double side = std::max(h, w / aspect) * rule.padding;
  size = {side * aspect, side};
}

std::array<double, 6> crop_affine(const std::array<double, 2>& c, const std::array<double, 2>& size,
                                  const CropRule& rule) {
  double sx, sy, dx, dy;
  if (rule.udp) {
    sx = (rule.input_w - 1) / size[0];
    sy = (rule.input_h - 1) / size[1];
    dx = (rule.input_w - 1) / 2.0;
    dy = (rule.input_h - 1) / 2.0;
  } else {
    sx = sy = rule.input_h / size[1];
    dx = rule.input_w / 2.0;
    dy = rule.input_h / 2.0;
  }
  return {sx, 0.0, dx - sx * c[0], 0.0, sy, dy - sy * c[1]};
}

namespace {

// cv::borderInterpolate for BORDER_REPLICATE (aaaaaa|abcdefgh|hhhhhhh): the edge pixel repeated, as scipy.ndimage's
// mode 'nearest' (skimage.filters.gaussian's default, which HMR2.0's original blurs with).
int replicate(int p, int len) { return std::clamp(p, 0, len - 1); }

// cv::getGaussianKernel(n, sigma, CV_32F): computed in double, normalised, rounded to float.
std::vector<float> gaussian_kernel(int n, double sigma) {
  std::vector<double> k(n);
  const double scale = -0.5 / (sigma * sigma);
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const double x = i - (n - 1) * 0.5;
    k[i] = std::exp(scale * x * x);
    sum += k[i];
  }
  std::vector<float> out(n);
  for (int i = 0; i < n; ++i) out[i] = float(k[i] / sum);
  return out;
}

// The inverse affine as cv::warpAffine computes it (double).
std::array<double, 6> inverse_affine(const std::array<double, 6>& M) {
  double D = M[0] * M[4] - M[1] * M[3];
  D = D != 0 ? 1.0 / D : 0.0;
  const double a11 = M[4] * D, a22 = M[0] * D, a12 = M[1] * -D, a21 = M[3] * -D;
  const double b1 = -a11 * M[2] - a12 * M[5], b2 = -a21 * M[2] - a22 * M[5];
  return {a11, a12, b1, a21, a22, b2};
}

// ... rounded to float, as its float32 kernels use it.
std::array<float, 6> opencv_inverse(const std::array<double, 6>& M) {
  const std::array<double, 6> A = inverse_affine(M);
  return {float(A[0]), float(A[1]), float(A[2]), float(A[3]), float(A[4]), float(A[5])};
}

int saturate_short(int v) { return std::clamp(v, -32768, 32767); }

}  // namespace

std::vector<float> gaussian_blur_roi(const std::vector<float>& src, int W, int H, double sigma, int x0, int y0, int x1,
                                     int y1) {
  // cv::GaussianBlur: ksize from sigma for non-8U depths is round(sigma*4*2 + 1) | 1.
  const int n = int(std::lrint(sigma * 8 + 1)) | 1, r = n / 2;
  const std::vector<float> k = gaussian_kernel(n, sigma);
  const int rw = x1 - x0, rh = y1 - y0;
  // Row pass over every image row the column pass can reach (clamped indices stay in this band).
  const int ry0 = std::max(0, y0 - r), ry1 = std::min(H, y1 + r);
  std::vector<float> rows(size_t(ry1 - ry0) * rw * 3);
  std::vector<int> xs(n);
  for (int x = 0; x < rw; ++x) {
    for (int i = 0; i < n; ++i) xs[i] = replicate(x0 + x + i - r, W);
    for (int y = ry0; y < ry1; ++y) {
      const float* s = src.data() + size_t(y) * W * 3;
      float* d = rows.data() + (size_t(y - ry0) * rw + x) * 3;
      for (int c = 0; c < 3; ++c) {
        auto px = [&](int i) { return s[xs[i] * 3 + c]; };
        float acc;
        if (n <= 5) {
          // OpenCV's SymmRowSmallVec_32f: inner pair first, then the centre, then the outer pair, fused.
          acc = (px(r - 1) + px(r + 1)) * k[r + 1];
          acc = std::fma(px(r), k[r], acc);
          if (n == 5) acc = std::fma(px(0) + px(4), k[4], acc);
        } else {
          // RowVec_32f: left to right, fused.
          acc = k[0] * px(0);
          for (int i = 1; i < n; ++i) acc = std::fma(k[i], px(i), acc);
        }
        d[c] = acc;
      }
    }
  }
  std::vector<float> out(size_t(rh) * rw * 3);
  std::vector<int> ys(n);
  for (int y = 0; y < rh; ++y) {
    for (int i = 0; i < n; ++i) ys[i] = replicate(y0 + y + i - r, H) - ry0;
    for (int x = 0; x < rw; ++x) {
      float* d = out.data() + (size_t(y) * rw + x) * 3;
      for (int c = 0; c < 3; ++c) {
        auto px = [&](int i) { return rows[(size_t(ys[i]) * rw + x) * 3 + c]; };
        // SymmColumnVec_32f: the centre, then each symmetric pair from the inside out, fused.
        float acc = px(r) * k[r];
        for (int j = 1; j <= r; ++j) acc = std::fma(px(r - j) + px(r + j), k[r + j], acc);
        d[c] = acc;
      }
    }
  }
  return out;
}

std::vector<float> warp_affine_linear(const float* src, int sw, int sh, int ox, int oy, int W, int H,
                                      const std::array<double, 6>& M, int out_w, int out_h) {
  const std::array<float, 6> F = opencv_inverse(M);
  std::vector<float> out(size_t(out_w) * out_h * 3, 0.0f);
  auto tap = [&](int x, int y, int c) -> float {
    // BORDER_CONSTANT 0 outside the image; inside, the caller guarantees the ROI covers the tap.
    if (x < 0 || y < 0 || x >= W || y >= H) return 0.0f;
    const int lx = x - ox, ly = y - oy;
    if (lx < 0 || ly < 0 || lx >= sw || ly >= sh) return 0.0f;  // unreachable when the ROI is computed right
    return src[(size_t(ly) * sw + lx) * 3 + c];
  };
  for (int y = 0; y < out_h; ++y) {
    // OpenCV: y*M[1] + M[2] per row in float with two roundings (measured: a fused form differs by up to 6e-3
    // grey levels at some scales), then fma(M[0], x, that) per pixel in its SIMD loop. -ffp-contract=off keeps
    // the compiler from fusing this line.
    const float mx = float(y) * F[1] + F[2], my = float(y) * F[4] + F[5];
    for (int x = 0; x < out_w; ++x) {
      const float sx = std::fma(F[0], float(x), mx), sy = std::fma(F[3], float(x), my);
      const int ix = int(std::floor(sx)), iy = int(std::floor(sy));
      const float a = sx - float(ix), b = sy - float(iy);
      float* d = out.data() + (size_t(y) * out_w + x) * 3;
      for (int c = 0; c < 3; ++c) {
        const float p00 = tap(ix, iy, c), p01 = tap(ix + 1, iy, c), p10 = tap(ix, iy + 1, c),
                    p11 = tap(ix + 1, iy + 1, c);
        const float v0 = std::fma(a, p01 - p00, p00), v1 = std::fma(a, p11 - p10, p10);
        d[c] = std::fma(b, v1 - v0, v0);
      }
    }
  }
  return out;
}

std::vector<float> warp_affine_fixed(const float* src, int sw, int sh, int ox, int oy, int W, int H,
                                     const std::array<double, 6>& M, int out_w, int out_h) {
  const std::array<double, 6> A = inverse_affine(M);
  constexpr int kBits = 5, kTab = 1 << kBits;             // INTER_BITS, INTER_TAB_SIZE: 1/32 px
  constexpr int kAbBits = 10, kAbScale = 1 << kAbBits;    // the fixed point the positions are summed in
  constexpr int kRoundDelta = kAbScale / kTab / 2;
  // cvRound (round half to even, as lrint in the default rounding mode) of the column and row terms
  std::vector<int> adelta(out_w), bdelta(out_w);
  for (int x = 0; x < out_w; ++x) {
    adelta[x] = int(std::lrint(A[0] * x * kAbScale));
    bdelta[x] = int(std::lrint(A[3] * x * kAbScale));
  }
  auto tap = [&](int x, int y, int c) -> double {  // BORDER_CONSTANT 0 outside the image
    if (x < 0 || y < 0 || x >= W || y >= H) return 0.0;
    const int lx = x - ox, ly = y - oy;
    if (lx < 0 || ly < 0 || lx >= sw || ly >= sh) return 0.0;  // unreachable when the ROI is computed right
    return src[(size_t(ly) * sw + lx) * 3 + c];
  };
  std::vector<float> out(size_t(out_w) * out_h * 3, 0.0f);
  for (int y = 0; y < out_h; ++y) {
    const int X0 = int(std::lrint((A[1] * y + A[2]) * kAbScale)) + kRoundDelta;
    const int Y0 = int(std::lrint((A[4] * y + A[5]) * kAbScale)) + kRoundDelta;
    for (int x = 0; x < out_w; ++x) {
      // arithmetic shifts: floor division for negative positions too
      const int X = (X0 + adelta[x]) >> (kAbBits - kBits), Y = (Y0 + bdelta[x]) >> (kAbBits - kBits);
      const int sx = saturate_short(X >> kBits), sy = saturate_short(Y >> kBits);
      // the bilinear table entry: products of (1 - f, f) with f on the 1/32 grid, exact in float
      const float fx = float(X & (kTab - 1)) * (1.0f / kTab), fy = float(Y & (kTab - 1)) * (1.0f / kTab);
      const float w00 = (1.0f - fy) * (1.0f - fx), w01 = (1.0f - fy) * fx, w10 = fy * (1.0f - fx), w11 = fy * fx;
      float* d = out.data() + (size_t(y) * out_w + x) * 3;
      for (int c = 0; c < 3; ++c) {
        const double v = tap(sx, sy, c) * w00 + tap(sx + 1, sy, c) * w01 + tap(sx, sy + 1, c) * w10 +
                         tap(sx + 1, sy + 1, c) * w11;
        d[c] = float(v);
      }
    }
  }
  return out;
}

Crop prepare_crop(const Image& image, const Box& box, const CropRule& rule) {
  const int W = image.width, H = image.height;
  const Box checked = check_box(box, W, H);
  Crop crop;
  crop_region(checked, rule, crop.center, crop.size);
  crop.image_size = {double(W), double(H)};
  const std::array<double, 6> M = crop_affine(crop.center, crop.size, rule);
  const int out_h = rule.input_h, out_w = rule.input_w;

  // The image rectangle the warp reads (its 2x2 taps), with one pixel of slack for float rounding: only this part
  // is converted (and blurred), which gives the same pixels as processing the whole frame.
  const std::array<float, 6> F = opencv_inverse(M);
  double lo_x = 1e300, lo_y = 1e300, hi_x = -1e300, hi_y = -1e300;
  for (int cy : {0, out_h - 1})
    for (int cx : {0, out_w - 1}) {
      const double sx = double(F[0]) * cx + double(F[1]) * cy + F[2], sy = double(F[3]) * cx + double(F[4]) * cy + F[5];
      lo_x = std::min(lo_x, sx), hi_x = std::max(hi_x, sx), lo_y = std::min(lo_y, sy), hi_y = std::max(hi_y, sy);
    }
  const int x0 = std::clamp(int(std::floor(lo_x)) - 1, 0, W), x1 = std::clamp(int(std::floor(hi_x)) + 3, 0, W);
  const int y0 = std::clamp(int(std::floor(lo_y)) - 1, 0, H), y1 = std::clamp(int(std::floor(hi_y)) + 3, 0, H);

  std::vector<float> roi, warped;
  const double d = crop.size[1] / rule.input_h / 2.0;
  if (rule.antialias && d > 1.1) {
    // HMR2.0 blurs the whole image with sigma (d-1)/2 when the crop downsamples by more than 2.2x, and warps the
    // blurred (float64) image with OpenCV's fixed-point warp.
    std::vector<float> full(image.rgb.begin(), image.rgb.end());
    if (x1 > x0 && y1 > y0) roi = gaussian_blur_roi(full, W, H, (d - 1) / 2.0, x0, y0, x1, y1);
    warped = warp_affine_fixed(roi.data(), x1 - x0, y1 - y0, x0, y0, W, H, M, out_w, out_h);
  } else {
    roi.resize(size_t(std::max(0, x1 - x0)) * std::max(0, y1 - y0) * 3);
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x)
        for (int c = 0; c < 3; ++c)
          roi[(size_t(y - y0) * (x1 - x0) + (x - x0)) * 3 + c] = image.rgb[(size_t(y) * W + x) * 3 + c];
    warped = warp_affine_linear(roi.data(), x1 - x0, y1 - y0, x0, y0, W, H, M, out_w, out_h);
  }

  // (pixel - mean*255) / (std*255), with mean and std as float32 first, as numpy computes it.
  crop.input.resize(size_t(3) * out_h * out_w);
  for (int c = 0; c < 3; ++c) {
    const float m = float(rule.mean[c]) * 255.0f, s = float(rule.std[c]) * 255.0f;
    float* plane = crop.input.data() + size_t(c) * out_h * out_w;
    for (int i = 0; i < out_h * out_w; ++i) plane[i] = (warped[size_t(i) * 3 + c] - m) / s;
  }
  return crop;
}

}  // namespace edgehmr
