// ExecuTorch through its Module extension: loads the .pte (mmap) and runs a method: "forward", or for multi-stage
// parts the method metadata names for the entry (one with dynamic axes, or one per entry). The XNNPACK delegate and the CPU kernels register themselves from
// static initialisers; CMake links them so the linker keeps them (see CMakeLists.txt), otherwise loading fails
// with "Missing operator" or "backend XnnpackBackend is not registered".
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <set>

#include "edgehmr/backend.h"
#include "edgehmr/errors.h"

namespace edgehmr {

namespace {

using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;

std::string err(Error e) { return "ExecuTorch error " + std::to_string(static_cast<int>(e)); }

std::unique_ptr<Module> load(const std::string& path, const std::vector<std::string>& methods) {
  auto module = std::make_unique<Module>(path, Module::LoadMode::Mmap);
  for (const std::string& method : methods) {
    const Error e = module->load_method(method);
    if (e != Error::Ok)
      throw BackendError("ExecuTorch cannot load method '" + method + "' of " + path + " (" + err(e) +
                         "; the log above names a missing operator or backend).");
  }
  return module;
}

// Inputs wrap the caller's buffers (no copy); outputs are copied, since planned memory is reused by the next call.
std::vector<Tensor> execute(Module& module, const std::string& method, const std::vector<Tensor>& inputs,
                            const std::vector<std::string>& output_names) {
  std::vector<executorch::extension::TensorPtr> keep;
  std::vector<EValue> args;
  for (const Tensor& in : inputs) {
    std::vector<executorch::aten::SizesType> sizes(in.shape.begin(), in.shape.end());
    if (in.dtype == DType::i64)
      keep.push_back(executorch::extension::from_blob(const_cast<int64_t*>(in.ints.data()), sizes,
                                                      executorch::aten::ScalarType::Long));
    else
      keep.push_back(executorch::extension::from_blob(const_cast<float*>(in.data.data()), sizes,
                                                      executorch::aten::ScalarType::Float));
    args.emplace_back(*keep.back());
  }
  auto result = module.execute(method, args);
  if (!result.ok()) throw BackendError("ExecuTorch inference (" + method + ") failed (" + err(result.error()) + ").");
  const std::vector<EValue>& values = result.get();
  if (values.size() != output_names.size())
    throw BackendError("the .pte returned " + std::to_string(values.size()) + " outputs, metadata.json lists " +
                       std::to_string(output_names.size()) + ".");
  std::vector<Tensor> outs;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!values[i].isTensor()) throw BackendError("output " + std::to_string(i) + " of the .pte is not a tensor.");
    const executorch::aten::Tensor t = values[i].toTensor();
    if (t.scalar_type() != executorch::aten::ScalarType::Float)
      throw BackendError("output '" + output_names[i] + "' is not float32.");
    Tensor o;
    o.name = output_names[i];
    for (auto d : t.sizes()) o.shape.push_back(int64_t(d));
    const float* p = t.const_data_ptr<float>();
    o.data.assign(p, p + t.numel());
    outs.push_back(std::move(o));
  }
  return outs;
}

void refuse_coreml(const Metadata& meta, const nlohmann::json& details) {
  if (details.value("delegate", "") == "coreml")
    throw BackendError(meta.dir.filename().string() + " delegates to Core ML, which runs only on Apple devices.");
}

class ExecuTorchBackend : public Backend {
 public:
  explicit ExecuTorchBackend(const Metadata& meta) : output_names_() {
    refuse_coreml(meta, meta.target_details);
    for (const TensorSpec& spec : meta.outputs) output_names_.push_back(spec.name);
    module_ = load(meta.model_path().string(), {"forward"});
  }

  std::string name() const override { return "executorch"; }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    return execute(*module_, "forward", inputs, output_names_);
  }

 private:
  std::vector<std::string> output_names_;
  std::unique_ptr<Module> module_;
};

class ExecuTorchStage : public StageBackend {
 public:
  ExecuTorchStage(const Metadata& meta, const StagePart& part) : part_(part) {
    refuse_coreml(meta, part.details);
    std::set<std::string> methods;
    for (const auto& [entry, method] : part.entry_methods) methods.insert(method);
    module_ = load((meta.dir / part.file).string(), {methods.begin(), methods.end()});
  }

  std::string name() const override { return "executorch"; }

  std::vector<Tensor> run(const std::string& entry, const std::vector<Tensor>& inputs) override {
    if (!part_.entries.count(entry)) throw BackendError(part_.name + " has no entry '" + entry + "'.");
    return execute(*module_, part_.entry_methods.at(entry), inputs, part_.output_names);
  }

 private:
  StagePart part_;
  std::unique_ptr<Module> module_;
};

}  // namespace

std::unique_ptr<Backend> make_executorch_backend(const Metadata& meta) {
  return std::make_unique<ExecuTorchBackend>(meta);
}

std::unique_ptr<StageBackend> make_executorch_stage(const Metadata& meta, const StagePart& part) {
  return std::make_unique<ExecuTorchStage>(meta, part);
}

}  // namespace edgehmr
