"""Core ML target: ``torch2coreml`` = torch.export -> coremltools ``mlprogram`` -> ``model.mlpackage``.

Precisions:
- fp16 (default for Core ML): weights and compute in float16, inputs/outputs float32 so apps feed the same crop.
- fp32: weights and compute in float32 (runs on CPU/GPU; the Neural Engine computes in float16 only).
- int8-weights: per-channel symmetric INT8 weights (``coremltools.optimize.torch`` post-training quantizer,
  the recipe's kept-float scopes skipped), float16 compute. The weights are expanded to float16 at load, so it
  helps download/memory on every device and speed where weight bandwidth limits.
- int8 (W8A8): ``coremltools.optimize.torch``'s LinearQuantizer calibrated on the calibration crops (observers
  only, no training): INT8 weights plus per-tensor symmetric INT8 activations around every linear and conv
  outside the recipe's scopes, as quantize/dequantize ops in the program (iOS 17 / macOS 14). The Neural Engine
  of A17 Pro / M4-class chips runs INT8 x INT8 matmuls; older devices gain only the smaller weights. coremltools'
  own activation calibration (``linear_quantize_activations``) runs the model, i.e. needs macOS; this route
  calibrates in torch and works anywhere.

The torch module that is converted is also the one ``validate`` runs to simulate the numerics on machines
without Core ML (Linux; :mod:`edgehmr.coreml_numerics` builds both); for int8 the artifact keeps the observer
ranges (``w8a8_observers.safetensors``, no weights) so the same quantized graph can be rebuilt. On macOS the real
model runs. The minimum deployment target is the lowest one that has every feature the artifact uses (see
:data:`DEPLOYMENT_TARGETS`); metadata records it.

coremltools converts in its own process (:mod:`edgehmr.converters.coreml_worker`): a crash in its native code
fails the conversion with a message instead of ending the command.

A job with several entries (SAT-HMR's buckets) becomes one multifunction ``.mlpackage`` (a function per entry,
named after it, weights stored once; fp32 or fp16 compute; iOS 18 / macOS 15): :func:`save_multifunction`.

Integer inputs (e.g. gather indices) become int32 inputs: Core ML has no int64 tensors at the model boundary.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgehmr.converters.base import ConvertResult, ExportJob, node_scope
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.shapes import prepare
from edgehmr.coreml_numerics import calibrate_w8a8, compute_precision, coreml_module, scopes_to_skip
from edgehmr.doctor import pip_install
from edgehmr.errors import ConversionError, TargetUnavailableError
from edgehmr.progress import step
from edgehmr.isolated import WorkerError, run_worker
from edgehmr.vendor import vendor_quiet

MODEL_FILE = "model.mlpackage"
# Observer ranges of an int8 (W8A8) conversion: lets validate rebuild the same quantized graph off macOS.
W8A8_STATE_FILE = "w8a8_observers.safetensors"


@dataclass(frozen=True)
class DeploymentTarget:
    ios: str
    macos: str
    why: str

    @property
    def ct(self):
        return getattr(_coremltools().target, self.ios)


# The lowest OS release that runs each feature: artifacts should not demand more than they use.
DEPLOYMENT_TARGETS = {
    "mlprogram": DeploymentTarget("iOS15", "macOS12", "ML program with float16/float32 compute"),
    "int8-weights": DeploymentTarget("iOS16", "macOS13", "per-channel INT8 weights (constexpr_affine_dequantize)"),
    "int8": DeploymentTarget("iOS17", "macOS14", "INT8 activations (quantize/dequantize ops)"),
    "multifunction": DeploymentTarget("iOS18", "macOS15", "several functions sharing weights in one model"),
}


def deployment_target(precision: Precision, multifunction: bool = False) -> DeploymentTarget:
    if multifunction:
        return DEPLOYMENT_TARGETS["multifunction"]
    if precision in (Precision.int8, Precision.int8_weights):
        return DEPLOYMENT_TARGETS[precision.value]
    return DEPLOYMENT_TARGETS["mlprogram"]


def _coremltools():
    try:
        with vendor_quiet():
            import coremltools
    except ImportError:
        raise TargetUnavailableError(f"Target 'coreml' needs coremltools: {pip_install('coreml')}.") from None
    return coremltools


def torch2coreml(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: list[str],
                 output_names: list[str], precision: Precision, name: str, out_path: Path,
                 multifunction: bool = False) -> Path:
    """Convert to an ``mlprogram`` ``.mlpackage`` at ``out_path`` with float32 inputs and outputs."""
    torch2coreml_packages(module, {out_path: example_inputs}, input_names, output_names, precision, name,
                          multifunction)
    return Path(out_path)


def torch2coreml_packages(module: torch.nn.Module, shapes: dict[Path, tuple[torch.Tensor, ...]],
                          input_names: list[str], output_names: list[str], precision: Precision, name: str,
                          multifunction: bool = False) -> None:
    """One ``.mlpackage`` per static shape (output path -> example inputs), all converted in one worker.

    The programs are traced here; coremltools converts them in its own process (:mod:`edgehmr.isolated`), so a
    crash in its native code fails this conversion with a message instead of ending the command. One worker for
    every shape: its start (importing torch and coremltools) is paid once."""
    _coremltools()  # missing: one line now, not a worker's traceback
    step(f"{name}: tracing, then coremltools converts {len(shapes)} program(s) in a worker process")
    target = deployment_target(precision, multifunction)
    torchscript = precision == Precision.int8
    programs = {}
    try:
        with torch.no_grad(), vendor_quiet():
            for out_path, example_inputs in shapes.items():
                # reason: torch 2.13 has no fake kernel for quantize_per_channel, so torch.export cannot trace the
                # reference-quantized graph; TorchScript tracing can, and coremltools maps its Q/DQ ops.
                programs[out_path] = (torch.jit.trace(module, example_inputs) if torchscript
                                      else torch.export.export(module, example_inputs))
    except Exception as e:
        raise ConversionError(f"Tracing {name} for Core ML failed: {str(e).splitlines()[0]}") from e
    first = Path(next(iter(shapes)))
    with tempfile.TemporaryDirectory(prefix=".edgehmr-coreml-", dir=first.parent) as tmp:
        conversions = []
        for index, (out_path, example_inputs) in enumerate(shapes.items()):
            saved = Path(tmp) / f"program{index}"
            with vendor_quiet():
                (torch.jit.save if torchscript else torch.export.save)(programs[out_path], str(saved))
            conversions.append({
                "program": str(saved), "format": "torchscript" if torchscript else "export",
                "compute_precision": "FLOAT32" if compute_precision(precision) == "float32" else "FLOAT16",
                "minimum_deployment_target": target.ios,
                "inputs": [{"name": n, "shape": list(t.shape),
                            "dtype": "float32" if t.is_floating_point() else "int32"}
                           for n, t in zip(input_names, example_inputs)],
                "outputs": list(output_names), "out": str(out_path),
            })
        try:
            run_worker("edgehmr.converters.coreml_worker", {"conversions": conversions}, Path(tmp) / "request.json",
                       f"Core ML conversion of {name}")
        except WorkerError as e:
            program = programs[first]  # every shape is the same module: its ops name the unsupported one
            raise ConversionError(unsupported_op_message(Exception(e.text), program, name) or str(e)) from None


def input_dtype(example: torch.Tensor):
    """float32 for float inputs; int32 for integer ones (indices), the widest integer Core ML takes as input."""
    return np.float32 if example.is_floating_point() else np.int32


_UNSUPPORTED_MARKERS = ("Unsupported fx node ", "PyTorch convert function for op ")


def unsupported_op_message(error: Exception, program, name: str) -> str | None:
    """For coremltools' "unsupported op" errors: which op, which module it came from, and what to do instead."""
    text = str(error)
    marker = next((m for m in _UNSUPPORTED_MARKERS if m in text), None)
    if marker is None:
        return None
    op = text.split(marker, 1)[1].split()[0].strip("'\".,")
    origin = None
    graph = program.graph_module.graph if hasattr(program, "graph_module") else None
    for node in graph.nodes if graph is not None else ():
        target = getattr(node.target, "__name__", str(node.target))
        if node.op == "call_function" and op in target:
            scope = node_scope(node)
            origin = "<top module>" if scope is None else scope
            break
    where = f" (from module '{origin}')" if origin else ""
    return (f"Core ML cannot convert op '{op}'{where} of {name}. Use --target executorch or --target onnx, "
            f"which run it, or change the module to avoid the op.")


