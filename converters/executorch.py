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

A job with several entries (SAT-HMR's buckets) becomes one ``.pte``: one method with dynamic axes (FP32) or
one static method per entry (INT8); methods lowered together store the delegate's weights once. Metadata maps
each entry to its method (``entry_methods``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import NamedTuple

import torch

from edgehmr.converters.base import ConvertResult, ExportJob, node_scope
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.shapes import dynamic_axes_json, export_job, prepare, torch_dynamic_shapes
from edgehmr.errors import ConversionError
from edgehmr.progress import step
from edgehmr.vendor import vendor_quiet

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


def _xnnpack_partitioner(precision: Precision):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return XnnpackPartitioner()


def _coreml_partitioner(precision: Precision):
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    from edgehmr.converters.coreml import deployment_target

    compute = ct.precision.FLOAT16 if precision == Precision.fp16 else ct.precision.FLOAT32
    specs = CoreMLBackend.generate_compile_specs(compute_precision=compute,
                                                 minimum_deployment_target=deployment_target(precision).ct)
    return CoreMLPartitioner(compile_specs=specs)


# Delegate name (recorded in target_details.delegate) -> its partitioner for a precision.
PARTITIONERS = {"xnnpack": _xnnpack_partitioner, "coreml": _coreml_partitioner}


def _partitioners(delegate: str, precision: Precision) -> list:
    if delegate not in PARTITIONERS:
        raise ConversionError(f"Unknown ExecuTorch delegate '{delegate}'; known: {', '.join(PARTITIONERS)}.")
    return [PARTITIONERS[delegate](precision)]


def quantize_int8_dynamic(job: ExportJob) -> torch.nn.Module:
    """PT2E INT8 for XNNPACK: per-channel weights, dynamic activations, recipe scopes left float."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    recipe = job.int8_recipe
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                                  is_dynamic=True))
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


class Method(NamedTuple):
    """One method of a program: what to export, with what inputs, and which axes stay dynamic (None: none)."""
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    dynamic_shapes: tuple | None = None


def lower_methods(methods: dict[str, Method | tuple], delegate: str, precision: Precision,
                  name: str) -> tuple[bytes, dict[str, dict[str, int]]]:
    """Export and lower each :class:`Method` (or a plain (module, example inputs) pair) as one method of a single
    program.

    Returns the ``.pte`` bytes and, per method, the ops left outside the delegate. Methods lowered together
    share the delegate's constant data (weights are stored once).
    """
    from executorch.exir import to_edge_transform_and_lower

    try:
        with torch.no_grad(), vendor_quiet():
            if precision == Precision.int8:
                # Registers portable out-variants of quantize/dequantize for any left outside the delegate.
                import executorch.kernels.quantized  # noqa: F401
            programs = {}
            for i, (method, spec) in enumerate(methods.items(), 1):
                step(f"{name}: exporting method {i}/{len(methods)} ({method})")
                spec = Method(*spec)
                programs[method] = torch.export.export(spec.module, spec.example_inputs,
                                                       dynamic_shapes=spec.dynamic_shapes)
            step(f"{name}: lowering {len(programs)} method(s) to {delegate} (minutes at published sizes)")
            edge = to_edge_transform_and_lower(programs, partitioner=_partitioners(delegate, precision))
            leftover = {m: non_delegated_ops(edge, m) for m in methods}
            step(f"{name}: writing the .pte")
            buffer = edge.to_executorch().buffer
    except Exception as e:
        raise ConversionError(f"ExecuTorch lowering of {name} ({delegate}) failed: {str(e).splitlines()[0]}") from e
    return buffer, leftover


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    """``model.pte`` with the XNNPACK delegate."""
    prepare("executorch", job)
    return convert_with_delegate(job, out_dir, "xnnpack")


def convert_with_delegate(job: ExportJob, out_dir: Path, delegate: str) -> ConvertResult:
    """One ``model.pte`` that runs every entry; ``details["entry_methods"]`` maps entry -> method.

    FP32/FP16: one method, its varying axes dynamic and bounded by the largest entry (one entry: static). Every
    method of a program is exported, decomposed and partitioned on its own (100-150 s per method for published
    SAT-HMR, whatever the bucket's size), so one method instead of one per bucket cuts the conversion by the
    number of buckets; XNNPACK plans memory for the upper bounds and reshapes its runtime when the input shape
    changes.
    INT8: one static method per entry: the XNNPACK partitioner cannot yet partition a dynamically quantized
    graph whose token axes are dynamic (it reports a dependency cycle), so each entry is quantized and lowered on
    its own and the program stores the identical INT8 weights once.
    """
    from edgehmr.environment import package_version

    kept: list[str] = []
    details: dict = {"delegate": delegate}
    if job.precision == Precision.int8:
        methods, counts = _quantize_methods(job)
        entry_methods = {entry: method for method, entry in zip(methods, job.entries)}
        details |= {"weights": "int8 per-channel symmetric", "activations": "int8 dynamic (per row, at run time)",
                    "recipe": job.recipe_json(), "quantized_linear_conv": sum(c["quantized"] for c in counts.values()),
                    "linear_conv": sum(c["total"] for c in counts.values()), "linear_conv_by_method": counts}
        kept = [f"linear/conv in {s}" for s in job.int8_recipe.keep_float_scopes]
    else:
        single = export_job(job)
        methods = {DEFAULT_METHOD: Method(single.module, single.example_inputs, torch_dynamic_shapes(job))}
        entry_methods = {entry: DEFAULT_METHOD for entry in job.entries}
        details["dynamic_axes"] = dynamic_axes_json(job)
    buffer, leftover = lower_methods(methods, delegate, job.precision, job.model_name)
    (out_dir / MODEL_FILE).write_bytes(buffer)
    left = Counter()
    for ops in leftover.values():
        left.update(ops)
    details |= {"methods": list(methods), "entry_methods": entry_methods,
                "default_method": entry_methods[job.default_entry],
                "non_delegated": dict(left.most_common()), "non_delegated_total": sum(left.values()),
                "non_delegated_by_method": leftover, "executorch": package_version("executorch")}
    return ConvertResult(MODEL_FILE, details, kept_fp32=kept)


def _quantize_methods(job: ExportJob) -> tuple[dict[str, Method], dict[str, dict[str, int]]]:
    """Each entry quantized on its own: method -> Method, method -> {"quantized", "total"} linear/conv ops.
    A job with one entry keeps the program's default method name."""
    methods, counts = {}, {}
    for entry, inputs in job.entries.items():
        method = DEFAULT_METHOD if len(job.entries) == 1 else entry
        what = job.model_name if len(job.entries) == 1 else f"{job.model_name} ({entry})"
        module = quantized_or_fail(job.with_entry(entry), what)
        methods[method] = Method(module, inputs)
        done, total = quantized_linears(module)
        counts[method] = {"quantized": done, "total": total}
    return methods, counts
