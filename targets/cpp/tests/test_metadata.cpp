// metadata.json parsing and its errors: newer format, corrupt file, missing fields, file hash check.
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "check.h"
#include "edgehmr/errors.h"
#include "edgehmr/metadata.h"

namespace fs = std::filesystem;
using nlohmann::json;

// The fields an hmr2-vit-s artifact records (abridged from 'edgehmr convert -m hmr2-vit-s -t openvino').
static json sample() {
  return json::parse(R"({
    "schema_version": 2,
    "model": {"model": "hmr2-vit-s", "family": "hmr2", "weights": "untrained"},
    "task": "crop-mesh", "target": "openvino", "precision": "fp32",
    "parts": {"model": {"target": "openvino", "file": "model.xml", "input_names": ["image"],
                        "output_names": ["global_orient", "pred_cam"], "precision": "fp32",
                        "input_dtypes": {"image": "float32"}, "entries": {"main": {"image": [1, 3, 256, 192]}},
                        "details": {"runtime_config": {"INFERENCE_PRECISION_HINT": "f32"}}}},
    "inputs": [{"name": "image", "shape": [1, 3, 256, 192], "dtype": "float32"}],
    "outputs": [{"name": "global_orient", "shape": [1, 1, 3, 3], "dtype": "float32"},
                {"name": "pred_cam", "shape": [1, 3], "dtype": "float32"}],
    "preprocessing": {"name": "hmr2", "padding": 1.0, "udp": false, "antialias": true, "input_hw": [256, 192],
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "postprocessing": {"camera": {"focal_length_px": 5000.0, "crop_size_px": 256.0}}
  })");
}

// A two-stage (SAT-HMR) ExecuTorch artifact, abridged: stage 2 runs both buckets on one dynamic method.
static json multistage() {
  const json part = json::parse(R"({
    "file": "stage2/model.pte", "input_names": ["hr_cells"], "output_names": ["betas"],
    "input_dtypes": {"hr_cells": "int64"},
    "entries": {"b4x8": {"hr_cells": [1, 4]}, "b8x16": {"hr_cells": [1, 8]}},
    "details": {"entry_methods": {"b4x8": "forward", "b8x16": "forward"}}
  })");
  json j = sample();
  j["target"] = "executorch";
  j["parts"] = {{"stage1", part}, {"stage2", part}};
  j["parts"]["stage1"]["details"] = json::object();  // not recorded: each entry's method is named after it
  j["canvas"] = {{"width", 56}, {"height", 56}, {"grid", {4, 4}}};
  j["buckets"] = json::object();
  return j;
}

static fs::path write_artifact(const std::string& name, const std::string& metadata_text) {
  const fs::path dir = fs::temp_directory_path() / ("edgehmr_test_" + std::to_string(::getpid()) + "_" + name);
  fs::create_directories(dir);
  std::ofstream(dir / "metadata.json") << metadata_text;
  std::ofstream(dir / "model.xml") << "abc";
  return dir;
}