def program_summary(path: Path, function: str = "main") -> dict:
    """Ops, tensor dtypes and I/O of a saved ``.mlpackage``, read from its spec (works without macOS)."""
    ct = _coremltools()
    with vendor_quiet():
        spec = ct.utils.load_spec(str(path))  # the whole package's spec, every function, no model load
    fn = spec.mlProgram.functions[function]
    ops = fn.block_specializations[fn.opset].operations
    op_counts = Counter(o.type for o in ops)
    compute = Counter(_dtype_name(out.type.tensorType.dataType) for o in ops if o.type not in ("const", "cast")
                      for out in o.outputs if out.type.WhichOneof("type") == "tensorType")
    fdesc = {f.name: f for f in spec.description.functions} if spec.description.functions else {}
    desc = fdesc.get(function, spec.description)
    return {
        "specification_version": spec.specificationVersion,
        "opset": fn.opset,
        "functions": sorted(spec.mlProgram.functions.keys()),
        "ops": dict(op_counts.most_common()),
        "compute_dtypes": dict(compute.most_common()),
        "inputs": [_feature(f) for f in desc.input],
        "outputs": [_feature(f) for f in desc.output],
    }


_DTYPES = {"FLOAT16": "float16", "FLOAT32": "float32", "INT32": "int32", "BOOL": "bool", "INT8": "int8",
           "UINT8": "uint8", "FLOAT64": "float64", "INT16": "int16", "UINT16": "uint16", "INT64": "int64"}


