#include "edgehmr/sat_pipeline.h"

#include <chrono>

#include "edgehmr/errors.h"

namespace edgehmr {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

constexpr const char* kStage1Entry = "canvas";

const Tensor& find(const std::vector<Tensor>& outs, const std::string& name) {
  for (const Tensor& t : outs)
    if (t.name == name) return t;
  throw BackendError("the SAT-HMR artifact returned no '" + name + "'.");
}

Tensor float_tensor(const std::string& name, const std::vector<int64_t>& shape, std::vector<float> data) {
  Tensor t;
  t.name = name;
  t.shape = shape;
  t.data = std::move(data);
  return t;
}

Tensor int_tensor(const std::string& name, const std::vector<int64_t>& shape, std::vector<int64_t> data) {
  Tensor t;
  t.name = name;
  t.shape = shape;
  t.ints = std::move(data);
  t.dtype = DType::i64;
  return t;
}

std::array<float, 9> matrix(const Tensor& t, size_t index) {
  std::array<float, 9> R{};
  std::copy(t.data.begin() + index * 9, t.data.begin() + index * 9 + 9, R.begin());
  return R;
}
}  // namespace

SatPipeline::SatPipeline(const Metadata& meta, const std::string& backend) : meta_(meta) {
  if (!meta.multistage() || meta.task != "frame-mesh")
    throw BackendError(meta.dir.filename().string() + " is not a SAT-HMR artifact (model " + meta.model + ").");
  table_ = BucketTable::from_json(meta.buckets);
  for (const Bucket& b : table_.buckets)
    if (!meta.stages.at("stage2").entries.count(b.name))
      throw MetadataError("metadata.json: bucket " + b.name + " has no stage-2 entry; re-run 'edgehmr convert'.");
  const nlohmann::json post = meta.raw.value("postprocessing", nlohmann::json::object());
  box_scale_px_ = post.value("boxes", nlohmann::json::object()).value("normalised_by_px", 1288.0);
  focal_px_ = post.at("camera").at("focal_px_on_1288_canvas").get<double>();
  stage1_ = open_stage_backend(meta, meta.stages.at("stage1"), backend);
  stage2_ = open_stage_backend(meta, meta.stages.at("stage2"), backend);
  backend_name_ = stage2_->name();
}

SatFrameResult SatPipeline::run(const Image& image, float confidence) const {
  SatFrameResult r;
  auto t0 = Clock::now();
  r.frame = prepare_frame(image, meta_.canvas_w, meta_.canvas_h);
  const std::vector<int64_t> image_shape = {1, 3, meta_.canvas_h, meta_.canvas_w};
  r.preprocess_ms = ms_since(t0);

  t0 = Clock::now();
  const std::vector<Tensor> first = stage1_->run(kStage1Entry, {float_tensor("image", image_shape, r.frame.chw)});
  r.stage1_ms = ms_since(t0);

  t0 = Clock::now();
  const Tensor& scale_map = find(first, "scale_map");  // [1, 2, rows, cols]: confidence, scale
  const size_t cells = static_cast<size_t>(table_.rows) * table_.cols;
  if (scale_map.data.size() != 2 * cells)
    throw BackendError("stage 1's scale map does not have the bucket table's " + std::to_string(table_.rows) + "x" +
                       std::to_string(table_.cols) + " cells.");
  const std::vector<float> conf(scale_map.data.begin(), scale_map.data.begin() + cells);
  const std::vector<float> scale(scale_map.data.begin() + cells, scale_map.data.end());
  const Selection selection = classify(conf, scale, table_.rows, table_.cols, table_.conf_threshold,
                                       table_.scale_threshold);
  const Packed packed = pack(selection, table_);
  r.bucket = packed.bucket->name;
  r.demoted = packed.demoted;
  r.hr_cells = selection.hr_cells();
  r.other_tokens = selection.other_tokens();
  const StagePart& part = meta_.stages.at("stage2");
  const auto& shapes = part.entries.at(r.bucket);
  std::vector<Tensor> feeds;
  for (const std::string& name : part.input_names) {
    const std::vector<int64_t>& shape = shapes.at(name);
    if (name == "image") feeds.push_back(float_tensor(name, shape, r.frame.chw));
    else if (name == "low_res_tokens" || name == "cls") feeds.push_back(float_tensor(name, shape, find(first, name).data));
    else if (name == "hr_cells") feeds.push_back(int_tensor(name, shape, packed.hr_cells));
    else if (name == "hr_mask") feeds.push_back(float_tensor(name, shape, packed.hr_mask));
    else if (name == "other_index") feeds.push_back(int_tensor(name, shape, packed.other_index));
    else if (name == "other_mask") feeds.push_back(float_tensor(name, shape, packed.other_mask));
    else throw MetadataError("metadata.json: unknown stage-2 input '" + name + "'.");
  }
  r.host_ms = ms_since(t0);

  t0 = Clock::now();
  r.outputs = stage2_->run(r.bucket, feeds);
  r.stage2_ms = ms_since(t0);

  t0 = Clock::now();
  const Tensor& confidences = find(r.outputs, "confidence");  // [1, Q]
  const Tensor& boxes = find(r.outputs, "boxes");             // [1, Q, 4] cxcywh / 1288
  const Tensor& transl = find(r.outputs, "transl");           // [1, Q, 3]
  const Tensor& orient = find(r.outputs, "global_orient");    // [1, Q, 1, 3, 3]
  const Tensor& pose = find(r.outputs, "body_pose");          // [1, Q, 23, 3, 3]
  const Tensor& betas = find(r.outputs, "betas");             // [1, Q, 10]
  const size_t queries = confidences.data.size();
  const size_t joints = queries ? pose.data.size() / (queries * 9) : 0;
  const size_t nbetas = queries ? betas.data.size() / queries : 0;
  for (size_t q = 0; q < queries; ++q) {
    if (!(confidences.data[q] > confidence)) continue;
    SatPerson p;
    p.query = static_cast<int>(q);
    p.confidence = confidences.data[q];
    // box * 1288 is in canvas pixels; the frame was scaled by frame.scale onto the canvas
    const double k = box_scale_px_ / r.frame.scale;
    const double cx = boxes.data[q * 4] * k, cy = boxes.data[q * 4 + 1] * k;
    const double w = boxes.data[q * 4 + 2] * k, h = boxes.data[q * 4 + 3] * k;
    p.box = {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2};
    p.global_orient = matrix(orient, q);
    for (size_t j = 0; j < joints; ++j) p.body_pose.push_back(matrix(pose, q * joints + j));
    p.betas.assign(betas.data.begin() + q * nbetas, betas.data.begin() + (q + 1) * nbetas);
    p.translation = {transl.data[q * 3], transl.data[q * 3 + 1], transl.data[q * 3 + 2]};
    p.focal_length_px = focal_px_ / r.frame.scale;
    r.people.push_back(std::move(p));
  }
  r.decode_ms = ms_since(t0);
  return r;
}

}  // namespace edgehmr
