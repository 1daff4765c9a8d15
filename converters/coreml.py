"""Core ML target: ``torch2coreml`` = torch.export -> coremltools ``mlprogram`` -> ``model.mlpackage``.

Precisions:
- fp16 (default for Core ML): weights and compute in float16, inputs/outputs float32 so apps feed the same crop.
- fp32: weights and compute in float32 (runs on CPU/GPU; the Neural Engine computes in float16 only).
- int8-weights: per-channel symmetric INT8 weights (``coremltools.optimize.torch`` post-training quantizer,
  the recipe's kept-float scopes skipped), float16 compute. Halves the fp16 model; the weights are expanded to
  float16 at load, so it helps download/memory on every device and speed where weight bandwidth limits
  (large linears on the GPU/Neural Engine of A14+/M1+).

The torch module that is converted is also the one ``validate`` runs (in float16) to simulate the numerics on
machines without Core ML (Linux); on macOS the real model runs. The minimum deployment target is the lowest one
that has every feature the artifact uses (see :data:`DEPLOYMENT_TARGETS`), and is recorded in the metadata.

Several static shapes can share one ``.mlpackage`` (multifunction, weights stored once, iOS 18 / macOS 15):
:func:`save_multifunction`; the SAT-HMR bucketing uses it.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.base import ConvertResult, ExportJob, vendor_quiet
from edgehmr.converters.capabilities import Precision
from edgehmr.errors import ConversionError, TargetUnavailableError

MODEL_FILE = "model.mlpackage"


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
    "multifunction": DeploymentTarget("iOS18", "macOS15", "several functions sharing weights in one model"),
}


def deployment_target(precision: Precision, multifunction: bool = False) -> DeploymentTarget:
    if multifunction:
        return DEPLOYMENT_TARGETS["multifunction"]
    return DEPLOYMENT_TARGETS["int8-weights" if precision == Precision.int8_weights else "mlprogram"]


def _coremltools():
    try:
        with vendor_quiet():
            import coremltools
    except ImportError:
        raise TargetUnavailableError("Target 'coreml' needs coremltools: pip install 'edgehmr[coreml]'.") from None
    return coremltools


def compute_precision(precision: Precision) -> str:
    return "float32" if precision == Precision.fp32 else "float16"


def _scopes_to_skip(module: torch.nn.Module, recipe: QuantRecipe | None) -> list[str]:
    """Concrete linear/conv module names inside the recipe's kept-float scopes (the quantizer takes names)."""
    if recipe is None:
        return []
    return [n for n, m in module.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and recipe.covers(n)]


def coreml_module(module: torch.nn.Module, precision: Precision, recipe: QuantRecipe | None) -> torch.nn.Module:
    """The float32 torch module that gets converted: for int8-weights, a copy with INT8-rounded weights whose
    quantization parameters coremltools turns into compressed weights."""
    if precision != Precision.int8_weights:
        return module
    from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig

    config = {"global_config": {"weight_dtype": "int8", "granularity": "per_channel",
                                "quantization_scheme": "symmetric"},
              "module_name_configs": {name: None for name in _scopes_to_skip(module, recipe)}}
    with vendor_quiet():
        return PostTrainingQuantizer(copy.deepcopy(module), PostTrainingQuantizerConfig.from_dict(config)).compress()


def simulation_module(module: torch.nn.Module, precision: Precision, recipe: QuantRecipe | None) -> torch.nn.Module:
    """What Core ML computes, in torch: the converted module with float16 weights and float16 compute."""
    converted = coreml_module(module, precision, recipe)
    if compute_precision(precision) == "float32":
        return converted
    return copy.deepcopy(converted).half()


