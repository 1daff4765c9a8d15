// Output decoding: the host-side steps of edgehmr/models/geometry.py.
#pragma once

#include <array>

namespace edgehmr {

// HMR2.0's 6D -> rotation matrix (geometry.rot6d_to_rotmat): a1 = v[0:3], a2 = v[3:6], Gram-Schmidt with
// F.normalize's eps 1e-12, b3 = b1 x b2, R = [b1 | b2 | b3] as columns. out is row-major 3x3.
// Not SPIN's interleaved layout. In float, like the graph computes it.
void rot6d_to_rotmat(const float* six, float* out9);

// geometry.cam_crop_to_full (CLIFF Eq. 1, the 4D-Humans demo): crop camera (s, tx, ty) -> translation in the
// full image's camera, whose focal is focal/crop*max(W, H) and principal point the image centre. In double,
// like the numpy code.
std::array<double, 3> cam_crop_to_full(const std::array<double, 3>& pred_cam, const std::array<double, 2>& center,
                                       double box_size, const std::array<double, 2>& image_size, double focal,
                                       double crop);

}  // namespace edgehmr