def _dtype_name(code: int) -> str:
    from coremltools.proto import MIL_pb2

    return _DTYPES.get(MIL_pb2.DataType.Name(code), MIL_pb2.DataType.Name(code).lower())


def _feature(f) -> dict:
    from coremltools.proto import FeatureTypes_pb2

    arr = f.type.multiArrayType
    return {"name": f.name, "shape": list(arr.shape),
            "dtype": FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()}


def save_multifunction(parts: dict[str, Path], out_path: Path, default: str) -> None:
    """Merge single-function ``.mlpackage`` files into one multifunction package (identical weights stored once)."""
    ct = _coremltools()
    desc = ct.utils.MultiFunctionDescriptor()
    for function, path in parts.items():
        desc.add_function(str(path), src_function_name="main", target_function_name=function)
    desc.default_function_name = default
    with vendor_quiet():
        ct.utils.save_multifunction(desc, str(out_path))


def package_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def torch2coreml_multifunction(module: torch.nn.Module, functions: dict[str, tuple[torch.Tensor, ...]],
                               input_names: list[str], output_names: list[str], precision: Precision, name: str,
                               out_path: Path, default: str | None = None) -> None:
    """One ``.mlpackage`` with a function per static shape; weights identical across functions are stored once."""
    with tempfile.TemporaryDirectory(prefix="edgehmr-mf-", dir=out_path.parent) as tmp:
        parts = {function: Path(tmp) / f"{function}.mlpackage" for function in functions}
        torch2coreml_packages(module, {parts[f]: example for f, example in functions.items()}, input_names,
                              output_names, precision, name, multifunction=True)
        save_multifunction(parts, out_path, default or next(iter(functions)))


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    """``model.mlpackage``: one function for a job with one entry, a multifunction package for several (the first
    entry is the default function)."""
    prepare("coreml", job)
    if len(job.entries) > 1:
        return _convert_multifunction(job, out_dir)
    ct = _coremltools()
    state = None
    recipe = job.int8_recipe
    if job.precision == Precision.int8:
        module, state = calibrate_w8a8(job.module, recipe, job.example_inputs, job.calibration[job.default_entry])
    else:
        module = coreml_module(job.module, job.precision, recipe)
    out = torch2coreml(module, job.example_inputs, job.input_names, job.output_names, job.precision,
                       job.model_name, out_dir / MODEL_FILE)
    summary = program_summary(out)
    target = deployment_target(job.precision)
    details = {
        "coremltools": ct.__version__, "format": "mlprogram",
        "compute_precision": compute_precision(job.precision),
        "minimum_deployment_target": {"ios": target.ios, "macos": target.macos, "why": target.why},
        "functions": ["main"], "default_function": "main",
        "program": summary,
    }
    kept = []
    if job.precision in (Precision.int8, Precision.int8_weights):
        kept = [f"linear/conv {n}" for n in scopes_to_skip(job.module, recipe)]
        details["weights"] = "int8 per-channel symmetric (expanded to float16 at load)"
        details["quantized_weights"] = summary["ops"].get("constexpr_affine_dequantize", 0)
    if job.precision == Precision.int8:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / W8A8_STATE_FILE))
        details["activations"] = "int8 symmetric per-tensor, calibrated (quantize/dequantize around compute ops)"
        details["quantize_ops"] = summary["ops"].get("quantize", 0)
        details["w8a8_state"] = W8A8_STATE_FILE
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def _convert_multifunction(job: ExportJob, out_dir: Path) -> ConvertResult:
    ct = _coremltools()
    out = out_dir / MODEL_FILE
    torch2coreml_multifunction(job.module, dict(job.entries), job.input_names, job.output_names, job.precision,
                               job.model_name, out, default=job.default_entry)
    target = deployment_target(job.precision, multifunction=True)
    details = {
        "coremltools": ct.__version__, "format": "mlprogram (multifunction)",
        "compute_precision": compute_precision(job.precision),
        "minimum_deployment_target": {"ios": target.ios, "macos": target.macos, "why": target.why},
        "functions": list(job.entries), "default_function": job.default_entry,
        "program": program_summary(out, job.default_entry),
    }
    return ConvertResult(MODEL_FILE, details)
