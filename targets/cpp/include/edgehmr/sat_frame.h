// A whole frame on SAT-HMR's canvas (edgehmr/sat/frame.py prepare_frame): the reference's resize geometry (the
// frame's long side to the canvas side it lies along, float32 rate, the other side truncated; the short side
// instead where the long one would not fit), bilinear resize on uint8 pixels exactly as OpenCV's INTER_LINEAR, black
// padding at the bottom/right, ImageNet normalisation, NCHW.
#pragma once

#include <vector>

#include "edgehmr/image.h"

namespace edgehmr {

struct Frame {
  std::vector<float> chw;  // [3, canvas_h, canvas_w]
  double scale = 1.0;      // canvas px per frame px
  int resized_w = 0, resized_h = 0;  // the frame's extent on the canvas
};

// OpenCV cv::resize(src_uint8, dsize, INTER_LINEAR) on an HWC uint8 image with 3 channels, bit for bit (its
// fixed-point scheme: 11-bit weights, integer sums and shifts).
std::vector<uint8_t> resize_bilinear_u8(const std::vector<uint8_t>& src, int width, int height, int out_w, int out_h);

// Where a width x height frame lands on the canvas (edgehmr.sat.frame.fit_resize): sets scale, resized_w/h.
void fit_resize(int width, int height, int canvas_w, int canvas_h, Frame& f);

Frame prepare_frame(const Image& image, int canvas_w, int canvas_h);

}  // namespace edgehmr
