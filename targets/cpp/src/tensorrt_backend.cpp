// TensorRT (10.x API: named I/O tensors, enqueueV3), for Jetson and x86+NVIDIA builds. Compiled only when CMake
// finds TensorRT's headers and CUDA (option EDGEHMR_TENSORRT); not built on machines without them.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "edgehmr/backend.h"
#include "edgehmr/errors.h"

namespace edgehmr {

namespace {

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "TensorRT: %s\n", msg);
  }
};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw BackendError(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(e));
}

class TensorRTBackend : public Backend {
 public:
  explicit TensorRTBackend(const Metadata& meta) : meta_(meta) {
    // The engine is built on the device ('edgehmr build-engine') and recorded in parts.model.details.engine.file
    // (null until then).
    const nlohmann::json engine = meta.target_details.value("engine", nlohmann::json());
    const std::string file = engine.is_object() ? engine.value("file", "") : "";
    if (file.empty())
      throw BackendError(meta.dir.string() + " has no TensorRT engine yet; run 'edgehmr build-engine' on the device.");
    if (std::filesystem::path(file).is_absolute() || file.find("..") != std::string::npos)
      throw BackendError(meta.dir.string() + ": details.engine.file must be a path inside the artifact folder, not '" +
                         file + "'; rebuild it with 'edgehmr build-engine'.");
    const std::filesystem::path engine_path = meta.dir / file;
    std::ifstream in(engine_path, std::ios::binary);
    std::vector<char> plan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (plan.empty()) throw BackendError("cannot read " + engine_path.string() + ".");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_)
      throw BackendError(engine_path.string() + " is not a TensorRT engine for this TensorRT version / GPU; "
                         "build the engine on the device.");
    context_.reset(engine_->createExecutionContext());
    check(cudaStreamCreate(&stream_), "stream creation");
    for (const auto& specs : {meta.inputs, meta.outputs})
      for (const TensorSpec& s : specs) {
        void* p = nullptr;
        check(cudaMalloc(&p, size_t(s.numel()) * sizeof(float)), "allocation");
        buffers_.push_back(p);
        if (!context_->setTensorAddress(s.name.c_str(), p))
          throw BackendError("the engine has no tensor '" + s.name + "' listed in metadata.json.");
      }
  }

  ~TensorRTBackend() override {
    for (void* p : buffers_) cudaFree(p);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    for (size_t i = 0; i < inputs.size(); ++i)
      check(cudaMemcpyAsync(buffers_[i], inputs[i].data.data(), inputs[i].data.size() * sizeof(float),
                            cudaMemcpyHostToDevice, stream_), "copy in");
    if (!context_->enqueueV3(stream_)) throw BackendError("TensorRT inference failed (see the log above).");
    std::vector<Tensor> outs;
    for (size_t i = 0; i < meta_.outputs.size(); ++i) {
      const TensorSpec& s = meta_.outputs[i];
      Tensor o{s.name, s.shape, std::vector<float>(size_t(s.numel()))};
      check(cudaMemcpyAsync(o.data.data(), buffers_[meta_.inputs.size() + i], o.data.size() * sizeof(float),
                            cudaMemcpyDeviceToHost, stream_), "copy out");
      outs.push_back(std::move(o));
    }
    check(cudaStreamSynchronize(stream_), "synchronize");
    return outs;
  }

 private:
  Metadata meta_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::vector<void*> buffers_;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const Metadata& meta) { return std::make_unique<TensorRTBackend>(meta); }

}  // namespace edgehmr
