"""TensorRT target: a TensorRT-ready ONNX per precision, and the engine wherever TensorRT and a GPU are present.

- fp32: the static-shape ONNX (opset 18; TensorRT 10.x parses opsets 9-20), built with TF32 off.
- fp16: float16 weights and compute with float32 inputs/outputs (ONNX Runtime's converter, as the ``onnx``
  target), built strongly typed. Explicit float16 types rather than the FP16 builder flag: TensorRT 11 removed
  the flag, and the graph that is validated is then the graph that is built. The float16 headroom is measured
  (largest activation and attention logit, ``target_details.fp16_range``): hmr2-vit-s with seeded weights peaks
  at ~258 (headroom ~250x), so no float32 islands are needed; a model that overflows is refused.
- int8: explicit quantization, i.e. Q/DQ nodes in the ONNX (TensorRT 10 deprecated and 11 removed implicit
  calibration): ONNX Runtime's static QDQ quantizer with TensorRT's conventions (symmetric INT8 with zero
  points 0, per-channel weights kept float behind Q->DQ pairs, per-tensor activations, float biases, MatMul /
  Gemm / Conv only, the recipe's exclusions), built strongly typed.

Every ONNX passes :func:`check_tensorrt_onnx` before the artifact is written. Off the device, ``validate`` runs
the same ONNX with ONNX Runtime and reports it as simulated; on the device ``edgehmr build-engine`` (or
``build_engine.sh`` with trtexec) makes ``model.engine``.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgehmr.converters import onnx_quant
from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.fp16_range import FP16_MAX, activation_peaks
from edgehmr.converters.onnx import OPSET, onnx2fp16, torch2onnx
from edgehmr.converters.tensorrt_engine import (ENGINE_FILE, EngineOptions, build_engine, can_build_here,
                                                trtexec_command)
from edgehmr.converters.tensorrt_onnx import check_tensorrt_onnx, qdq_summary
from edgehmr.artifact import METADATA, read_metadata, write_json
from edgehmr.errors import ConversionError, InputError

MODEL_FILE = "model.onnx"
BUILD_SCRIPT = "build_engine.sh"


def write_build_script(out_dir, precision: Precision) -> str:
    command = trtexec_command(precision)
    (out_dir / BUILD_SCRIPT).write_text(
        "#!/bin/sh\n# Build the TensorRT engine on the device (TensorRT 10.x or 11.x), from this folder.\n"
        "# With Python and edgehmr there: edgehmr build-engine <this folder>\n"
        f'cd "$(dirname "$0")" && {command}\n')
    (out_dir / BUILD_SCRIPT).chmod(0o755)
    return command


def fp16_range_or_fail(job: ExportJob) -> dict:
    """Measured float16 headroom (largest activation, largest attention logit); refuses a model that overflows."""
    peaks = activation_peaks(job.module, [job.example_inputs]) | {"measured_on": "the export example crop"}
    if peaks["max_abs"] > FP16_MAX:
        raise ConversionError(f"{job.model_name} produces |{peaks['max_abs']:.0f}| in '{peaks['op']}', beyond "
                              f"float16's {FP16_MAX:.0f}: use --precision int8 or fp32 for TensorRT.")
    return peaks


def convert(job: ExportJob, out_dir) -> ConvertResult:
    if job.precision not in (Precision.fp32, Precision.fp16, Precision.int8):
        raise ConversionError(f"TensorRT target has no {job.precision.value} path.")
    out = out_dir / MODEL_FILE
    fp32 = out_dir / "model.fp32.tmp.onnx"
    torch2onnx(job, fp32)
    details: dict = {"opset": OPSET}
    kept: list[str] = []
    if job.precision == Precision.fp32:
        fp32.rename(out)
    else:
        if job.precision == Precision.fp16:
            details["fp16_range"] = fp16_range_or_fail(job)
            onnx2fp16(fp32, out)
        else:
            quant = onnx_quant.onnx2int8_qdq(fp32, out, job.calibration, job.recipe, job.input_names[0], job.batch,
                                             tensorrt=True)
            kept = quant["kept_float_nodes"]
            details |= {"scheme": quant["scheme"], "quantized_compute_ops": quant["quantized_compute_ops"]}
        fp32.unlink()
    model = onnx.load(str(out))
    problems = check_tensorrt_onnx(model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConversionError(f"The {job.precision.value} ONNX of {job.model_name} is not TensorRT-ready: "
                              f"{problems[0]}{more}.")
    if job.precision == Precision.int8:
        details["qdq"] = qdq_summary(model)
    details |= {
        "tensorrt_check": "passed (structural: opset, operators, Q/DQ form, static shapes; no TensorRT needed)",
        "build": "strongly typed" if job.precision != Precision.fp32 else "fp32, TF32 off",
        "trtexec": write_build_script(out_dir, job.precision),
        "engine": None,
    }
    if can_build_here():
        details["engine"] = build_engine(out, out_dir / ENGINE_FILE, job.precision, EngineOptions())
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def build_artifact_engine(artifact_dir, options: EngineOptions = EngineOptions()) -> dict:
    """``edgehmr build-engine``: build ``model.engine`` for a tensorrt artifact and record it in its metadata."""
    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    if meta["target"] != "tensorrt":
        raise InputError(f"{artifact_dir} is a '{meta['target']}' artifact; build-engine takes artifacts converted "
                         f"with --target tensorrt.")
    precision = Precision(meta["precision"])
    info = build_engine(artifact_dir / meta["files"]["model"], artifact_dir / ENGINE_FILE, precision, options)
    meta["target_details"]["engine"] = info
    meta["target_details"]["trtexec"] = trtexec_command(precision, options)
    write_json(artifact_dir / METADATA, meta)
    return info
