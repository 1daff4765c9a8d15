// Image + person box -> SMPL parameters and cameras: preprocess, infer, decode, timed per stage.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "edgehmr/backend.h"
#include "edgehmr/preprocess.h"

namespace edgehmr {

struct PersonResult {
  Box box{};
  Crop crop;
  std::vector<Tensor> outputs;            // raw network outputs, metadata order
  std::vector<std::array<float, 9>> global_orient;  // 1 rotation matrix, row-major
  std::vector<std::array<float, 9>> body_pose;      // 23 rotation matrices
  std::vector<float> betas;
  std::array<float, 3> pred_cam{};        // (s, tx, ty)
  std::array<double, 3> cam_t_full{};     // translation in the full image's camera, metres
  double focal_full = 0;                  // that camera's focal length, px (principal point: the image centre)
  // ViTPose: COCO keypoints (x, y, confidence); mesh-baked HMR2.0: SMPL joints projected, (x, y, 1); image px
  std::vector<std::array<double, 3>> keypoints;
  double preprocess_ms = 0, infer_ms = 0, decode_ms = 0;
};

// HMR2.0-family artifacts (outputs global_orient, body_pose, betas, pred_cam) or ViTPose ones (heatmaps): one
// person per call. ViTPose results have keypoints only.
PersonResult predict_person(Backend& backend, const Metadata& meta, const Image& image, const Box& box);

}  // namespace edgehmr
