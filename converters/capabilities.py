"""The capability table: the only place target facts live. The CLI, ``edgehmr targets``, docs and tests read it."""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from enum import Enum

from edgehmr.errors import SpecError, TargetUnavailableError


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"  # weights and activations (static PTQ; dynamic activations on ExecuTorch XNNPACK)
    int8_weights = "int8-weights"  # weight-only


@dataclass(frozen=True)
class TargetCaps:
    id: str
    runtime: str  # what runs the artifact
    suffix: str  # model file suffix inside the artifact folder
    precisions: tuple[Precision, ...]
    calibrated: tuple[Precision, ...]  # precisions that need calibration data
    buckets: str  # how SAT-HMR's static-shape buckets are packaged (converters.shapes)
    multishape: tuple[Precision, ...]  # precisions with a multi-shape (bucketed) artifact; () = none
    host: str  # where the artifact runs
    extra: str  # pip extra that installs the runtime
    converter: str  # module in edgehmr.converters with convert()
    runner: str  # module in edgehmr.targets with open_runner()
    requires: tuple[str, ...] = ()  # import names the converter needs beyond the core install
    # How DeformableHMR's grid_sample and JBU ops (reflect/edge pads, shifted slices, fixed convs) run here,
    # measured on deformable-hmr-vit-s (tests/test_deformable_hmr.py).
    deformable_ops: str = ""
    # ``edgehmr debug drift``: (method line, module with the probe's layer_drift()); None: no per-layer probe here.
    drift: tuple[str, str] | None = None


TARGETS: dict[str, TargetCaps] = {
    caps.id: caps
    for caps in (
        TargetCaps(
            id="onnx", runtime="ONNX Runtime (CPU)", suffix=".onnx",
            precisions=(Precision.fp32, Precision.fp16, Precision.int8, Precision.int8_weights),
            calibrated=(Precision.int8,), buckets="one graph, dynamic token axes",
            multishape=(Precision.fp32, Precision.fp16, Precision.int8),
            host="any (x86, ARM; CPU execution provider)", extra="edgehmr (core)",
            converter="edgehmr.converters.onnx", runner="edgehmr.targets.onnxruntime",
            deformable_ops="GridSample (opset 16+), Pad reflect/edge: fp32, fp16, int8 validated",
            drift=("ONNX Runtime, every shared intermediate tensor vs the FP32 export",
                   "edgehmr.targets.onnxruntime_drift"),
        ),
        TargetCaps(
            id="openvino", runtime="OpenVINO (CPU plugin)", suffix=".xml",
            precisions=(Precision.fp32, Precision.fp16, Precision.int8, Precision.int8_weights),
            calibrated=(Precision.int8,), buckets="one IR, reshaped per bucket",
            multishape=(Precision.fp32, Precision.fp16, Precision.int8),
            host="x86 / ARM CPU (Intel GPU/NPU devices untested)", extra="edgehmr[openvino]",
            converter="edgehmr.converters.openvino", runner="edgehmr.targets.openvino",
            deformable_ops="GridSample-9, Pad reflect/edge: fp32, fp16, int8 validated",
            requires=("openvino", "nncf"),
            drift=("OpenVINO CPU runtime, every shared op output vs the FP32 IR", "edgehmr.targets.openvino_drift"),
        ),
        TargetCaps(
            id="tensorrt", runtime="TensorRT (NVIDIA GPU / Jetson)", suffix=".onnx",
            precisions=(Precision.fp32, Precision.fp16, Precision.int8), calibrated=(Precision.int8,),
            buckets="one engine, a profile per bucket", host="Jetson Orin (TensorRT 10.x, JetPack 6), NVIDIA GPUs (TensorRT 10.x/11.x)",
            multishape=(Precision.fp32, Precision.fp16, Precision.int8),
            extra="edgehmr[tensorrt] on the device; the ONNX is built anywhere",
            converter="edgehmr.converters.tensorrt", runner="edgehmr.targets.tensorrt",
            deformable_ops="GridSample from TensorRT 8.5 (not in JetPack 4.6's 8.2: --sampler gather); ONNX checked with "
                           "ONNX Runtime, engine untested here",
            drift=("ONNX Runtime on the Q/DQ ONNX the engine is built from, every shared intermediate tensor vs the "
                   "FP32 export", "edgehmr.targets.onnxruntime_drift"),
        ),
        TargetCaps(
            id="executorch", runtime="ExecuTorch (XNNPACK)", suffix=".pte",
            precisions=(Precision.fp32, Precision.int8), calibrated=(),
            buckets="one .pte: fp32 one method with dynamic token axes, int8 a method per bucket",
            multishape=(Precision.fp32, Precision.int8),
            host="Android / iOS / Linux (XNNPACK: ARM and x86 CPUs)", extra="edgehmr[executorch]",
            converter="edgehmr.converters.executorch", runner="edgehmr.targets.executorch",
            deformable_ops="portable grid_sampler_2d (ExecuTorch 1.5; older runtimes: --sampler gather), reflect pad as "
                           "portable index ops: fp32 validated; int8 refused (XNNPACK partition cycle)",
            requires=("executorch",),
            drift=("ExecuTorch runtime (XNNPACK)", "edgehmr.targets.executorch_drift"),
        ),
        TargetCaps(
            id="executorch-coreml", runtime="ExecuTorch (Core ML delegate)", suffix=".pte",
            precisions=(Precision.fp16, Precision.fp32), calibrated=(), buckets="none (use coreml)",
            multishape=(),
            host="iOS / macOS only (built anywhere)", extra="edgehmr[executorch,coreml]",
            converter="edgehmr.converters.executorch_coreml", runner="edgehmr.targets.executorch",
            deformable_ops="not measured",
            requires=("executorch", "coremltools"),
        ),
        TargetCaps(
            id="coreml", runtime="Core ML", suffix=".mlpackage",
            precisions=(Precision.fp16, Precision.fp32, Precision.int8, Precision.int8_weights),
            calibrated=(Precision.int8,), buckets="multifunction .mlpackage",
            multishape=(Precision.fp32, Precision.fp16),
            host="iOS / macOS (runs on macOS only; simulated in torch elsewhere)", extra="edgehmr[coreml]",
            converter="edgehmr.converters.coreml", runner="edgehmr.targets.coreml",
            deformable_ops="grid_sample -> resample, pads -> pad reflect/replicate: fp16 program checked, numerics "
                           "simulated off macOS",
            requires=("coremltools",),
        ),
    )
}
DEFAULT_TARGET = "onnx"


