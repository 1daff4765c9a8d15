// Person crop: the C++ twin of edgehmr/preprocess.py (prepare_crop), reproducing cv2.GaussianBlur and
// cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) on float32 and float64 images as the pinned OpenCV computes them.
#pragma once

#include <array>
#include <vector>

#include "edgehmr/image.h"
#include "edgehmr/metadata.h"

namespace edgehmr {

struct Box {
  double x1, y1, x2, y2;  // xyxy, image pixels
};

struct Crop {
  std::vector<float> input;          // [3, input_h, input_w] normalised, NCHW without the batch axis
  std::array<double, 2> center{};    // box centre (x, y), image px
  std::array<double, 2> size{};      // (w, h) of the image region mapped onto the input
  std::array<double, 2> image_size{};  // (W, H)
};

// A box may reach this many image widths (heights) past each image edge; beyond, it is clipped.
constexpr double kBoxMargin = 1.0;

// Throws BoxError for a box that is empty, not finite, or does not overlap the image at all; returns it clipped
// to the image grown by kBoxMargin per side. A box partly outside the image is valid (people at the frame edge):
// the crop is padded with zeros. The same rules as edgehmr.inputs.check_box.
Box check_box(const Box& box, int width, int height);
// crop_region(): (centre, (w, h) of the region mapped onto the model input).
void crop_region(const Box& box, const CropRule& rule, std::array<double, 2>& center, std::array<double, 2>& size);
// crop_affine(): 2x3 image -> model-input affine, row-major.
std::array<double, 6> crop_affine(const std::array<double, 2>& center, const std::array<double, 2>& size,
                                  const CropRule& rule);
Crop prepare_crop(const Image& image, const Box& box, const CropRule& rule);

// Building blocks, exposed for tests.
// cv2.GaussianBlur(float32 HWC, (0, 0), sigma, borderType=BORDER_REPLICATE) restricted to the rectangle
// [x0, x1) x [y0, y1) of the image (as if the whole image were blurred). Output is (x1-x0)x(y1-y0)x3.
std::vector<float> gaussian_blur_roi(const std::vector<float>& src, int width, int height, double sigma, int x0,
                                     int y0, int x1, int y1);
// cv2.warpAffine(float32 HWC 3-channel, M (image -> output), (out_w, out_h), INTER_LINEAR, BORDER_CONSTANT, 0).
// src may be a sub-rectangle of the image starting at (ox, oy); pixels outside the full image are 0.
std::vector<float> warp_affine_linear(const float* src, int src_w, int src_h, int ox, int oy, int full_w, int full_h,
                                      const std::array<double, 6>& M, int out_w, int out_h);
// cv2.warpAffine(float64 HWC 3-channel, ...) with the same arguments: OpenCV's classic fixed-point warp (source
// positions rounded to 1/32 px, bilinear weights from that grid, summed in double), the result rounded to float.
std::vector<float> warp_affine_fixed(const float* src, int src_w, int src_h, int ox, int oy, int full_w, int full_h,
                                     const std::array<double, 6>& M, int out_w, int out_h);

}  // namespace edgehmr
