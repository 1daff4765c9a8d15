// Decode math against values worked out by hand (geometry.rot6d_to_rotmat, geometry.cam_crop_to_full).
#include <array>
#include <random>

#include "check.h"
#include "edgehmr/decode.h"

static void check_rot(const float* six, const std::array<float, 9>& want) {
  float R[9];
  edgehmr::rot6d_to_rotmat(six, R);
  for (int i = 0; i < 9; ++i) CHECK_NEAR(R[i], want[i], 1e-7);
}

int main() {
  using edgehmr::cam_crop_to_full;
  // HMR2.0's identity and its 180-degree flip about x (the mean pose's root, hmr2_head.py).
  const float identity[6] = {1, 0, 0, 0, 1, 0};
  check_rot(identity, {1, 0, 0, 0, 1, 0, 0, 0, 1});
  const float flip_x[6] = {1, 0, 0, 0, -1, 0};
  check_rot(flip_x, {1, 0, 0, 0, -1, 0, 0, 0, -1});
  // a1, a2 are the first two *columns* (not SPIN's interleaved rows): 90 degrees about z.
  const float rot_z[6] = {0, 1, 0, -1, 0, 0};
  check_rot(rot_z, {0, -1, 0, 1, 0, 0, 0, 0, 1});
  // Gram-Schmidt: a1 is only scaled, a2 loses its a1 component.
  const float skewed[6] = {2, 0, 0, 5, 3, 0};
  check_rot(skewed, {1, 0, 0, 0, 1, 0, 0, 0, 1});
  // Any input gives a proper rotation.
  std::mt19937 rng(0);
  std::normal_distribution<float> n;
  for (int k = 0; k < 100; ++k) {
    float v[6], R[9];
    for (float& x : v) x = n(rng);
    edgehmr::rot6d_to_rotmat(v, R);
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) {
        double dot = 0;
        for (int i = 0; i < 3; ++i) dot += double(R[i * 3 + a]) * R[i * 3 + b];
        CHECK_NEAR(dot, a == b ? 1.0 : 0.0, 1e-6);
      }
    const double det = R[0] * (R[4] * R[8] - R[5] * R[7]) - R[1] * (R[3] * R[8] - R[5] * R[6]) +
                       R[2] * (R[3] * R[7] - R[4] * R[6]);
    CHECK_NEAR(det, 1.0, 1e-6);
  }
  // cam_crop_to_full: 640x480 image -> focal 5000/256*640 = 12500 px; box side 200 at s = 0.5 -> bs = 100.
  auto t = cam_crop_to_full({0.5, 0.1, -0.2}, {320, 240}, 200, {640, 480}, 5000, 256);
  CHECK_NEAR(t[0], 0.1, 1e-12);
  CHECK_NEAR(t[1], -0.2, 1e-12);
  CHECK_NEAR(t[2], 250.0, 1e-8);  // the +1e-9 in bs moves it by 2.5e-9
  // Off-centre box: 2*(420-320)/100 + 0.1 = 2.1, 2*(140-240)/100 - 0.2 = -2.2.
  t = cam_crop_to_full({0.5, 0.1, -0.2}, {420, 140}, 200, {640, 480}, 5000, 256);
  CHECK_NEAR(t[0], 2.1, 1e-9);
  CHECK_NEAR(t[1], -2.2, 1e-9);
  // Portrait: the focal follows max(W, H) = 1000 -> 5000/256*1000; s = 1, side 256 -> tz = 2*f_full/256.
  t = cam_crop_to_full({1.0, 0, 0}, {300, 500}, 256, {600, 1000}, 5000, 256);
  CHECK_NEAR(t[2], 2.0 * 5000.0 / 256.0 * 1000.0 / 256.0, 1e-9);
  return test_result("test_decode");
}
