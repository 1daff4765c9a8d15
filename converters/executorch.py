"""ExecuTorch targets: ``torch2pte`` = torch.export -> ``to_edge_transform_and_lower`` -> ``model.pte``.

Two delegates: XNNPACK (ARM/x86 CPUs; runs here) and Core ML (Apple devices only: built and checked here, run
on a Mac or iPhone). What a delegate does not take stays on ExecuTorch's portable kernels; the converter records
those ops per type (``target_details.non_delegated``) so users see what runs outside the delegate.

INT8 (XNNPACK) is torchao PT2E with the XNNPACK quantizer: per-channel symmetric INT8 weights and dynamic
(per-row, computed at run time) INT8 activations for every linear and conv outside the recipe's kept-float
scopes. Why dynamic rather than static activations, measured on hmr2-vit-s (64 s.c. crops, default recipe):
static per-tensor 81 ms and 3.2e-2 rel. L2 on betas; dynamic 60 ms and 3.6e-3. XNNPACK's dynamic GEMMs keep
the output in float, so residual adds, LayerNorm and softmax stay float without extra quantize/dequantize pairs.
Dynamic activations need no calibration data.

Several static shapes can share one ``.pte``: :func:`lower_methods` lowers one method per shape, and the
delegate's weights are stored once (the SAT-HMR bucketing uses it). :func:`convert_multishape` does that for a
:class:`~edgehmr.converters.multishape.MultiShapeJob`: one method per entry, named after the entry.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from edgehmr.converters.base import ConvertResult, ExportJob, node_scope, vendor_quiet
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.multishape import MultiShapeJob, prepare
from edgehmr.errors import ConversionError

MODEL_FILE = "model.pte"
DEFAULT_METHOD = "forward"
# Graph plumbing that is not compute: never worth reporting as "not delegated".
_PLUMBING = {"getitem", "output", "placeholder", "executorch_call_delegate"}


def non_delegated_ops(edge_program, method: str = DEFAULT_METHOD) -> dict[str, int]:
    """Op type -> count of compute nodes of ``method`` left outside every delegate."""
    counts: Counter[str] = Counter()
    for node in edge_program.exported_program(method).graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))  # e.g. 'aten.native_layer_norm.default'
        if name not in _PLUMBING:
            counts[name.removesuffix(".default")] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _partitioners(delegate: str, precision: Precision) -> list:
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if delegate == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        from edgehmr.converters.coreml import deployment_target

        compute = ct.precision.FLOAT16 if precision == Precision.fp16 else ct.precision.FLOAT32
        specs = CoreMLBackend.generate_compile_specs(compute_precision=compute,
                                                     minimum_deployment_target=deployment_target(precision).ct)
        return [CoreMLPartitioner(compile_specs=specs)]
    raise ConversionError(f"Unknown ExecuTorch delegate '{delegate}'.")


def quantize_int8_dynamic(job: ExportJob) -> torch.nn.Module:
    """PT2E INT8 for XNNPACK: per-channel weights, dynamic activations, recipe scopes left float."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    recipe = job.recipe
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                                  is_dynamic=True))
    if recipe is not None:
        quantizer.set_filter_function(lambda node: not recipe.covers(node_scope(node) or ""))
    graph = torch.export.export(job.module, job.example_inputs).module()
    prepared = prepare_pt2e(graph, quantizer)
    prepared(*job.example_inputs)  # dynamic observers only record shapes: one forward is all it takes
    return convert_pt2e(prepared)


def quantized_or_fail(job: ExportJob, what: str) -> torch.nn.Module:
    """:func:`quantize_int8_dynamic` with any failure turned into one line naming ``what`` was quantized."""
    try:
        with torch.no_grad(), vendor_quiet():
            return quantize_int8_dynamic(job)
    except Exception as e:
        raise ConversionError(f"ExecuTorch INT8 quantization of {what} failed: {str(e).splitlines()[0]}") from e


def quantized_linears(module: torch.nn.Module) -> tuple[int, int]:
    """(linear/conv ops with quantized weights, all linear/conv ops) of a converted PT2E graph."""
    total = quantized = 0
    for node in module.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.linear.default, torch.ops.aten.conv2d.default):
            total += 1
            weight = node.args[1]
            quantized += int(weight.op == "call_function" and "dequantize" in str(weight.target))
    return quantized, total


