// edgehmr-run: run an HMR2.0-family or ViTPose artifact on an image and person boxes, or a SAT-HMR artifact on a whole frame;
// JSON on stdout.
//
//   edgehmr-run ARTIFACT_DIR IMAGE --box x1,y1,x2,y2 [--box ...] [--backend openvino|executorch|tensorrt]
//               [--dump-input DIR] [--no-hash-check]
//   edgehmr-run SAT_HMR_ARTIFACT_DIR IMAGE [--confidence 0.3] [--backend ...] [--dump-input DIR]
//
// Any bad input (metadata from a newer edgehmr, a modified model file, a box outside the image, an undecodable
// image, a backend not built in) ends with one "edgehmr-run: error: ..." line on stderr and exit status 2.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgehmr/backend.h"
#include "edgehmr/errors.h"
#include "edgehmr/image.h"
#include "edgehmr/metadata.h"
#include "edgehmr/pipeline.h"
#include "edgehmr/sat_pipeline.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kUsage =
    "usage: edgehmr-run ARTIFACT_DIR IMAGE --box x1,y1,x2,y2 [--box ...] [--backend openvino|executorch|tensorrt]\n"
    "                   [--dump-input DIR] [--no-hash-check]\n"
    "       edgehmr-run SAT_HMR_ARTIFACT_DIR IMAGE [--confidence C] [--backend ...] [--dump-input DIR]\n"
    "  --box          person box in image pixels (xyxy); repeat for several people (not for SAT-HMR)\n"
    "  --confidence   SAT-HMR: keep the queries whose person confidence exceeds C (default 0.3, its demo's)\n"
    "  --backend      runtime to use (default: the artifact's target)\n"
    "  --dump-input   write each preprocessed input as raw float32 to DIR/input_<i>.f32 (SAT-HMR: DIR/frame.f32)\n"
    "  --no-hash-check  skip the sha256 check of the model file against metadata.json\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

edgehmr::Box parse_box(const std::string& s) {
  std::vector<double> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double d = std::strtod(item.c_str(), &end);
    if (item.empty() || end != item.c_str() + item.size()) throw UsageError("--box '" + s + "': not a number: '" + item + "'");
    v.push_back(d);
  }
  if (v.size() != 4) throw UsageError("--box '" + s + "': expected x1,y1,x2,y2");
  return {v[0], v[1], v[2], v[3]};
}

// Row-major 3x3 matrices -> nested [[...],[...],[...]] lists.
json matrices(const std::vector<std::array<float, 9>>& Rs) {
  json out = json::array();
  for (const auto& R : Rs)
    out.push_back({{R[0], R[1], R[2]}, {R[3], R[4], R[5]}, {R[6], R[7], R[8]}});
  return out;
}

