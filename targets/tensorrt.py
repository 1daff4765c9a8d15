"""TensorRT runners.

With ``model.engine`` present and TensorRT importable, the engine runs on the GPU through Polygraphy's runner
(NVIDIA's maintained wrapper: it owns the CUDA buffers and streams). Without them, the artifact's ONNX runs on
ONNX Runtime (CPU) and the report says so: for int8 that is "simulated INT8", the same Q/DQ arithmetic TensorRT
executes, with different kernels and accumulation order.

A part with several entries: the engine holds one optimization profile per entry; each entry runs on its own execution
context bound to its profile (Polygraphy's ``optimization_profile``), so switching entries costs nothing. Without
an engine or TensorRT, the dynamic ONNX runs on ONNX Runtime and ``execution`` says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehmr.artifact import inside
from edgehmr.doctor import pip_install
from edgehmr.errors import InputError, TargetUnavailableError
from edgehmr.native_profiles import NativeTiming, ranked
from edgehmr.targets.base import RunOptions, Runner
from edgehmr.targets.onnxruntime import OnnxRuntimeRunner
from edgehmr.vendor import import_tensorrt


class TensorRTRunner(Runner):
    """The engine deserialized once; one execution context per entry, each bound to that entry's profile (a
    static engine has only profile 0). ``execution`` stays "runtime": the TensorRT engine itself runs it."""

    def __init__(self, engine_path: Path, part: dict):
        super().__init__(part)
        details = part["details"]
        trt = _check_built_with(engine_path, details["engine"].get("tensorrt"))
        EngineFromBytes, TrtRunner = _polygraphy()
        profile_of = {p["entry"]: index for index, p in enumerate(details.get("profiles", []))}
        self._runners = {}
        try:
            engine = EngineFromBytes(engine_path.read_bytes())()
            for entry in self.entries:
                runner = TrtRunner(engine, optimization_profile=profile_of.get(entry, 0))
                runner.activate()
                self._runners[entry] = runner
        except Exception as e:
            self._deactivate()
            raise InputError(f"TensorRT {trt.__version__} cannot load {engine_path}: {str(e).splitlines()[0]}. "
                             f"Rebuild it on this device with 'edgehmr build-engine'.") from e

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._runners[entry].infer(feeds)

    def _deactivate(self):
        for runner in getattr(self, "_runners", {}).values():
            if runner.is_active:
                runner.deactivate()

    def __del__(self):
        self._deactivate()


def _check_built_with(engine_path: Path, built_with: str | None):
    trt = import_tensorrt()
    if built_with and built_with != trt.__version__:
        raise InputError(f"{engine_path} was built by TensorRT {built_with}; this is TensorRT {trt.__version__}. "
                         f"Engines do not move between versions: rebuild with 'edgehmr build-engine'.")
    return trt


def _polygraphy():
    try:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError:
        raise TargetUnavailableError("Running TensorRT engines needs Polygraphy: "
                                     f"{pip_install('tensorrt')}.") from None
    return EngineFromBytes, TrtRunner


def simulated_execution(precision: str, why: str) -> str:
    kind = {"int8": "simulated INT8", "fp16": "simulated FP16"}.get(precision, "simulated FP32")
    return f"{kind}: the TensorRT-ready ONNX on ONNX Runtime (CPU); {why}"


def open_runner(artifact_dir: Path, part: dict, options: RunOptions = RunOptions()) -> Runner:
    engine = (part["details"].get("engine") or {}).get("file")
    onnx_path = artifact_dir / part["file"]
    if engine:
        engine = inside(artifact_dir, (Path(part["file"]).parent / str(engine)).as_posix(), "details.engine.file")
    if engine and engine.is_file():
        try:
            import_tensorrt()
        except TargetUnavailableError:
            why = "TensorRT is not installed here"
        else:
            return TensorRTRunner(engine, part)
    else:
        why = "no engine built yet (edgehmr build-engine or build_engine.sh on the device)"
    return OnnxRuntimeRunner(onnx_path, part, options.threads, simulated_execution(part["precision"], why))


# Native timings: trtexec --exportTimes / --exportProfile (see edgehmr.native_profiles)

def trtexec_times(data: list[dict], path: Path) -> NativeTiming:
    rows = [d for d in data if "latencyMs" in d or "computeMs" in d]
    # latencyMs = H2D + compute + D2H of one inference (what an app waits for); computeMs = GPU time alone.
    latency = [float(d["latencyMs"]) if "latencyMs" in d else float(d["computeMs"]) for d in rows]
    timing = NativeTiming("trtexec --exportTimes", "tensorrt", samples_ms=latency)
    compute = [float(d["computeMs"]) for d in rows if "computeMs" in d]
    if compute and "latencyMs" in rows[0]:
        compute.sort()
        timing.notes.append(f"GPU compute alone: median {compute[len(compute) // 2]:.3f} ms (latency adds the "
                            f"host-device copies)")
    return timing


def trtexec_profile(data: list[dict], path: Path) -> NativeTiming:
    layers = [{"name": d["name"], "type": "", "ms": float(d["averageMs"])} for d in data[1:] if "averageMs" in d]
    timing = NativeTiming("trtexec --exportProfile", "tensorrt", layers=ranked(layers))
    timing.notes.append(f"per-layer averages over {data[0]['count']} profiled runs (per-layer profiling adds "
                        f"synchronisation, so their sum exceeds the end-to-end latency)")
    return timing
