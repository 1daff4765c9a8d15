#include "edgehmr/metadata.h"

#include <openssl/evp.h>

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <memory>
#include <sstream>

#include "edgehmr/errors.h"

namespace edgehmr {
namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

constexpr int kMaxJsonDepth = 64;

// Field access with a message naming the file and the field, instead of nlohmann's generic type_error.
const json& field(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw MetadataError(where + " has no '" + key + "'; re-run 'edgehmr convert'.");
  return j.at(key);
}

template <typename T>
T get(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw MetadataError(where + ": '" + key + "' has an unexpected type (" + v.type_name() + ").");
  }
}

// A file name from metadata.json must be a relative path inside the artifact folder: the same rule as
// edgehmr.artifact.inside in Python (no absolute path, no "..", checked again with links resolved on read).
void check_inside(const std::string& name, const std::string& where, const std::string& what) {
  if (name.empty() || fs::path(name).is_absolute() || name.find("..") != std::string::npos)
    throw MetadataError(where + ": " + what + " must be a path inside the artifact folder, not '" + name +
                        "'; re-run 'edgehmr convert'.");
}

void check_resolved_inside(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(dir, ec);
  const fs::path target = fs::weakly_canonical(dir / name, ec);
  const auto [r, t] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
  if (ec || r != root.end())
    throw MetadataError((dir / "metadata.json").string() + ": '" + name + "' leads outside the artifact folder (a "
                        "link to " + target.string() + "); copy the file into the folder or re-run 'edgehmr convert'.");
}

std::vector<TensorSpec> tensors(const json& list, const std::string& where) {
  if (!list.is_array()) throw MetadataError(where + " is not a list.");
  std::vector<TensorSpec> out;
  for (const json& t : list) {
    TensorSpec s;
    s.name = get<std::string>(t, "name", where);
    s.shape = get<std::vector<int64_t>>(t, "shape", where);
    s.dtype = t.value("dtype", "float32");
    if (s.dtype != "float32")
      throw MetadataError(where + ": tensor '" + s.name + "' is " + s.dtype + "; this library feeds float32 only.");
    out.push_back(std::move(s));
  }
  return out;
}

StagePart stage(const json& j, const std::string& name, const std::string& where_in) {
  const std::string where = where_in + " parts." + name;
  const json& part = field(j, name.c_str(), where_in + " parts");
  StagePart s;
  s.name = name;
  s.file = get<std::string>(part, "file", where);
  check_inside(s.file, where, "file");
  s.input_names = get<std::vector<std::string>>(part, "input_names", where);
  s.output_names = get<std::vector<std::string>>(part, "output_names", where);
  s.input_dtypes = get<std::map<std::string, std::string>>(part, "input_dtypes", where);
  for (const auto& [input, dtype] : s.input_dtypes)
    if (dtype != "float32" && dtype != "int64")
      throw MetadataError(where + ": input '" + input + "' is " + dtype + "; this library feeds float32 and int64.");
  s.entries = get<std::map<std::string, std::map<std::string, std::vector<int64_t>>>>(part, "entries", where);
  if (s.entries.empty()) throw MetadataError(where + " has no entries.");
  for (const auto& [entry, shapes] : s.entries)
    for (const std::string& input : s.input_names)
      if (!shapes.count(input)) throw MetadataError(where + ": entry '" + entry + "' has no shape for '" + input + "'.");
  s.details = part.value("details", json::object());
  if (!s.details.is_object()) throw MetadataError(where + ".details must be an object.");
  const json methods = s.details.value("entry_methods", json::object());
  if (!methods.is_object()) throw MetadataError(where + ".details.entry_methods must map entries to method names.");
  for (const auto& [entry, shapes] : s.entries) {
    const json method = methods.value(entry, json(entry));
    if (!method.is_string() || method.get<std::string>().empty())
      throw MetadataError(where + ".details.entry_methods: entry '" + entry + "' needs a method name.");
    s.entry_methods[entry] = method.get<std::string>();
  }
  return s;
}

void parse_multistage(const json& j, const std::string& where, Metadata& m) {
  const json& parts = field(j, "parts", where);
  for (const char* name : {"stage1", "stage2"}) m.stages[name] = stage(parts, name, where);
  const json& canvas = field(j, "canvas", where);
  m.canvas_w = get<int>(canvas, "width", where + " canvas");
  m.canvas_h = get<int>(canvas, "height", where + " canvas");
  if (m.canvas_w <= 0 || m.canvas_h <= 0) throw MetadataError(where + ": the canvas must have a positive size.");
  m.buckets = field(j, "buckets", where);
}

}  // namespace