double ms(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void dump(const std::string& dir, const std::string& file, const std::vector<float>& values) {
  fs::create_directories(dir);
  const fs::path p = fs::path(dir) / file;
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
  if (!out) throw edgehmr::Error("cannot write " + p.string());
}

json sat_result(const edgehmr::Metadata& meta, const std::string& image_path, const edgehmr::Image& image,
                const std::string& backend, float confidence, const std::string& dump_dir, json timings) {
  auto t0 = std::chrono::steady_clock::now();
  const edgehmr::SatPipeline pipeline(meta, backend);
  timings["model_load"] = ms(t0);
  const edgehmr::SatFrameResult r = pipeline.run(image, confidence);
  if (!dump_dir.empty()) dump(dump_dir, "frame.f32", r.frame.chw);
  json people = json::array();
  for (const edgehmr::SatPerson& p : r.people)
    people.push_back({
        {"query", p.query},
        {"confidence", p.confidence},
        {"box", p.box},
        {"smpl", {{"global_orient", matrices({p.global_orient})}, {"body_pose", matrices(p.body_pose)},
                  {"betas", p.betas}}},
        {"camera", {{"translation", p.translation}, {"focal_length_px", p.focal_length_px},
                    {"principal_point_px", {image.width / 2.0, image.height / 2.0}}}},
    });
  json outputs = json::object();
  for (const edgehmr::Tensor& t : r.outputs) outputs[t.name] = {{"shape", t.shape}, {"data", t.data}};
  timings.update({{"preprocess", r.preprocess_ms}, {"stage1", r.stage1_ms}, {"host_step", r.host_ms},
                  {"stage2", r.stage2_ms}, {"decode", r.decode_ms}});
  return {
      {"model", meta.model},
      {"target", meta.target},
      {"precision", meta.precision},
      {"backend", pipeline.backend_name()},
      {"image", {{"path", image_path}, {"width", image.width}, {"height", image.height}}},
      {"tokens", {{"bucket", r.bucket}, {"demoted", r.demoted}, {"hr_cells", r.hr_cells},
                  {"other_tokens", r.other_tokens}}},
      {"timings_ms", timings},
      {"people", people},
      {"outputs", outputs},
  };
}

int run(int argc, char** argv) {
  std::vector<std::string> positional, boxes;
  std::string backend_name, dump_dir;
  float confidence = 0.3f;
  bool hash_check = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* opt) -> std::string {
      if (i + 1 >= argc) throw UsageError(std::string(opt) + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--box") boxes.push_back(value("--box"));
    else if (a == "--backend") backend_name = value("--backend");
    else if (a == "--dump-input") dump_dir = value("--dump-input");
    else if (a == "--confidence") {
      const std::string v = value("--confidence");
      char* end = nullptr;
      confidence = std::strtof(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size()) throw UsageError("--confidence '" + v + "': not a number");
    }
    else if (a == "--no-hash-check") hash_check = false;
    else if (a.size() > 1 && a[0] == '-' && !(a[1] >= '0' && a[1] <= '9')) throw UsageError("unknown option " + a);
    else positional.push_back(a);
  }
  if (positional.size() != 2) throw UsageError("expected ARTIFACT_DIR and IMAGE");
  std::vector<edgehmr::Box> parsed;
  for (const std::string& b : boxes) parsed.push_back(parse_box(b));

  auto t0 = std::chrono::steady_clock::now();
  const edgehmr::Metadata meta = edgehmr::read_metadata(positional[0], hash_check);
  const double metadata_ms = ms(t0);
  if (meta.multistage() && !boxes.empty())
    throw UsageError(meta.model + " finds the people itself: pass the whole frame, no --box");
  if (!meta.multistage() && boxes.empty()) throw UsageError("give at least one --box x1,y1,x2,y2");
  t0 = std::chrono::steady_clock::now();
  const edgehmr::Image image = edgehmr::read_image_rgb(positional[1]);
  const double image_ms = ms(t0);
  if (meta.multistage()) {
    const json timings = {{"metadata", metadata_ms}, {"image_decode", image_ms}};
    std::cout << sat_result(meta, positional[1], image, backend_name, confidence, dump_dir, timings).dump() << "\n";
    return 0;
  }
  // Every box is checked before the (slow) model load, so a bad box fails fast.
  for (const edgehmr::Box& b : parsed) edgehmr::check_box(b, image.width, image.height);
  t0 = std::chrono::steady_clock::now();
  std::unique_ptr<edgehmr::Backend> backend = edgehmr::open_backend(meta, backend_name);
  const double load_ms = ms(t0);

  json people = json::array();
  for (size_t i = 0; i < parsed.size(); ++i) {
    const edgehmr::PersonResult r = edgehmr::predict_person(*backend, meta, image, parsed[i]);
    if (!dump_dir.empty()) dump(dump_dir, "input_" + std::to_string(i) + ".f32", r.crop.input);
    json outputs = json::object();
    for (const edgehmr::Tensor& t : r.outputs) outputs[t.name] = {{"shape", t.shape}, {"data", t.data}};
    json person = {
        {"box", {r.box.x1, r.box.y1, r.box.x2, r.box.y2}},
        {"crop", {{"center", r.crop.center}, {"size", r.crop.size}}},
        {"keypoints", r.keypoints},
        {"outputs", outputs},
        {"timings_ms", {{"preprocess", r.preprocess_ms}, {"infer", r.infer_ms}, {"decode", r.decode_ms}}},
    };
    if (meta.task != "crop-keypoints") {
      person["smpl"] = {{"global_orient", matrices(r.global_orient)}, {"body_pose", matrices(r.body_pose)},
                        {"betas", r.betas}};
      person["camera"] = {{"pred_cam", r.pred_cam},
                          {"translation_full_image", r.cam_t_full},
                          {"focal_length_full_image_px", r.focal_full},
                          {"principal_point_px", {r.crop.image_size[0] / 2.0, r.crop.image_size[1] / 2.0}}};
    }
    people.push_back(person);
  }
  const json result = {
      {"model", meta.model},
      {"target", meta.target},
      {"precision", meta.precision},
      {"backend", backend->name()},
      {"image", {{"path", positional[1]}, {"width", image.width}, {"height", image.height}}},
      {"timings_ms", {{"metadata", metadata_ms}, {"image_decode", image_ms}, {"model_load", load_ms}}},
      {"people", people},
  };
  std::cout << result.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "edgehmr-run: error: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const edgehmr::Error& e) {
    std::cerr << "edgehmr-run: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "edgehmr-run: internal error: " << e.what() << "\n";
    return 1;
  }
}
