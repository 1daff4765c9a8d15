// A whole frame on SAT-HMR's canvas (edgehmr/sat/frame.py prepare_frame): fit the canvas keeping the aspect ratio,
// bilinear resize on float pixels exactly as OpenCV's INTER_LINEAR float path, black padding at the bottom/right,
// ImageNet normalisation, NCHW.
#pragma once

#include <vector>

#include "edgehmr/image.h"

namespace edgehmr {

struct Frame {
  std::vector<float> chw;  // [3, canvas_h, canvas_w]
  double scale = 1.0;      // canvas px per frame px
  int resized_w = 0, resized_h = 0;  // the frame's extent on the canvas
};

// OpenCV cv::resize(src_float, dsize, INTER_LINEAR) on an HWC float image with 3 channels.
std::vector<float> resize_bilinear(const std::vector<float>& src, int width, int height, int out_w, int out_h);

Frame prepare_frame(const Image& image, int canvas_w, int canvas_h);

}  // namespace edgehmr