Metadata parse_metadata(const json& j, const fs::path& dir) {
  const std::string where = (dir / "metadata.json").string();
  Metadata m;
  m.dir = dir;
  m.raw = j;
  if (!j.is_object()) throw MetadataError(where + " is not a JSON object.");
  if (!j.contains("schema_version") || !j["schema_version"].is_number_integer())
    throw MetadataError(where + " has no integer schema_version; re-run 'edgehmr convert'.");
  m.schema_version = j["schema_version"].get<int>();
  if (m.schema_version > kSchemaVersion)
    throw MetadataVersionError(where + " has format version " + std::to_string(m.schema_version) +
                               ", newer than the " + std::to_string(kSchemaVersion) +
                               " this library reads; update the edgehmr C++ runtime.");
  if (m.schema_version != kSchemaVersion)
    throw MetadataVersionError(where + " has format version " + std::to_string(m.schema_version) +
                               ", this library reads " + std::to_string(kSchemaVersion) + "; re-run 'edgehmr convert'.");

  const json& model = field(j, "model", where);
  m.model = get<std::string>(model, "model", where);
  m.family = model.value("family", "");
  m.task = get<std::string>(j, "task", where);
  m.target = get<std::string>(j, "target", where);
  m.precision = get<std::string>(j, "precision", where);
  // Optional: file name -> sha256. Older artifacts record none; then there is nothing to check.
  if (j.contains("files_sha256")) m.files_sha256 = get<std::map<std::string, std::string>>(j, "files_sha256", where);
  for (const auto& [name, hash] : m.files_sha256) check_inside(name, where, "files_sha256");
  // Every artifact lists its parts in one record shape: a crop model its one ("model"), SAT-HMR stage1 and stage2.
  const json& parts = field(j, "parts", where);
  if (parts.is_object() && parts.contains("stage1")) {
    parse_multistage(j, where, m);
    return m;
  }
  const StagePart crop_part = stage(parts, "model", where);
  m.model_file = crop_part.file;
  m.target_details = crop_part.details;
  m.inputs = tensors(field(j, "inputs", where), where + " inputs");
  m.outputs = tensors(field(j, "outputs", where), where + " outputs");

  const json& pre = field(j, "preprocessing", where);
  m.crop.name = get<std::string>(pre, "name", where);
  m.crop.padding = get<double>(pre, "padding", where);
  m.crop.udp = get<bool>(pre, "udp", where);
  m.crop.antialias = get<bool>(pre, "antialias", where);
  auto hw = get<std::vector<int>>(pre, "input_hw", where);
  auto mean = get<std::vector<double>>(pre, "mean", where);
  auto std_ = get<std::vector<double>>(pre, "std", where);
  if (hw.size() != 2 || mean.size() != 3 || std_.size() != 3 || hw[0] <= 0 || hw[1] <= 0)
    throw MetadataError(where + ": preprocessing.input_hw / mean / std have the wrong length.");
  m.crop.input_h = hw[0];
  m.crop.input_w = hw[1];
  for (int c = 0; c < 3; ++c) {
    m.crop.mean[c] = mean[c];
    m.crop.std[c] = std_[c];
  }

  if (j.contains("postprocessing") && j["postprocessing"].contains("camera")) {
    const json& cam = j["postprocessing"]["camera"];
    m.camera.focal_length_px = get<double>(cam, "focal_length_px", where);
    m.camera.crop_size_px = get<double>(cam, "crop_size_px", where);
    m.has_camera = true;
  }
  return m;
}

Metadata read_metadata(const fs::path& artifact_dir, bool verify_hashes) {
  const fs::path path = artifact_dir / "metadata.json";
  std::ifstream in(path);
  if (!in)
    throw MetadataError(artifact_dir.string() + " is not an edgehmr artifact (no metadata.json); "
                        "create one with 'edgehmr convert'.");
  // Deeper nesting than any metadata edgehmr writes is refused as it is met (edgehmr.jsonfile.MAX_DEPTH, counted
  // in brackets; the parser's depth starts at 0), before a deep document can exhaust the stack.
  const json::parser_callback_t depth_limit = [&path](int depth, json::parse_event_t event, json&) {
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth + 1 > kMaxJsonDepth)
      throw MetadataError(path.string() + " nests deeper than " + std::to_string(kMaxJsonDepth) +
                          " levels; it is not a file edgehmr reads.");
    return true;
  };
  json j;
  try {
    j = json::parse(in, depth_limit);
  } catch (const json::parse_error& e) {
    throw MetadataError(path.string() + " is corrupt (" + e.what() + ").");
  }
  Metadata m = parse_metadata(j, artifact_dir);
  std::vector<std::string> files;
  if (m.multistage())
    for (const auto& [name, part] : m.stages) files.push_back(part.file);
  else
    files.push_back(m.model_file);
  for (const std::string& f : files) {
    check_resolved_inside(artifact_dir, f);
    if (!fs::is_regular_file(artifact_dir / f))
      throw MetadataError(artifact_dir.string() + " lacks its model file " + f + ".");
  }
  for (const auto& [name, hash] : m.files_sha256) check_resolved_inside(artifact_dir, name);
  if (verify_hashes) verify_file_hashes(m);
  return m;
}

void verify_file_hashes(const Metadata& meta) {
  for (const auto& [name, expected] : meta.files_sha256) {
    const fs::path p = meta.dir / name;
    if (!fs::is_regular_file(p))
      throw HashMismatchError(meta.dir.string() + ": metadata.json records a hash for " + name + ", which is missing.");
    const std::string got = file_sha256(p);
    std::string want = expected;
    for (char& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (got != want)
      throw HashMismatchError(p.string() + " does not match metadata.json (sha256 " + got.substr(0, 12) +
                              "..., recorded " + want.substr(0, 12) + "...): the artifact was modified or mixed up; "
                              "re-run 'edgehmr convert'.");
  }
}

std::string file_sha256(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string() + ".");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("OpenSSL sha256 unavailable.");
  std::vector<char> buf(1 << 22);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw Error("error reading " + path.string() + ".");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::ostringstream hex;
  for (unsigned int i = 0; i < len; ++i) hex << std::hex << std::setw(2) << std::setfill('0') << int(md[i]);
  return hex.str();
}

}  // namespace edgehmr
