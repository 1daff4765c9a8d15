// SAT-HMR on a whole frame, as edgehmr/sat/runner.py (SatPipeline) + edgehmr/predictor.py: the frame on the
// artifact's canvas, stage 1, the host step (token selection, bucket, fixed buffers, masks), stage 2 on the chosen
// bucket, and the people above a confidence threshold.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "edgehmr/backend.h"
#include "edgehmr/bucketing.h"
#include "edgehmr/sat_frame.h"

namespace edgehmr {

struct SatPerson {
  int query = 0;
  float confidence = 0;
  std::array<double, 4> box{};  // xyxy, frame pixels
  std::array<float, 9> global_orient{};             // row-major rotation matrix
  std::vector<std::array<float, 9>> body_pose;      // 23 rotation matrices
  std::vector<float> betas;
  std::array<double, 3> translation{};  // metres, the frame's camera
  double focal_length_px = 0;           // that camera's focal length in frame pixels (principal point: frame centre)
};

struct SatFrameResult {
  Frame frame;
  std::vector<Tensor> outputs;  // stage-2 outputs, batch axis kept
  std::string bucket;
  int demoted = 0, hr_cells = 0, other_tokens = 0;
  std::vector<SatPerson> people;
  double preprocess_ms = 0, stage1_ms = 0, host_ms = 0, stage2_ms = 0, decode_ms = 0;
};

class SatPipeline {
 public:
  // Opens both stages (every bucket prepared now). `backend`: as open_backend.
  explicit SatPipeline(const Metadata& meta, const std::string& backend = "");
  SatFrameResult run(const Image& image, float confidence = 0.3f) const;
  const std::string& backend_name() const { return backend_name_; }

 private:
  Metadata meta_;
  BucketTable table_;
  std::unique_ptr<StageBackend> stage1_, stage2_;
  std::string backend_name_;
  double box_scale_px_ = 1288.0, focal_px_ = 0;
};

}  // namespace edgehmr