int main() {
  using namespace edgehmr;
  // A good file.
  {
    const fs::path dir = write_artifact("ok", sample().dump());
    const Metadata m = read_metadata(dir);
    CHECK(m.model == "hmr2-vit-s");
    CHECK(m.family == "hmr2");
    CHECK(m.target == "openvino");
    CHECK(m.model_path() == dir / "model.xml");
    CHECK(m.inputs.size() == 1 && m.inputs[0].numel() == 3 * 256 * 192);
    CHECK(m.outputs.size() == 2 && m.outputs[1].name == "pred_cam");
    CHECK(m.crop.name == "hmr2" && m.crop.antialias && !m.crop.udp && m.crop.input_h == 256 && m.crop.input_w == 192);
    CHECK_NEAR(m.crop.std[2], 0.225, 0);
    CHECK(m.has_camera);
    CHECK_NEAR(m.camera.focal_length_px, 5000.0, 0);
    CHECK(m.target_details["runtime_config"]["INFERENCE_PRECISION_HINT"] == "f32");
    fs::remove_all(dir);
  }
  // Multi-stage parts: each entry's ExecuTorch method, recorded or by default the entry's name.
  {
    const Metadata m = parse_metadata(multistage(), "x");
    CHECK(m.multistage());
    CHECK(m.stages.at("stage2").entry_methods.at("b8x16") == "forward");
    CHECK(m.stages.at("stage1").entry_methods.at("b8x16") == "b8x16");
    json j = multistage();
    j["parts"]["stage2"]["details"]["entry_methods"]["b4x8"] = 3;
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "entry 'b4x8' needs a method name");
    j["parts"]["stage2"]["details"]["entry_methods"] = json::array();
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "must map entries to method names");
  }
  // A newer format version is refused with its own type, naming both versions.
  {
    json j = sample();
    j["schema_version"] = 3;
    const fs::path dir = write_artifact("newer", j.dump());
    CHECK_THROWS(read_metadata(dir), MetadataVersionError, "format version 3, newer than the 2");
    fs::remove_all(dir);
  }
  {
    json j = sample();
    j["schema_version"] = 1;  // the format before every artifact listed its parts
    CHECK_THROWS(parse_metadata(j, "x"), MetadataVersionError, "re-run 'edgehmr convert'");
    j.erase("schema_version");
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "schema_version");
  }
  // Corrupt JSON, no metadata at all, a missing field, a field of the wrong type, a path escaping the artifact.
  {
    const fs::path dir = write_artifact("corrupt", "{\"schema_version\": 2, ");
    CHECK_THROWS(read_metadata(dir), MetadataError, "is corrupt");
    fs::remove_all(dir);
    CHECK_THROWS(read_metadata(dir), MetadataError, "is not an edgehmr artifact");
    json j = sample();
    j.erase("preprocessing");
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "'preprocessing'");
    j = sample();
    j["preprocessing"]["padding"] = "wide";
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "'padding' has an unexpected type");
    j = sample();
    j["parts"]["model"]["file"] = "../model.xml";
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "inside the artifact");
    j["parts"]["model"]["file"] = "/etc/passwd";
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "inside the artifact");
    j = sample();
    j["files_sha256"] = {{"../../etc/passwd", "00"}};
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "files_sha256 must be a path inside the artifact");
    j = sample();
    j["inputs"][0]["dtype"] = "float16";
    CHECK_THROWS(parse_metadata(j, "x"), MetadataError, "float32 only");
  }
  // A model file that is a link to a file outside the folder is refused before anything reads it.
  {
    const fs::path dir = write_artifact("link", sample().dump());
    const fs::path outside = dir.parent_path() / (dir.filename().string() + "_outside.xml");
    std::ofstream(outside) << "abc";
    fs::remove(dir / "model.xml");
    fs::create_symlink(outside, dir / "model.xml");
    CHECK_THROWS(read_metadata(dir), MetadataError, "leads outside the artifact folder");
    fs::remove_all(dir);
    fs::remove(outside);
  }
  // File hashes: sha256("abc") is the FIPS 180-2 test vector.
  {
    const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    json j = sample();
    j["files_sha256"] = {{"model.xml", abc}};
    fs::path dir = write_artifact("hash_ok", j.dump());
    CHECK(file_sha256(dir / "model.xml") == abc);
    CHECK(read_metadata(dir).files_sha256.size() == 1);
    std::ofstream(dir / "model.xml") << "abd";  // one byte changed
    CHECK_THROWS(read_metadata(dir), HashMismatchError, "does not match metadata.json");
    read_metadata(dir, /*verify_hashes=*/false);  // an app may skip the check explicitly
    fs::remove_all(dir);
  }
  // A model file that is missing entirely.
  {
    const fs::path dir = write_artifact("nomodel", sample().dump());
    fs::remove(dir / "model.xml");
    CHECK_THROWS(read_metadata(dir), MetadataError, "lacks its model file");
    fs::remove_all(dir);
  }
  return test_result("test_metadata");
}
