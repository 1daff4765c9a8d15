// OpenVINO CPU plugin, compiled with the settings targets/openvino.py uses: f32 inference precision and the latency
// hint (this CPU's default precision is bf16, which would not match the FP32 reference), then whatever
// runtime_config the artifact recorded at conversion.
#include <openvino/openvino.hpp>

#include "edgehmr/backend.h"
#include "edgehmr/errors.h"

namespace edgehmr {

namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

ov::AnyMap compile_config(const nlohmann::json& details) {
  ov::AnyMap config{{"INFERENCE_PRECISION_HINT", "f32"}, {"PERFORMANCE_HINT", "LATENCY"}};
  const nlohmann::json rc = details.value("runtime_config", nlohmann::json::object());
  for (const auto& [key, value] : rc.items()) config[key] = value.is_string() ? value.get<std::string>() : value.dump();
  return config;
}

// Wraps the caller's buffer (no copy): the request reads it during infer().
void set_input(ov::InferRequest& request, const Tensor& in) {
  ov::Shape shape(in.shape.begin(), in.shape.end());
  if (in.dtype == DType::i64)
    request.set_tensor(in.name, ov::Tensor(ov::element::i64, shape, const_cast<int64_t*>(in.ints.data())));
  else
    request.set_tensor(in.name, ov::Tensor(ov::element::f32, shape, const_cast<float*>(in.data.data())));
}

std::vector<Tensor> read_outputs(ov::InferRequest& request, const std::vector<std::string>& names) {
  std::vector<Tensor> outs;
  for (const std::string& name : names) {
    const ov::Tensor t = request.get_tensor(name);
    if (t.get_element_type() != ov::element::f32) throw BackendError("output '" + name + "' is not float32.");
    Tensor o;
    o.name = name;
    for (size_t d : t.get_shape()) o.shape.push_back(int64_t(d));
    const float* p = t.data<const float>();
    o.data.assign(p, p + t.get_size());  // copied: the next infer() overwrites the request's buffers
    outs.push_back(std::move(o));
  }
  return outs;
}

class OpenVINOBackend : public Backend {
 public:
  explicit OpenVINOBackend(const Metadata& meta) : meta_(meta) {
    try {
      compiled_ = core_.compile_model(meta.model_path().string(), "CPU", compile_config(meta.target_details));
      request_ = compiled_.create_infer_request();
    } catch (const ov::Exception& e) {
      throw BackendError("OpenVINO cannot compile " + meta.model_path().string() + ": " + first_line(e.what()));
    }
  }

  std::string name() const override { return "openvino"; }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    try {
      for (const Tensor& in : inputs) set_input(request_, in);
      request_.infer();
      std::vector<std::string> names;
      for (const TensorSpec& spec : meta_.outputs) names.push_back(spec.name);
      return read_outputs(request_, names);
    } catch (const ov::Exception& e) {
      throw BackendError(std::string("OpenVINO inference failed: ") + first_line(e.what()));
    }
  }

 private:
  Metadata meta_;
  ov::Core core_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
};

// One static CompiledModel per entry (the IR reshaped to the entry's shapes), as targets/openvino.py's
// OpenVINOMultiShapeRunner: static-shape kernels for every bucket, all compiled at open.
class OpenVINOStage : public StageBackend {
 public:
  OpenVINOStage(const Metadata& meta, const StagePart& part) : part_(part) {
    const std::string path = (meta.dir / part.file).string();
    try {
      const std::shared_ptr<ov::Model> model = core_.read_model(path);
      const ov::AnyMap config = compile_config(part.details);
      for (const auto& [entry, shapes] : part.entries) {
        std::shared_ptr<ov::Model> fixed = model->clone();
        std::map<std::string, ov::PartialShape> by_name;
        for (const auto& [input, shape] : shapes) by_name[input] = ov::PartialShape(std::vector<int64_t>(shape));
        fixed->reshape(by_name);
        ov::CompiledModel compiled = core_.compile_model(fixed, "CPU", config);
        requests_[entry] = compiled.create_infer_request();
        compiled_.push_back(std::move(compiled));
      }
    } catch (const ov::Exception& e) {
      throw BackendError("OpenVINO cannot compile " + path + ": " + first_line(e.what()));
    }
  }

  std::string name() const override { return "openvino"; }

  std::vector<Tensor> run(const std::string& entry, const std::vector<Tensor>& inputs) override {
    auto it = requests_.find(entry);
    if (it == requests_.end()) throw BackendError(part_.name + " has no entry '" + entry + "'.");
    try {
      for (const Tensor& in : inputs) set_input(it->second, in);
      it->second.infer();
      return read_outputs(it->second, part_.output_names);
    } catch (const ov::Exception& e) {
      throw BackendError("OpenVINO inference of " + part_.name + " (" + entry + ") failed: " + first_line(e.what()));
    }
  }

 private:
  StagePart part_;
  ov::Core core_;
  std::vector<ov::CompiledModel> compiled_;
  std::map<std::string, ov::InferRequest> requests_;
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const Metadata& meta) { return std::make_unique<OpenVINOBackend>(meta); }

std::unique_ptr<StageBackend> make_openvino_stage(const Metadata& meta, const StagePart& part) {
  return std::make_unique<OpenVINOStage>(meta, part);
}

}  // namespace edgehmr
