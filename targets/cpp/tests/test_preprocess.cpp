// Crop geometry, the OpenCV-equivalent warp and blur on images whose answer is known, box and image errors.
#include <vector>

#include "check.h"
#include "edgehmr/errors.h"
#include "edgehmr/preprocess.h"

using namespace edgehmr;

static CropRule hmr2_rule() {
  CropRule r;
  r.name = "hmr2";
  r.antialias = true;
  r.mean = {0.485, 0.456, 0.406};
  r.std = {0.229, 0.224, 0.225};
  return r;
}

int main() {
  const CropRule rule = hmr2_rule();
  // crop_region / crop_affine for hmr2: a 40x80 box -> square side max(80, 40/0.75) = 80, region 60x80,
  // scale 256/80 = 3.2, centre (30, 60) -> input (96, 128).
  std::array<double, 2> c, s;
  crop_region({10, 20, 50, 100}, rule, c, s);
  CHECK_NEAR(c[0], 30, 0);
  CHECK_NEAR(c[1], 60, 0);
  CHECK_NEAR(s[0], 60, 1e-12);
  CHECK_NEAR(s[1], 80, 0);
  auto M = crop_affine(c, s, rule);
  CHECK_NEAR(M[0], 3.2, 1e-12);
  CHECK_NEAR(M[2], 0.0, 1e-12);
  CHECK_NEAR(M[5], -64.0, 1e-12);
  // Wide box: side from the width, 4/3 of it.
  crop_region({0, 0, 90, 30}, rule, c, s);
  CHECK_NEAR(s[1], 120, 1e-12);
  // vitpose-udp: 3:4 aspect then x1.25.
  CropRule udp = rule;
  udp.udp = true;
  udp.padding = 1.25;
  crop_region({0, 0, 30, 80}, udp, c, s);
  CHECK_NEAR(s[0], 60 * 1.25, 1e-12);
  CHECK_NEAR(s[1], 80 * 1.25, 1e-12);

  // Warp: the identity reproduces the pixels; taps outside the image read 0 (BORDER_CONSTANT).
  const int W = 7, H = 5;
  std::vector<float> img(W * H * 3);
  for (size_t i = 0; i < img.size(); ++i) img[i] = float((i * 37) % 251);
  auto out = warp_affine_linear(img.data(), W, H, 0, 0, W, H, {1, 0, 0, 0, 1, 0}, W, H);
  for (size_t i = 0; i < img.size(); ++i) CHECK(out[i] == img[i]);
  // Half-pixel shift right: output x samples source x - 0.5, so column 0 blends the zero border and pixel 0.
  out = warp_affine_linear(img.data(), W, H, 0, 0, W, H, {1, 0, 0.5, 0, 1, 0}, W, H);
  CHECK_NEAR(out[0], 0.5f * img[0], 1e-5);
  CHECK_NEAR(out[3 * 3], 0.5f * (img[2 * 3] + img[3 * 3]), 1e-4);
  // Blur: a constant image stays constant (kernel sums to 1, reflected borders), also for sigma > image size.
  std::vector<float> flat(W * H * 3, 100.0f);
  for (double sigma : {0.6, 3.0}) {
    auto b = gaussian_blur_roi(flat, W, H, sigma, 1, 1, W - 1, H - 1);
    CHECK(b.size() == size_t((W - 2) * (H - 2) * 3));
    for (float v : b) CHECK_NEAR(v, 100.0, 1e-3);
  }
  // Blur of a region equals the same region of a full-image blur.
  auto full = gaussian_blur_roi(img, W, H, 1.3, 0, 0, W, H);
  auto part = gaussian_blur_roi(img, W, H, 1.3, 2, 1, 6, 4);
  for (int y = 1; y < 4; ++y)
    for (int x = 2; x < 6; ++x)
      for (int ch = 0; ch < 3; ++ch)
        CHECK(part[((y - 1) * 4 + (x - 2)) * 3 + ch] == full[(y * W + x) * 3 + ch]);

  // prepare_crop on a uniform grey image: inside the image every input value is (128 - 255*mean)/(255*std);
  // a box half outside shows the zero border there.
  Image grey;
  grey.width = 640;
  grey.height = 480;
  grey.rgb.assign(size_t(640) * 480 * 3, 128);
  const Crop inside = prepare_crop(grey, {200, 100, 300, 400}, rule);  // side 300: blurred (d = 0.59 < 1.1: no)
  CHECK(inside.input.size() == size_t(3 * 256 * 192));
  const float want0 = (128.0f - 0.485f * 255.0f) / (0.229f * 255.0f);
  CHECK_NEAR(inside.input[128 * 192 + 96], want0, 1e-6);
  const Crop big = prepare_crop(grey, {100, 0, 500, 479}, rule);  // side 533: no blur either (d = 1.04)
  CHECK_NEAR(big.input[128 * 192 + 96], want0, 1e-6);
  const Crop huge = prepare_crop(grey, {-300, -400, 900, 900}, rule);  // d > 1.1: blurred; corners outside
  CHECK_NEAR(huge.input[128 * 192 + 96], want0, 1e-4);
  CHECK_NEAR(huge.input[0], (0.0f - 0.485f * 255.0f) / (0.229f * 255.0f), 1e-6);
  CHECK_NEAR(huge.center[0], 300, 0);
  CHECK_NEAR(huge.image_size[1], 480, 0);

  // Boxes that cannot be cropped.
  CHECK_THROWS(prepare_crop(grey, {700, 10, 800, 100}, rule), BoxError, "outside the 640x480 image");
  CHECK_THROWS(prepare_crop(grey, {-50, 10, -1, 100}, rule), BoxError, "outside");
  CHECK_THROWS(prepare_crop(grey, {50, 10, 40, 100}, rule), BoxError, "empty");
  CHECK_THROWS(prepare_crop(grey, {50, 10, 60, std::nan("")}, rule), BoxError, "not finite");

  // Undecodable images.
  CHECK_THROWS(decode_image_rgb({'h', 'e', 'l', 'l', 'o'}, "x.bin"), ImageError, "not a PNG or JPEG");
  std::vector<uint8_t> trunc_png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H'};
  CHECK_THROWS(decode_image_rgb(trunc_png, "t.png"), ImageError, "as PNG");
  std::vector<uint8_t> trunc_jpg = {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F'};
  CHECK_THROWS(decode_image_rgb(trunc_jpg, "t.jpg"), ImageError, "as JPEG");
  CHECK_THROWS(read_image_rgb("/nonexistent/x.png"), ImageError, "cannot read image");
  return test_result("test_preprocess");
}
