#include "edgehmr/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "edgehmr/decode.h"
#include "edgehmr/errors.h"
#include "edgehmr/keypoints.h"

namespace edgehmr {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

const Tensor& output(const std::vector<Tensor>& outs, const std::string& name) {
  for (const Tensor& t : outs)
    if (t.name == name) return t;
  throw BackendError("the artifact has no output '" + name + "'; is it an HMR2.0 or ViTPose model?");
}

// Rotation output -> row-major 3x3 matrices; converts 6D when the artifact leaves that to the host.
std::vector<std::array<float, 9>> rotations(const Tensor& t) {
  std::vector<std::array<float, 9>> out;
  const size_t last = t.shape.empty() ? 0 : size_t(t.shape.back());
  const bool matrices = t.shape.size() >= 2 && last == 3 && t.shape[t.shape.size() - 2] == 3;
  const size_t per = matrices ? 9 : last == 6 ? 6 : 0;
  if (per == 0 || t.data.size() % per != 0)
    throw BackendError("output '" + t.name + "' is neither rotation matrices (...,3,3) nor 6D (...,6).");
  for (size_t i = 0; i < t.data.size(); i += per) {
    std::array<float, 9> R{};
    if (matrices) std::copy(t.data.begin() + i, t.data.begin() + i + 9, R.begin());
    else rot6d_to_rotmat(t.data.data() + i, R.data());
    out.push_back(R);
  }
  return out;
}
}  // namespace

PersonResult predict_person(Backend& backend, const Metadata& meta, const Image& image, const Box& box) {
  if (meta.inputs.size() != 1)
    throw BackendError("expected one image input, the artifact has " + std::to_string(meta.inputs.size()) + ".");
  if (meta.inputs[0].shape.size() != 4 || meta.inputs[0].shape[0] != 1)
    throw BackendError("this app feeds one crop per inference; the artifact's input '" + meta.inputs[0].name +
                       "' is not [1, 3, H, W] (convert with --batch 1).");
  PersonResult r;
  r.box = check_box(box, image.width, image.height);  // as reported: clipped like the crop uses it
  auto t0 = Clock::now();
  r.crop = prepare_crop(image, box, meta.crop);
  r.preprocess_ms = ms_since(t0);

  t0 = Clock::now();
  std::vector<Tensor> inputs(1);
  inputs[0].name = meta.inputs[0].name;
  inputs[0].shape = meta.inputs[0].shape;
  inputs[0].data = r.crop.input;
  r.outputs = backend.run(inputs);
  r.infer_ms = ms_since(t0);

  t0 = Clock::now();
  if (meta.task == "crop-keypoints") {  // heatmaps [1, K, H, W] -> keypoints in image pixels
    const Tensor& hm = output(r.outputs, "heatmaps");
    if (hm.shape.size() != 4) throw BackendError("output 'heatmaps' should be [1, K, H, W].");
    r.keypoints = decode_heatmaps(hm.data.data(), int(hm.shape[1]), int(hm.shape[2]), int(hm.shape[3]),
                                  r.crop.center, r.crop.size);
    r.decode_ms = ms_since(t0);
    return r;
  }
  r.global_orient = rotations(output(r.outputs, "global_orient"));
  r.body_pose = rotations(output(r.outputs, "body_pose"));
  r.betas = output(r.outputs, "betas").data;
  const Tensor& cam = output(r.outputs, "pred_cam");
  if (cam.data.size() != 3) throw BackendError("output 'pred_cam' should hold 3 values (s, tx, ty).");
  r.pred_cam = {cam.data[0], cam.data[1], cam.data[2]};
  // The box side the camera refers to is the square crop's side: size[1] for the hmr2 rule.
  r.cam_t_full = cam_crop_to_full({cam.data[0], cam.data[1], cam.data[2]}, r.crop.center, r.crop.size[1],
                                  r.crop.image_size, meta.camera.focal_length_px, meta.camera.crop_size_px);
  r.focal_full = meta.camera.focal_length_px / meta.camera.crop_size_px *
                 std::max(r.crop.image_size[0], r.crop.image_size[1]);
  for (const Tensor& t : r.outputs) {
    if (t.name != "joints") continue;  // [1, J, 3] body frame, metres (artifacts converted --with-mesh)
    for (size_t j = 0; j + 2 < t.data.size(); j += 3) {
      const double x = t.data[j] + r.cam_t_full[0], y = t.data[j + 1] + r.cam_t_full[1];
      double z = t.data[j + 2] + r.cam_t_full[2];
      if (std::abs(z) < 1e-9) z = 1e-9;
      r.keypoints.push_back({r.focal_full * x / z + r.crop.image_size[0] / 2.0,
                             r.focal_full * y / z + r.crop.image_size[1] / 2.0, 1.0});
    }
  }
  r.decode_ms = ms_since(t0);
  return r;
}

}  // namespace edgehmr
