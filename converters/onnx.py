"""ONNX target: ``torch2onnx`` (torch.export-based exporter, opset 18), ``onnx2fp16`` and the INT8 schemes.

fp16 converts weights and compute to float16 with ONNX Runtime's converter and keeps the graph inputs/outputs
float32 (``keep_io_types``), so apps feed the same float32 crop for every precision. INT8 lives in
:mod:`edgehmr.converters.onnx_quant`.

A job with several entries (SAT-HMR's buckets) becomes one graph whose axes that differ between the entries are
dynamic, so ONNX Runtime runs every entry's shape with one copy of the weights; INT8 is calibrated on every
entry's samples (one set of scales for the shared weights).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from edgehmr.converters import onnx_quant
from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.shapes import (calibration_counts, calibration_feeds, dynamic_axes_json, export_job,
                                      prepare, torch_dynamic_shapes)
from edgehmr.errors import ConversionError
from edgehmr.progress import step

OPSET = 18
MODEL_FILE = "model.onnx"
# Weights above this go to an external-data file beside the model (``model.onnx.data``, hashed like every artifact
# file). onnx_ir writes it straight from the tensors, whereas one protobuf file is built in memory first: a copy of
# every weight in the message and another in its serialized bytes. SAT-HMR's stage 2 (0.83 GB of weights) peaked at
# 3.7 GB that way. Protobuf also caps a file at 2 GB (ViT-H fp32).
EXTERNAL_DATA_BYTES = 400_000_000
# Ops kept in float32 inside fp16 graphs. Measured on hmr2-vit-s/b and vitpose-s (16 crops): keeping the
# 6D->rotation normalisation (ReduceL2, Reciprocal) in float32 changed no output by a measurable amount, so
# nothing is kept by default; the list exists for models where a layer overflows.
FP16_KEEP_FP32_OPS: list[str] = []


def torch2onnx(job: ExportJob, out_path: Path, dynamic_shapes: tuple | None = None) -> Path:
    """Export ``job.module`` to ``out_path``; returns the path written. Shapes are static (those of
    ``job.example_inputs``) unless ``dynamic_shapes`` (torch.export's form) names dynamic axes."""
    big = sum(p.numel() * p.element_size() for p in job.module.parameters()) > EXTERNAL_DATA_BYTES
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                job.module, job.example_inputs, dynamo=True, opset_version=OPSET, optimize=False,
                input_names=job.input_names, output_names=job.output_names, verbose=False,
                dynamic_shapes=dynamic_shapes,
            )
            _optimize(program)
            program.save(str(out_path), external_data=big)
    except Exception as e:  # the exporter raises many types; all mean the same to the user
        raise ConversionError(f"ONNX export of {job.model_name} failed: {str(e).splitlines()[0]}") from e
    onnx.checker.check_model(str(out_path))
    return out_path


# onnxscript's SlicesSplit rewrite (it merges sibling Slices into one Split) tries every pair of Slice nodes, so
# its cost grows with their square: 156-187 s of the graph optimisation for DeformableHMR's ~700 Slices, and 2.3 of
# the 3.6 s on hmr2-vit-s (72 Slices), where it rewrites nothing (the graph is node for node the same without it).
# The exporter's default optimisation runs without that one rule.
SKIPPED_REWRITE_RULES = ("SlicesSplit",)


def _optimize(program) -> None:
    """The exporter's default graph optimisation (``optimize=True``) minus :data:`SKIPPED_REWRITE_RULES`."""
    import onnxscript.rewriter as rewriter

    rules = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)
    if rules is None:  # another onnxscript layout: its defaults, whole
        program.optimize()
        return
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in rules if getattr(r, "name", None) not in SKIPPED_REWRITE_RULES)
    try:
        program.optimize()
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


def onnx2fp16(src: Path, out_path: Path) -> Path:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    with _quiet_exporter():
        # The default block list holds ops without float16 kernels in ONNX Runtime; ours adds precision choices.
        half = convert_float_to_float16(model, keep_io_types=True,
                                        op_block_list=DEFAULT_OP_BLOCK_LIST + FP16_KEEP_FP32_OPS)
    onnx.save(half, str(out_path))
    return out_path


def torch2onnx_entries(job: ExportJob, out_path: Path) -> Path:
    """Export with the axes that differ between ``job.entries`` dynamic (shared axes share one symbol); a job with
    one entry exports static."""
    return torch2onnx(export_job(job), out_path, dynamic_shapes=torch_dynamic_shapes(job))


