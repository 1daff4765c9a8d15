"""OpenVINO target: ``torch2openvino`` (``ov.convert_model`` on the torch.export program, static shapes), then
fp16 weight compression, INT8 static PTQ with NNCF, or NNCF 8-bit weight compression. IR = ``model.xml`` +
``model.bin``.

The recipe's kept-float scopes reach NNCF as op names: OpenVINO names each op after the FX node it came from
(``linear_90/aten.linear.default/MatMul``), and the exported program records each FX node's module path.

A job with several entries (SAT-HMR's buckets) becomes one IR whose axes that differ between the entries are
dynamic, bounded to the entries' range; the runner reshapes a copy per entry to its static shapes and compiles
each, so every entry runs as a static graph while the ``.bin`` holds the weights once. INT8 is calibrated on
every entry's samples (one set of scales for the shared weights).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch

from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.base import ConvertResult, ExportJob, node_scope
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.shapes import (calibration_counts, calibration_feeds, dynamic_axes, dynamic_axes_json,
                                      entry_shapes, export_job, prepare, torch_dynamic_shapes)
from edgehmr.doctor import pip_install
from edgehmr.errors import ConversionError, TargetUnavailableError
from edgehmr.progress import step

MODEL_FILE = "model.xml"
# NNCF op types for the recipe's op kinds (LayerNorm arrives in OpenVINO as MVN).
NNCF_TYPES = {"softmax": ["Softmax"], "layernorm": ["MVN"]}
QUANTIZABLE_TYPES = {"MatMul", "Convolution", "ConvolutionBackpropData"}


def _import_openvino():
    try:
        import openvino as ov
    except ImportError:
        raise TargetUnavailableError(f"Target 'openvino' needs OpenVINO: {pip_install('openvino')}.") from None
    return ov


def fx_node_scopes(graph_module: torch.fx.GraphModule) -> dict[str, str]:
    """FX node name -> innermost module path ('' for ops of the top module)."""
    scopes = {node.name: node_scope(node) for node in graph_module.graph.nodes}
    return {name: scope for name, scope in scopes.items() if scope is not None}


def _decomposed(program: torch.export.ExportedProgram) -> torch.fx.GraphModule:
    """The program decomposed exactly as OpenVINO's frontend does it, so op names can be traced to modules.

    reason: the frontend decomposes before converting and names ops after the decomposed nodes (aten.conv2d
    becomes 'convolution'); doing it here and handing the frontend a decoder of this graph keeps the two in step.
    """
    from torch.export.decomp_utils import CustomDecompTable
    from openvino.frontend.pytorch.torchdynamo.export_decompositions import ops_to_not_decompose

    table = CustomDecompTable()
    for op in ops_to_not_decompose():
        table.pop(op, None)
    return program.run_decompositions(table).module()


def torch2openvino(job: ExportJob, dynamic_shapes: tuple | None = None):
    """Returns the in-memory ``ov.Model`` and the FX scope map used to resolve the recipe. Shapes are static unless
    ``dynamic_shapes`` (torch.export's form) names dynamic axes."""
    ov = _import_openvino()
    from openvino.frontend.pytorch.fx_decoder import TorchFXPythonDecoder

    try:
        with torch.no_grad(), _quiet():
            program = torch.export.export(job.module, job.example_inputs, dynamic_shapes=dynamic_shapes)
            graph_module = _decomposed(program)
            model = ov.convert_model(TorchFXPythonDecoder(graph_module))
    except Exception as e:
        raise ConversionError(f"OpenVINO conversion of {job.model_name} failed: {str(e).splitlines()[0]}") from e
    for port, name in zip(model.inputs, job.input_names):
        port.get_tensor().set_names({name})
    for port, name in zip(model.outputs, job.output_names):
        port.get_tensor().set_names({name})
    return model, fx_node_scopes(graph_module)


def op_scope(op, scopes: dict[str, str], hops: int = 3) -> str | None:
    """Module path of an OpenVINO op, from the FX node its name starts with.

    Ops renamed by the frontend's fusions (a deconvolution merged with its BatchNorm becomes 'Multiply_123') take
    the scope of the nearest traceable consumer, i.e. of the op they were fused with.
    """
    frontier = [op]
    for _ in range(hops + 1):
        for node in frontier:
            fx_name = node.get_friendly_name().split("/", 1)[0]
            if fx_name in scopes:
                return scopes[fx_name]
        frontier = [t.get_node() for n in frontier for out in n.outputs() for t in out.get_target_inputs()]
    return None


def kept_float_op_names(model, scopes: dict[str, str], recipe: QuantRecipe) -> list[str]:
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in QUANTIZABLE_TYPES:
            continue
        scope = op_scope(op, scopes)
        if scope is not None and recipe.covers(scope):
            names.append(op.get_friendly_name())
        elif "attention_matmul" in recipe.keep_float_ops and op.get_type_name() == "MatMul" and not any(
                _is_constant(op.input_value(i).get_node()) for i in range(2)):
            names.append(op.get_friendly_name())
    return names


def _is_constant(node) -> bool:
    while node.get_type_name() in ("Convert", "Reshape", "Transpose") and node.get_input_size():
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def _ignored_scope(model, scopes, recipe: QuantRecipe):
    import nncf

    names = kept_float_op_names(model, scopes, recipe)
    types = [t for kind in recipe.keep_float_ops for t in NNCF_TYPES.get(kind, [])]
    return nncf.IgnoredScope(names=names, types=types, validate=False), names


def compress_int8_weights(model, scopes, job: ExportJob):
    import nncf

    ignored, names = _ignored_scope(model, scopes, job.int8_recipe)
    with _quiet():
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=ignored)
    return compressed, names


