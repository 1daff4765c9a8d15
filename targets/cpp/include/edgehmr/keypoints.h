// ViTPose heatmap decoding, the host step of edgehmr/models/keypoints.py (ViTPose's test config: UDP, DARK-UDP
// refinement with an 11x11 Gaussian blur, no flip): argmax, a Newton step on the log of the blurred heatmap, and
// the UDP inverse transform back to image pixels. Like the Python side (and mmpose's keypoints_from_heatmaps) the
// blur, clip, log and finite differences are float32: see keypoints.py for why that matters.
#pragma once

#include <array>
#include <limits>
#include <vector>

namespace edgehmr {

// cv2.GaussianBlur(map, (k, k), 0) on one float32 map, bit for bit (sigma from k as OpenCV derives it, float
// kernel, OpenCV's row/column summation order with fused multiply-adds, BORDER_REFLECT_101).
std::vector<float> gaussian_blur_map(const float* map, int height, int width, int ksize);

// Heatmaps [K, H, W] of one crop -> K keypoints (x, y, confidence) in image pixels. `center` and `size` are the
// crop region's (edgehmr/preprocess.py crop_region, already padded). A map without a positive peak gets
// confidence <= 0 and starts from heatmap pixel (-1, -1); as in the original, its Newton step then reads the
// preceding map's bottom row (for the first map, the last map's: the crop is decoded as a batch of one, as this
// app runs it). `max_step`: Newton steps with a component beyond it keep the argmax; the default (infinity)
// subtracts every finite step, as the original does.
std::vector<std::array<double, 3>> decode_heatmaps(const float* heatmaps, int keypoints, int height, int width,
                                                   const std::array<double, 2>& center,
                                                   const std::array<double, 2>& size,
                                                   double max_step = std::numeric_limits<double>::infinity());

}  // namespace edgehmr
