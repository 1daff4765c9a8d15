// Backend selection. Each runtime's source is compiled only when its CMake option is on, so this file is where a
// build without it says so, instead of failing to link.
#include "edgehmr/backend.h"

#include "edgehmr/errors.h"

namespace edgehmr {

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
#ifdef EDGEHMR_WITH_OPENVINO
  out.push_back("openvino");
#endif
#ifdef EDGEHMR_WITH_EXECUTORCH
  out.push_back("executorch");
#endif
#ifdef EDGEHMR_WITH_TENSORRT
  out.push_back("tensorrt");
#endif
  return out;
}

namespace {
// The backend to use (the artifact's target unless asked otherwise), refused with the reason when it cannot be.
std::string resolve(const Metadata& meta, const std::string& which_in) {
  const std::string which = which_in.empty() ? meta.target : which_in;
  if (which != meta.target)
    throw BackendError("backend '" + which + "' cannot run " + meta.dir.filename().string() + ", a " + meta.target +
                       " artifact; convert it with '--target " + which + "'.");
  return which;
}

[[noreturn]] void not_built(const std::string& which) {
  std::string built;
  for (const std::string& b : available_backends()) built += (built.empty() ? "" : ", ") + b;
  const std::string off = "this build has no " + which + " backend (built: " + (built.empty() ? "none" : built) +
                          "); reconfigure with -DEDGEHMR_";
  if (which == "openvino") throw BackendError(off + "OPENVINO=ON.");
  if (which == "executorch") throw BackendError(off + "EXECUTORCH=ON.");
  if (which == "tensorrt") throw BackendError(off + "TENSORRT=ON (needs TensorRT's headers, e.g. on a Jetson).");
  throw BackendError("no C++ backend for target '" + which + "' (C++ backends: openvino, executorch, tensorrt).");
}
}  // namespace

std::unique_ptr<Backend> open_backend(const Metadata& meta, const std::string& which_in) {
  const std::string which = resolve(meta, which_in);
  if (meta.multistage())
    throw BackendError(meta.dir.filename().string() + " is a multi-stage artifact (" + meta.model +
                       "); run it with the SAT-HMR pipeline.");
#ifdef EDGEHMR_WITH_OPENVINO
  if (which == "openvino") return make_openvino_backend(meta);
#endif
#ifdef EDGEHMR_WITH_EXECUTORCH
  if (which == "executorch") return make_executorch_backend(meta);
#endif
#ifdef EDGEHMR_WITH_TENSORRT
  if (which == "tensorrt") return make_tensorrt_backend(meta);
#endif
  not_built(which);
}

std::unique_ptr<StageBackend> open_stage_backend(const Metadata& meta, const StagePart& part,
                                                 const std::string& which_in) {
  const std::string which = resolve(meta, which_in);
#ifdef EDGEHMR_WITH_OPENVINO
  if (which == "openvino") return make_openvino_stage(meta, part);
#endif
#ifdef EDGEHMR_WITH_EXECUTORCH
  if (which == "executorch") return make_executorch_stage(meta, part);
#endif
  (void)part;
  if (which == "tensorrt")  // one engine profile per bucket: not written for the C++ runtime yet
    throw BackendError("the C++ TensorRT backend runs single-stage artifacts only; SAT-HMR engines run with "
                       "trtexec --profile=N or the Python runner for now.");
  not_built(which);
}

}  // namespace edgehmr
