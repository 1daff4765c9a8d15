// metadata.json of an edgehmr artifact (edgehmr/artifact.py writes it): the single description of the model file,
// its inputs/outputs, the crop rule and the camera convention, read by apps exactly as by the Python runners.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgehmr {

// The metadata format this library reads (edgehmr.artifact.SCHEMA_VERSION).
constexpr int kSchemaVersion = 2;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;
  int64_t numel() const;
};

// edgehmr.preprocess.CropRule.
struct CropRule {
  std::string name;  // "hmr2" | "vitpose-udp"
  double padding = 1.0;
  bool udp = false;
  bool antialias = false;
  int input_h = 256, input_w = 192;
  std::array<double, 3> mean{}, std{};
};

// postprocessing.camera: the weak-perspective crop camera's focal length and the crop side it refers to.
struct CameraRule {
  double focal_length_px = 5000.0;
  double crop_size_px = 256.0;
};

// One part of an artifact (a crop model's "model", SAT-HMR's stage1 / stage2): a model file with one static shape
// per entry (an OpenVINO IR reshaped per entry, an ExecuTorch program with a method per entry or one dynamic one).
struct StagePart {
  std::string name;                                   // "stage1" | "stage2"
  std::string file;                                   // relative to the artifact folder
  std::vector<std::string> input_names, output_names;  // feed / result order
  std::map<std::string, std::string> input_dtypes;    // input -> "float32" | "int64"
  std::map<std::string, std::map<std::string, std::vector<int64_t>>> entries;  // entry -> input -> shape
  nlohmann::json details;                             // runtime_config (OpenVINO), ...
  // ExecuTorch: entry -> method that runs it (details.entry_methods; the entry's own name when not recorded).
  std::map<std::string, std::string> entry_methods;
};

struct Metadata {
  int schema_version = 0;
  std::filesystem::path dir;
  std::string model, family, target, precision;
  std::string task;  // edgehmr.tasks: crop-mesh | crop-keypoints | frame-mesh
  std::string model_file;                        // parts.model.file, relative to dir
  std::map<std::string, std::string> files_sha256;  // optional: file name -> lowercase hex sha256
  std::vector<TensorSpec> inputs, outputs;
  CropRule crop;
  CameraRule camera;
  bool has_camera = false;
  nlohmann::json target_details = nlohmann::json::object();  // parts.model.details: runtime_config (OpenVINO), delegate (ExecuTorch), ...
  nlohmann::json raw;
  // Multi-stage artifacts (SAT-HMR) have parts instead of one model file, a canvas instead of a crop rule, and
  // the bucket table of their host step.
  std::map<std::string, StagePart> stages;
  int canvas_w = 0, canvas_h = 0;
  nlohmann::json buckets;

  bool multistage() const { return !stages.empty(); }

  std::filesystem::path model_path() const { return dir / model_file; }
};

// Parse ARTIFACT_DIR/metadata.json. Throws MetadataError / MetadataVersionError.
Metadata parse_metadata(const nlohmann::json& j, const std::filesystem::path& dir);
// Read and parse; when verify_hashes, also check every file hash the metadata records (HashMismatchError).
Metadata read_metadata(const std::filesystem::path& artifact_dir, bool verify_hashes = true);
// Check the recorded sha256 of each file; a no-op when the metadata records none.
void verify_file_hashes(const Metadata& meta);
// Lowercase hex sha256 of a file (OpenSSL); throws Error when unreadable.
std::string file_sha256(const std::filesystem::path& path);

}  // namespace edgehmr