def torch2coreml(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: list[str],
                 output_names: list[str], precision: Precision, name: str, multifunction: bool = False):
    """Convert to an in-memory ``ct.models.MLModel`` (mlprogram) with float32 inputs and outputs."""
    ct = _coremltools()
    target = deployment_target(precision, multifunction)
    compute = ct.precision.FLOAT32 if compute_precision(precision) == "float32" else ct.precision.FLOAT16
    try:
        with torch.no_grad(), vendor_quiet():
            program = torch.export.export(module, example_inputs).run_decompositions({})
    except Exception as e:
        raise ConversionError(f"torch.export of {name} failed: {str(e).splitlines()[0]}") from e
    try:
        with torch.no_grad(), vendor_quiet():
            return ct.convert(
                program, convert_to="mlprogram", compute_precision=compute, minimum_deployment_target=target.ct,
                inputs=[ct.TensorType(name=n, shape=tuple(t.shape), dtype=np.float32)
                        for n, t in zip(input_names, example_inputs)],
                outputs=[ct.TensorType(name=n, dtype=np.float32) for n in output_names],
            )
    except Exception as e:
        raise ConversionError(unsupported_op_message(e, program, name) or
                              f"Core ML conversion of {name} failed: {str(e).splitlines()[0]}") from e


_UNSUPPORTED_MARKERS = ("Unsupported fx node ", "PyTorch convert function for op ")


def unsupported_op_message(error: Exception, program: torch.export.ExportedProgram, name: str) -> str | None:
    """For coremltools' "unsupported op" errors: which op, which module it came from, and what to do instead."""
    text = str(error)
    marker = next((m for m in _UNSUPPORTED_MARKERS if m in text), None)
    if marker is None:
        return None
    op = text.split(marker, 1)[1].split()[0].strip("'\".,")
    origin = None
    for node in program.graph_module.graph.nodes:
        target = getattr(node.target, "__name__", str(node.target))
        if node.op == "call_function" and (target == op or target.split(".")[1:2] == [op] or op in target):
            stack = node.meta.get("nn_module_stack")
            origin = list(stack.values())[-1][0] if stack else "<top module>"
            break
    where = f" (from module '{origin}')" if origin else ""
    return (f"Core ML cannot convert op '{op}'{where} of {name}. Use --target executorch or --target onnx, "
            f"which run it, or change the module to avoid the op.")


def program_summary(path: Path, function: str = "main") -> dict:
    """Ops, tensor dtypes and I/O of a saved ``.mlpackage``, read from its spec (works without macOS)."""
    ct = _coremltools()
    with vendor_quiet():
        spec = ct.models.MLModel(str(path), skip_model_load=True, function_name=function).get_spec() \
            if function != "main" else ct.models.MLModel(str(path), skip_model_load=True).get_spec()
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


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    ct = _coremltools()
    if job.precision not in (Precision.fp32, Precision.fp16, Precision.int8_weights):
        raise ConversionError(f"Core ML target has no {job.precision.value} path.")
    module = coreml_module(job.module, job.precision, job.recipe)
    model = torch2coreml(module, job.example_inputs, job.input_names, job.output_names, job.precision,
                         job.model_name)
    out = out_dir / MODEL_FILE
    model.save(str(out))
    summary = program_summary(out)
    target = deployment_target(job.precision)
    details = {
        "coremltools": ct.__version__, "format": "mlprogram",
        "compute_precision": compute_precision(job.precision),
        "minimum_deployment_target": {"ios": target.ios, "macos": target.macos, "why": target.why},
        "program": summary,
    }
    kept = []
    if job.precision == Precision.int8_weights:
        skipped = _scopes_to_skip(job.module, job.recipe)
        details["weights"] = "int8 per-channel symmetric (expanded to float16 at load)"
        details["quantized_weights"] = summary["ops"].get("constexpr_affine_dequantize", 0)
        kept = [f"linear/conv {n}" for n in skipped]
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def torch2coreml_multifunction(module: torch.nn.Module, functions: dict[str, tuple[torch.Tensor, ...]],
                               input_names: list[str], output_names: list[str], precision: Precision, name: str,
                               out_path: Path, default: str | None = None) -> None:
    """One ``.mlpackage`` with a function per static shape; weights identical across functions are stored once."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgehmr-mf-", dir=out_path.parent) as tmp:
        parts = {}
        for function, example in functions.items():
            part = Path(tmp) / f"{function}.mlpackage"
            torch2coreml(module, example, input_names, output_names, precision, name, multifunction=True).save(str(part))
            parts[function] = part
        save_multifunction(parts, out_path, default or next(iter(functions)))