def lower_methods(methods: dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...]]], delegate: str,
                  precision: Precision, name: str) -> tuple[bytes, dict[str, dict[str, int]]]:
    """Export and lower each (module, example inputs) as one method of a single program.

    Returns the ``.pte`` bytes and, per method, the ops left outside the delegate. Methods lowered together
    share the delegate's constant data (weights are stored once).
    """
    from executorch.exir import to_edge_transform_and_lower

    try:
        with torch.no_grad(), vendor_quiet():
            if precision == Precision.int8:
                # Registers portable out-variants of quantize/dequantize for any left outside the delegate.
                import executorch.kernels.quantized  # noqa: F401
            programs = {m: torch.export.export(mod, ex) for m, (mod, ex) in methods.items()}
            edge = to_edge_transform_and_lower(programs, partitioner=_partitioners(delegate, precision))
            leftover = {m: non_delegated_ops(edge, m) for m in methods}
            buffer = edge.to_executorch().buffer
    except Exception as e:
        raise ConversionError(f"ExecuTorch lowering of {name} ({delegate}) failed: {str(e).splitlines()[0]}") from e
    return buffer, leftover


def torch2pte(job: ExportJob, out_path: Path, delegate: str = "xnnpack") -> dict:
    details: dict = {"delegate": delegate, "methods": [DEFAULT_METHOD]}
    module = job.module
    if job.precision == Precision.int8:
        module = quantized_or_fail(job, job.model_name)
        done, total = quantized_linears(module)
        details |= {"weights": "int8 per-channel symmetric", "activations": "int8 dynamic (per row, at run time)",
                    "quantized_linear_conv": done, "linear_conv": total}
    buffer, leftover = lower_methods({DEFAULT_METHOD: (module, job.example_inputs)}, delegate, job.precision,
                                     job.model_name)
    out_path.write_bytes(buffer)
    left = leftover[DEFAULT_METHOD]
    return details | {"non_delegated": left, "non_delegated_total": sum(left.values())}


def _convert(job: ExportJob, out_dir: Path, delegate: str) -> ConvertResult:
    from edgehmr.environment import package_version

    details = torch2pte(job, out_dir / MODEL_FILE, delegate)
    kept = []
    if job.precision == Precision.int8:
        kept = [f"linear/conv in {s}" for s in job.recipe.keep_float_scopes] if job.recipe else []
    return ConvertResult(MODEL_FILE, details | {"executorch": package_version("executorch")},
                         kept_fp32=kept)


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    if job.precision not in (Precision.fp32, Precision.int8):
        raise ConversionError(f"ExecuTorch XNNPACK target has no {job.precision.value} path.")
    return _convert(job, out_dir, "xnnpack")


def convert_coreml_delegate(job: ExportJob, out_dir: Path) -> ConvertResult:
    if job.precision not in (Precision.fp32, Precision.fp16):
        raise ConversionError(f"ExecuTorch Core ML target has no {job.precision.value} path.")
    return _convert(job, out_dir, "coreml")


def convert_multishape(job: MultiShapeJob, out_dir: Path) -> ConvertResult:
    """One ``model.pte`` (XNNPACK) with one method per entry, each static in that entry's shapes."""
    from edgehmr.environment import package_version

    prepare("executorch", job)
    details: dict = {"delegate": "xnnpack", "methods": list(job.entries), "default_method": job.default_entry}
    methods = {entry: (job.module, inputs) for entry, inputs in job.entries.items()}
    kept: list[str] = []
    if job.precision == Precision.int8:
        # Each method is quantized on its own graph; the INT8 weights come out identical, and the program stores
        # identical delegate data once.
        methods, details["quantized_linear_conv"] = _quantize_methods(job)
        details |= {"weights": "int8 per-channel symmetric", "activations": "int8 dynamic (per row, at run time)",
                    "recipe": job.recipe_json()}
        kept = [f"linear/conv in {s}" for s in job.int8_recipe.keep_float_scopes]
    buffer, leftover = lower_methods(methods, "xnnpack", job.precision, job.model_name)
    (out_dir / MODEL_FILE).write_bytes(buffer)
    details |= {"non_delegated": leftover, "executorch": package_version("executorch")}
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def _quantize_methods(job: MultiShapeJob):
    methods, counts = {}, {}
    for entry, inputs in job.entries.items():
        single = ExportJob(job.module, inputs, job.input_names, job.output_names, job.precision, job.model_name,
                           recipe=job.recipe)
        module = quantized_or_fail(single, f"{job.model_name} ({entry})")
        methods[entry] = (module, inputs)
        done, total = quantized_linears(module)
        counts[entry] = {"quantized": done, "total": total}
    return methods, counts
