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

A job with several entries (SAT-HMR's buckets) becomes one ONNX whose axes that differ between the entries are
dynamic, typed or Q/DQ-quantized like the static ones (INT8 calibrated on every entry), and an engine with one
optimization profile per entry (min = opt = max = the entry's shapes; profile index = the entry's position), so
each entry runs kernels tuned for its static shape and the weights are stored once.

Every ONNX passes :func:`check_tensorrt_onnx` before the artifact is written. Off the device, ``validate`` runs
the same ONNX with ONNX Runtime and reports it as simulated; on the device ``edgehmr build-engine`` (or
``build_engine.sh`` with trtexec) makes ``model.engine``.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.fp16_range import FP16_MAX, activation_peaks
from edgehmr.converters import onnx_quant
from edgehmr.converters.onnx import OPSET, onnx2fp16, onnx2int8_qdq, remove_onnx, torch2onnx_entries
from edgehmr.converters.shapes import dynamic_axes, dynamic_axes_json, entry_shapes, prepare
from edgehmr.converters.tensorrt_engine import (ENGINE_FILE, EngineOptions, Profile, can_build_here,
                                                trtexec_command)
from edgehmr.converters.tensorrt_onnx import check_tensorrt_onnx, qdq_summary
from edgehmr.converters.tensorrt_worker import build_engine_isolated
from edgehmr.artifact import METADATA, parts, read_metadata, write_json
from edgehmr.errors import ConversionError, InputError

MODEL_FILE = "model.onnx"
BUILD_SCRIPT = "build_engine.sh"


def write_build_script(out_dir, precision: Precision, profiles: list[Profile] | None = None) -> str:
    command = trtexec_command(precision, profiles=profiles)
    python_way = "edgehmr build-engine <the artifact folder> (builds every part)"
    (out_dir / BUILD_SCRIPT).write_text(
        "#!/bin/sh\n# Build the TensorRT engine on the device (TensorRT 10.x or 11.x), from this folder.\n"
        f"# With Python and edgehmr there: {python_way}\n"
        f'cd "$(dirname "$0")" && {command}\n')
    (out_dir / BUILD_SCRIPT).chmod(0o755)
    return command


def checked_onnx(path, precision: Precision, what: str, details: dict, profiles: list | None = None) -> None:
    """The structural TensorRT check of a written ONNX (one line naming the first problem), and its Q/DQ summary
    into ``details`` for INT8."""
    model = onnx.load(str(path))
    problems = check_tensorrt_onnx(model, profiles)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConversionError(f"The {precision.value} {what} is not TensorRT-ready: {problems[0]}{more}.")
    if precision == Precision.int8:
        details["qdq"] = qdq_summary(model)


def fp16_range_or_fail(job: ExportJob) -> dict:
    """Measured float16 headroom (largest activation, largest attention logit) over every entry's example;
    refuses a model that overflows."""
    peaks = activation_peaks(job.module, list(job.entries.values())) | {"measured_on": "every entry's example"}
    if peaks["max_abs"] > FP16_MAX:
        raise ConversionError(f"{job.model_name} produces |{peaks['max_abs']:.0f}| in '{peaks['op']}', beyond "
                              f"float16's {FP16_MAX:.0f}: use --precision int8 or fp32 for TensorRT.")
    return peaks


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    """A TensorRT-ready ONNX for every entry (dynamic dims where entries differ), and the engine (one profile per
    entry; a static engine for one entry) where TensorRT and a GPU are present."""
    prepare("tensorrt", job)
    out = out_dir / MODEL_FILE
    fp32 = out_dir / "model.fp32.tmp.onnx"
    torch2onnx_entries(job, out if job.precision == Precision.fp32 else fp32)
    kept: list[str] = []
    dynamic = dynamic_axes(job)
    # Profiles name the dynamic inputs only: static ones need (and trtexec takes) no shapes. Without dynamic axes
    # (a single entry) the engine is static and needs none.
    profiles = [{"entry": entry, "shapes": {n: s for n, s in shapes.items() if n in dynamic}}
                for entry, shapes in entry_shapes(job).items()] if dynamic else []
    details: dict = {"opset": OPSET, "dynamic_axes": dynamic_axes_json(job), "entries": list(job.entries),
                     "profiles": profiles}
    if job.precision == Precision.fp16:
        details["fp16_range"] = fp16_range_or_fail(job)
        onnx2fp16(fp32, out)
        remove_onnx(fp32)
    elif job.precision == Precision.int8:
        quant = onnx2int8_qdq(fp32, out, job, onnx_quant.TENSORRT_LAYOUT)
        kept = quant["kept_float_nodes"]
        details |= {k: quant[k] for k in ("scheme", "recipe", "calibration_samples", "calibration_statistics",
                                          "quantized_compute_ops")}
        remove_onnx(fp32)
    elif job.precision != Precision.fp32:  # fp32 was exported in place; prepare() refused every other precision
        raise ConversionError(f"TensorRT target has no {job.precision.value} path.")
    checked_onnx(out, job.precision, f"ONNX of {job.model_name}", details, [p["shapes"] for p in profiles])
    shape_profiles = engine_profiles(details)
    details |= {
        "tensorrt_check": "passed (structural: opset, operators, Q/DQ form, static shapes or dynamic dims covered "
                          "by the profiles; no TensorRT needed)",
        "build": "strongly typed" if job.precision != Precision.fp32 else "fp32, TF32 off",
        "trtexec": write_build_script(out_dir, job.precision, shape_profiles),
        "engine": None,
    }
    if can_build_here():
        details["engine"] = build_engine_isolated(out, out_dir / ENGINE_FILE, job.precision, EngineOptions(),
                                                  shape_profiles)
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def engine_profiles(details: dict) -> list[Profile]:
    """The optimization profiles recorded at conversion (entry order), as build_engine / trtexec take them; none
    for a static part."""
    return [p["shapes"] for p in details.get("profiles", [])]


def build_artifact_engine(artifact_dir, options: EngineOptions = EngineOptions()) -> dict[str, tuple[Path, dict]]:
    """``edgehmr build-engine``: build ``model.engine`` for every part of a tensorrt artifact (a crop model's one,
    SAT-HMR's two; a part with several entries gets one optimization profile per entry) and record them in its
    metadata, which is rewritten once every engine is built. Returns part -> (engine path, engine facts)."""
    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    every = parts(meta)
    if not all("trtexec" in part["details"] for part in every.values()):
        raise InputError(f"{artifact_dir} is a '{meta['target']}' artifact; build-engine takes artifacts converted "
                         f"with --target tensorrt.")
    infos = {name: build_part_engine(artifact_dir, part, options) for name, part in every.items()}
    write_json(artifact_dir / METADATA, meta)
    return infos


def build_part_engine(artifact_dir: Path, part: dict, options: EngineOptions = EngineOptions()) -> tuple[Path, dict]:
    """Build one part's engine beside its ONNX; records it in ``part["details"]`` (the metadata's own dict)."""
    precision = Precision(part["precision"])
    profiles = engine_profiles(part["details"])
    onnx_path = artifact_dir / part["file"]
    engine_path = onnx_path.with_name(ENGINE_FILE)
    info = build_engine_isolated(onnx_path, engine_path, precision, options, profiles)
    part["details"]["engine"] = info
    part["details"]["trtexec"] = trtexec_command(precision, options, profiles=profiles)
    return engine_path, info
