// ViTPose heatmap decoding, the host step of edgehmr/models/keypoints.py (ViTPose's test config: UDP, DARK-UDP
// refinement with an 11x11 Gaussian blur, no flip): argmax, a Newton step on the log of the blurred heatmap, and
// the UDP inverse transform back to image pixels.
#pragma once

#include <array>
#include <vector>

namespace edgehmr {

// cv2.GaussianBlur(map, (k, k), 0) on one float64 map (sigma from k as OpenCV derives it, BORDER_REFLECT_101).
std::vector<double> gaussian_blur_map(const std::vector<double>& map, int height, int width, int ksize);

// Heatmaps [K, H, W] of one crop -> K keypoints (x, y, confidence) in image pixels. `center` and `size` are the
// crop region's (edgehmr/preprocess.py crop_region, already padded); a map without a positive peak gets
// confidence <= 0 and the location of heatmap pixel (-1, -1).
std::vector<std::array<double, 3>> decode_heatmaps(const float* heatmaps, int keypoints, int height, int width,
                                                   const std::array<double, 2>& center,
                                                   const std::array<double, 2>& size);

}  // namespace edgehmr
