#include "edgehmr/decode.h"

#include <algorithm>
#include <cmath>

namespace edgehmr {

namespace {
// torch.nn.functional.normalize: x / max(||x||_2, eps), eps = 1e-12.
void normalize3(const float* v, float* out) {
  const float n = std::max(std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]), 1e-12f);
  for (int i = 0; i < 3; ++i) out[i] = v[i] / n;
}
}  // namespace

void rot6d_to_rotmat(const float* six, float* R) {
  float b1[3], b2[3], b3[3], t[3];
  normalize3(six, b1);
  const float* a2 = six + 3;
  const float d = b1[0] * a2[0] + b1[1] * a2[1] + b1[2] * a2[2];
  for (int i = 0; i < 3; ++i) t[i] = a2[i] - d * b1[i];
  normalize3(t, b2);
  b3[0] = b1[1] * b2[2] - b1[2] * b2[1];
  b3[1] = b1[2] * b2[0] - b1[0] * b2[2];
  b3[2] = b1[0] * b2[1] - b1[1] * b2[0];
  // torch.stack((b1, b2, b3), dim=-1): b1, b2, b3 are the columns.
  for (int i = 0; i < 3; ++i) {
    R[i * 3 + 0] = b1[i];
    R[i * 3 + 1] = b2[i];
    R[i * 3 + 2] = b3[i];
  }
}

std::array<double, 3> cam_crop_to_full(const std::array<double, 3>& cam, const std::array<double, 2>& center,
                                       double box_size, const std::array<double, 2>& image_size, double focal,
                                       double crop) {
  const double w = image_size[0], h = image_size[1];
  const double focal_full = focal / crop * std::max(w, h);
  const double bs = box_size * cam[0] + 1e-9;
  return {2.0 * (center[0] - w / 2.0) / bs + cam[1], 2.0 * (center[1] - h / 2.0) / bs + cam[2],
          2.0 * focal_full / bs};
}

}  // namespace edgehmr
