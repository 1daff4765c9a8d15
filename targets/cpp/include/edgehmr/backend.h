// One small interface in front of every runtime: float32 tensors in, float32 tensors out, by metadata order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edgehmr/metadata.h"

namespace edgehmr {

enum class DType { f32, i64 };

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;      // float32 tensors
  std::vector<int64_t> ints;    // int64 tensors (SAT-HMR's token indices); `data` is then unused
  DType dtype = DType::f32;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // One inference; inputs in metadata.inputs order, outputs returned in metadata.outputs order, with its names.
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs) = 0;
};

// One part of a multi-stage artifact: the same weights at one static shape per entry (SAT-HMR: the canvas for
// stage 1, one entry per bucket for stage 2). Every entry is prepared at open, so none pays compilation later.
class StageBackend {
 public:
  virtual ~StageBackend() = default;
  virtual std::string name() const = 0;
  // Inputs in part.input_names order with the entry's shapes; outputs in part.output_names order.
  virtual std::vector<Tensor> run(const std::string& entry, const std::vector<Tensor>& inputs) = 0;
};

// Names of the backends compiled into this build.
std::vector<std::string> available_backends();
// Open the artifact with `which` ("openvino", "executorch", "tensorrt"); empty: the artifact's own target.
// Throws BackendError when the backend is not built in or does not fit the artifact.
std::unique_ptr<Backend> open_backend(const Metadata& meta, const std::string& which = "");

// The same for one part of a multi-stage artifact.
std::unique_ptr<StageBackend> open_stage_backend(const Metadata& meta, const StagePart& part,
                                                 const std::string& which = "");

// Per-runtime factories (defined only in builds with that backend).
std::unique_ptr<StageBackend> make_openvino_stage(const Metadata& meta, const StagePart& part);
std::unique_ptr<StageBackend> make_executorch_stage(const Metadata& meta, const StagePart& part);
std::unique_ptr<Backend> make_openvino_backend(const Metadata& meta);
std::unique_ptr<Backend> make_executorch_backend(const Metadata& meta);
std::unique_ptr<Backend> make_tensorrt_backend(const Metadata& meta);

}  // namespace edgehmr