PRECISION_STEP = {Precision.fp16: "casting to FP16",
                  Precision.int8: "INT8 calibration and Q/DQ insertion (ONNX Runtime)",
                  Precision.int8_weights: "quantizing weights to INT8"}


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    """One ``model.onnx`` for every entry: dynamic dims where the entries differ, weights stored once."""
    prepare("onnx", job)
    out = out_dir / MODEL_FILE
    details: dict = {"opset": OPSET, "dynamic_axes": dynamic_axes_json(job), "entries": list(job.entries)}
    step(f"{job.model_name}: exporting to ONNX (torch.export, opset {OPSET})")
    if job.precision == Precision.fp32:
        torch2onnx_entries(job, out)
        return ConvertResult(MODEL_FILE, details)
    fp32 = out_dir / "model.fp32.tmp.onnx"
    torch2onnx_entries(job, fp32)
    step(f"{job.model_name}: {PRECISION_STEP[job.precision]}")
    if job.precision == Precision.fp16:
        onnx2fp16(fp32, out)
        details["io_dtype"] = "float32"
        kept = list(FP16_KEEP_FP32_OPS)
    elif job.precision == Precision.int8:
        quant = onnx2int8_qdq(fp32, out, job)
        details |= quant
        kept = quant["kept_float_nodes"]
    elif job.precision == Precision.int8_weights:
        quant = onnx_quant.onnx2int8_weights(fp32, out, job.int8_recipe)
        details |= quant
        kept = quant["kept_float_nodes"]
    else:  # prepare() refused every other precision
        raise ConversionError(f"ONNX target has no {job.precision.value} path.")
    remove_onnx(fp32)
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def remove_onnx(path: Path) -> None:
    """Delete an ONNX file and its external-data file (``<name>.data``), if it has one."""
    for file in (path, path.with_name(path.name + ".data")):
        file.unlink(missing_ok=True)


class _FeedsReader:
    """ONNX Runtime's CalibrationDataReader protocol over ready feeds (every entry's samples, any shapes)."""

    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def onnx2int8_qdq(src: Path, out_path: Path, job: ExportJob,
                  layout: onnx_quant.QdqLayout = onnx_quant.ONNXRUNTIME_LAYOUT) -> dict:
    """W8A8 static QDQ (per-channel weights, per-tensor activations, MinMax; MatMul/Gemm/Conv only, so LayerNorm,
    Softmax and residual adds stay float) in the runtime's ``layout``, calibrated on the samples of every entry
    (MinMax ranges reduce each sample to a scalar, so the entries' shapes may differ)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    kept = onnx_quant.nodes_kept_float(onnx.load(str(src)), job.int8_recipe, layout.float_activation_matmuls)
    activations = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[layout.activations]
    feeds = calibration_feeds(job)
    cache = _statistics_file(src, feeds, layout, job.statistics_dir)
    reused = cache is not None and cache.is_file()
    try:
        with onnx_quant._root_logger_quiet():
            quantize_static(
                str(src), str(out_path), _FeedsReader(feeds), calibration_cache_path=cache,
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=activations,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                op_types_to_quantize=onnx_quant.QUANTIZED_OP_TYPES, nodes_to_exclude=kept,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": layout.activation_symmetric}
                | layout.quantizer_options,
            )
    except Exception as e:
        raise ConversionError(f"INT8 quantization of {job.model_name} failed: {str(e).splitlines()[0]}") from e
    return {"scheme": layout.scheme, "recipe": job.recipe_json(), "kept_float_nodes": kept,
            "calibration_samples": calibration_counts(job),
            "calibration_statistics": "reused" if reused else "computed"} | onnx_quant.count_quantized(
        onnx.load(str(out_path)))


def _statistics_file(src: Path, feeds: list[dict], layout: onnx_quant.QdqLayout, folder: Path | None) -> Path | None:
    """ONNX Runtime's calibration cache for this FP32 graph, these samples and this layout, in ``folder``.

    reason: ONNX Runtime calibrates every tensor of the quantized op types whatever ``nodes_to_exclude`` holds, so
    the ranges of one conversion serve any other recipe over the same graph and samples; the file is named by their
    hash, so a graph or samples that differ (a new export, other crops) calibrate afresh."""
    if folder is None:
        return None
    digest = hashlib.sha256(repr((layout, onnx_quant.QUANTIZED_OP_TYPES, "MinMax")).encode())
    for path in (src, src.with_name(src.name + ".data")):
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    digest.update(block)
    for feed in feeds:
        for name in sorted(feed):
            value = np.ascontiguousarray(feed[name])
            digest.update(f"{name}:{value.dtype}:{value.shape}".encode())
            digest.update(value.data)
    return folder / f"onnxruntime-minmax-{digest.hexdigest()[:20]}.json"


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress and warnings (e.g. about torchvision ops) that mean nothing to users."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)