def get_target(target_id: str) -> TargetCaps:
    if target_id not in TARGETS:
        close = difflib.get_close_matches(target_id, list(TARGETS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"Unknown target '{target_id}'.{hint} Run 'edgehmr targets' for the list.")
    return TARGETS[target_id]


def quiet_import(module: str):
    """Import a vendor package without its import-time log lines (coremltools and torchao warn about versions
    and about native pieces that exist only on other platforms; none of it is actionable for users)."""
    from edgehmr.vendor import vendor_quiet

    with vendor_quiet():
        return importlib.import_module(module)


def check_available(caps: TargetCaps) -> None:
    """Fail before any work when the target's converter libraries are not installed."""
    from edgehmr.doctor import pip_install

    for module in caps.requires:
        try:
            quiet_import(module)
        except ImportError:
            extra = re.search(r"\[([^\]]+)\]", caps.extra)
            raise TargetUnavailableError(f"Target '{caps.id}' needs {module}, which is not installed: "
                                         f"{pip_install(extra[1] if extra else None)}.") from None


def parse_precision(value: str, caps: TargetCaps) -> Precision:
    try:
        precision = Precision(value)
    except ValueError:
        names = ", ".join(p.value for p in Precision)
        raise SpecError(f"Unknown precision '{value}'; choose one of {names}.") from None
    if precision not in caps.precisions:
        have = ", ".join(p.value for p in caps.precisions)
        raise SpecError(f"Target '{caps.id}' does not support {precision.value}; it supports {have}.")
    return precision