def count_quantized(model) -> dict:
    types = [op.get_type_name() for op in model.get_ordered_ops()]
    int8_constants = sum(1 for op in model.get_ordered_ops()
                         if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name()
                         in ("i8", "u8"))
    return {"fake_quantize": types.count("FakeQuantize"), "int8_weight_constants": int8_constants}


def runtime_config(precision: Precision) -> dict[str, str]:
    """CPU plugin settings the artifact is validated with (apps should use the same).

    reason: with OpenVINO 2026.4's CPU plugin, compiled models whose weights are compressed (fp16, int8) return
    correct outputs for the first inference and outputs off by ~1e-2 relative for later ones while snippets
    (fused subgraph kernels) are on; disabling snippets fixes it (measured on hmr2-vit-s, 16 crops). fp32 is
    unaffected and keeps them. ``f32`` pins float ops to fp32 (the default is bf16 on bf16-capable CPUs).
    """
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if precision != Precision.fp32:
        config["SNIPPETS_MODE"] = "DISABLE"
    return config


def torch2openvino_entries(job: ExportJob):
    """The ``ov.Model`` with the entries' varying axes dynamic and bounded to the entries' range (the IR then
    documents which sizes it was made for; one entry: static), and the FX scope map."""
    ov = _import_openvino()
    model, scopes = torch2openvino(export_job(job), dynamic_shapes=torch_dynamic_shapes(job))
    ranges = dynamic_axes(job)
    if not ranges:
        return model, scopes
    first = entry_shapes(job)[job.default_entry]
    bounded = {}
    for name in job.input_names:
        dims = [ov.Dimension(*ranges[name][axis]) if axis in ranges.get(name, {}) else ov.Dimension(size)
                for axis, size in enumerate(first[name])]
        bounded[name] = ov.PartialShape(dims)
    try:
        model.reshape(bounded)
    except Exception as e:
        raise ConversionError(f"OpenVINO could not bound the dynamic axes of {job.model_name} to the entries' "
                              f"range: {str(e).splitlines()[0]}") from e
    return model, scopes


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    """One IR for every entry; the runner compiles one static CompiledModel per entry at load time."""
    prepare("openvino", job)
    ov = _import_openvino()
    step(f"{job.model_name}: exporting and reading into OpenVINO")
    model, scopes = torch2openvino_entries(job)
    kept: list[str] = []
    details: dict = {}
    if job.precision == Precision.int8:
        step(f"{job.model_name}: INT8 calibration (NNCF, {sum(calibration_counts(job).values())} samples)")
        model, kept = quantize_int8(model, scopes, job)
        details = {"recipe": job.recipe_json(), "calibration_samples": calibration_counts(job)}
        scheme = "W8A8 static PTQ (NNCF, TRANSFORMER, mixed preset)"
    elif job.precision == Precision.int8_weights:
        model, kept = compress_int8_weights(model, scopes, job)
        details = {"recipe": job.recipe_json()}
        scheme = "8-bit symmetric weight compression (NNCF)"
    elif job.precision in (Precision.fp32, Precision.fp16):
        scheme = "float"
    else:  # prepare() refused every other precision
        raise ConversionError(f"OpenVINO target has no {job.precision.value} path.")
    step(f"{job.model_name}: saving the IR")
    ov.save_model(model, str(out_dir / MODEL_FILE), compress_to_fp16=job.precision == Precision.fp16)
    details |= {"scheme": scheme, "openvino": ov.__version__, "runtime_config": runtime_config(job.precision),
                "weights": {Precision.fp16: "fp16", Precision.fp32: "fp32"}.get(job.precision, "as scheme"),
                "dynamic_axes": dynamic_axes_json(job), "entries": list(job.entries),
                "compiled": "one static CompiledModel per entry (model.reshape to the entry's shapes at load)"}
    return ConvertResult(MODEL_FILE, details | count_quantized(model), kept_fp32=kept)


def quantize_int8(model, scopes, job: ExportJob):
    """NNCF static PTQ over every entry's samples (statistics reduce per sample, so the entries' shapes may
    differ)."""
    import nncf

    ignored, names = _ignored_scope(model, scopes, job.int8_recipe)
    feeds = calibration_feeds(job)
    try:
        with _quiet():
            quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                      preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds),
                                      ignored_scope=ignored)
    except Exception as e:
        raise ConversionError(f"OpenVINO INT8 quantization of {job.model_name} failed: {str(e).splitlines()[0]}") from e
    return quantized, names


@contextlib.contextmanager
def _quiet():
    """NNCF and the frontend print progress bars and INFO lines that mean nothing to users."""
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)
