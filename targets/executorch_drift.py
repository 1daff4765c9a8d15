"""``edgehmr debug drift`` for ExecuTorch (XNNPACK) artifacts: the ExecuTorch Inspector's per-op numeric data.

What the runtime can tell: ExecuTorch logs intermediate outputs (ETDump + debug buffer) only at instruction
boundaries, i.e. per portable-kernel op and per XNNPACK ``DELEGATE_CALL``. XNNPACK logs no tensors from inside a
delegate, and a converted artifact is one large delegate call per stretch of graph between LayerNorms (which stay
on portable kernels in 1.5.1), and is stored without the ETRecord that maps its instructions back to graph nodes.
So the artifact itself cannot give per-layer data. Instead, the model it records is lowered again the way
:mod:`edgehmr.converters.executorch` lowered it (same checkpoint, hash checked; for INT8 the same PT2E
quantization with the artifact's recipe), but with ``XnnpackPartitioner(per_op_mode=True)``: every computing
op becomes its own XNNPACK delegate call (same XNNPACK kernels, INT8 linears with their dynamic activation
quantization inside the call; pure data movement such as views and permutes runs on portable kernels, exact
either way), with an ETRecord. That program runs in the ExecuTorch runtime with ETDump debug capture, and
``Inspector.calculate_numeric_gap`` lines up each runtime output with its ATen node by debug handle. Each of those
runtime tensors is then compared with the same node of the FP32 model (torch.export of the rebuilt module, ATen
node names are shared: PT2E only inserts quantize/dequantize nodes), and layers are ranked like the ONNX path:
``added`` = own relative L2 error minus the worst error among the float tensors it was computed from.

What it cannot see: fusions XNNPACK makes across ops in the artifact's large delegates (e.g. linear + GELU) are
not made per op, and the re-lowered program is not the artifact's bytes. The final outputs of the re-lowered
program are compared with the artifact's own, and the method string says how far apart they are.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from edgehmr.drift import LayerDrift
from edgehmr.errors import SpecError

# XNNPACK partitioner configs of ops that only move data.
_DATA_MOVEMENT = {"ViewCopyConfig", "PermuteConfig", "SliceCopyConfig", "UnsqueezeCopyConfig", "CloneConfig",
                  "CloneDimOrderConfig", "ToDimOrderCopyConfig", "CatConfig", "ConstantPadConfig"}


def _modules(meta: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(module to lower, FP32 reference module): both the model the artifact records (checkpoint hash checked)."""
    from edgehmr.artifact import CROP_PART
    from edgehmr.rebuild import simulation_module

    reference = simulation_module(meta, CROP_PART)
    return _lowering_module(meta, reference), reference


def _lowering_module(meta: dict, reference: torch.nn.Module) -> torch.nn.Module:
    """The module that is lowered per op: the reference itself (export and PT2E leave its weights alone). Tests
    replace this hook with one returning a copy with one layer degraded."""
    return reference


def _check_supported(meta: dict) -> None:
    from edgehmr.artifact import parts

    every = parts(meta)
    details = next(iter(every.values()))["details"]
    if details.get("delegate") != "xnnpack":
        raise SpecError("ExecuTorch drift reads XNNPACK .pte artifacts (-t executorch); Core ML-delegated programs "
                        "run only on Apple devices.")
    if len(every) > 1 or len(details.get("methods", ["forward"])) > 1:
        raise SpecError("ExecuTorch drift reads single-method artifacts (not multi-shape or multi-stage ones yet).")
    if meta["precision"] not in ("fp32", "int8"):
        raise SpecError(f"ExecuTorch XNNPACK artifacts are fp32 or int8, not {meta['precision']}.")


def _lower_per_op(module: torch.nn.Module, meta: dict, example: tuple[torch.Tensor, ...]):
    """(ExecuTorch program buffer, ETRecord) of ``module`` lowered with one XNNPACK delegate call per op."""
    from executorch.exir import to_edge_transform_and_lower

    from edgehmr.converters.base import ExportJob
    from edgehmr.vendor import vendor_quiet
    from edgehmr.converters.capabilities import Precision
    from edgehmr.converters.executorch import quantize_int8_dynamic

    with torch.no_grad(), vendor_quiet():
        if meta["precision"] == "int8":
            import executorch.kernels.quantized  # noqa: F401  (portable quantize/dequantize out-variants)

            from edgehmr.calibration.recipes import QuantRecipe

            quant = meta.get("quantization")
            recipe = QuantRecipe.from_json(quant["recipe"]) if quant and quant.get("recipe") else None
            job = ExportJob.single(module, example, [i["name"] for i in meta["inputs"]],
                                   [o["name"] for o in meta["outputs"]], Precision.int8, meta["model"]["model"],
                                   recipe=recipe)
            module = quantize_int8_dynamic(job)
        program = torch.export.export(module, example)
        edge = to_edge_transform_and_lower(program, partitioner=[_per_op_partitioner()], generate_etrecord=True)
        executorch_program = edge.to_executorch()
    return executorch_program.buffer, executorch_program.get_etrecord()


def _per_op_partitioner():
    """XNNPACK, one delegate call per op, for every op that computes; pure data movement (views, permutes,
    slices, copies: exact on any kernel) is left to portable kernels, where it is still logged per op. Lowering
    cost grows with the number of delegate calls times the graph size, and these are about half of a ViT's ops."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    configs = [c for c in ALL_PARTITIONER_CONFIGS if c.__name__ not in _DATA_MOVEMENT]
    return XnnpackPartitioner(configs=configs, per_op_mode=True)


class _Capture(torch.fx.Interpreter):
    """Every call_function node's output of a graph, by node name."""

    def __init__(self, module: torch.fx.GraphModule):
        super().__init__(module)
        self.values: dict[str, object] = {}

    def run_node(self, node):
        out = super().run_node(node)
        if node.op == "call_function":
            self.values[node.name] = _tensors(out)
        return out


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach().clone()]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _rel_l2(got: list[torch.Tensor], want: list[torch.Tensor]) -> float | None:
    """Relative L2 of the float tensors of two outputs, paired by position; None if they do not line up."""
    pairs = [(g, w) for g, w in zip(got, want) if w.is_floating_point()]
    if not pairs or any(tuple(g.shape) != tuple(w.shape) for g, w in pairs):
        return None
    diff = sum(float(torch.sum((g.double() - w.double()) ** 2)) for g, w in pairs)
    norm = sum(float(torch.sum(w.double() ** 2)) for _, w in pairs)
    return float(np.sqrt(diff) / max(np.sqrt(norm), 1e-12))


def _comparator():
    """The Inspector's gap column as relative L2 (runtime vs the lowered program's own AOT graph; informative
    only); NaN where the two sides do not line up (a view the runtime logs in another shape) instead of failing."""
    from executorch.devtools.inspector.numerical_comparator import NumericalComparatorBase

    class RelativeL2(NumericalComparatorBase):
        def element_compare(self, a, b) -> float:
            a, b = _tensors(a), _tensors(b)
            return float("nan") if (err := _rel_l2(b, a)) is None else err

        def _compare_intermediate_outputs(self, a, b):
            try:
                return super()._compare_intermediate_outputs(a, b)
            except ValueError:
                return [float("nan")]

    return RelativeL2()


def _runtime_rows(buffer: bytes, etrecord, inputs: tuple[torch.Tensor, ...], debug_bytes: int, workdir: Path):
    """Run the program with ETDump debug capture; the Inspector's rows (AOT ops <-> runtime outputs) and the
    program's final outputs."""
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from edgehmr.targets.base import native_output_silenced

    with native_output_silenced():
        program = _load_for_executorch_from_buffer(buffer, enable_etdump=True, debug_buffer_size=debug_bytes)
        outputs = program.run_method("forward", list(inputs))
        program.write_etdump_result_to_file(str(workdir / "run.etdp"), str(workdir / "run.debug"))
    etrecord.update_representative_inputs([tuple(inputs)])  # the Inspector's AOT side runs on this batch too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspector = Inspector(etdump_path=str(workdir / "run.etdp"), etrecord=etrecord,
                              debug_buffer_path=str(workdir / "run.debug"))
        try:
            frame = inspector.calculate_numeric_gap(_comparator(), reference_graph="exported_program")
        except ValueError:  # debug-handle back-propagation to the ATen graph failed validation
            frame = inspector.calculate_numeric_gap(_comparator(), True, reference_graph="exported_program")
    return frame, [o.detach().clone() for o in outputs]


def _inputs_of(node, measured: set[str], depth: int = 0) -> set[str]:
    """Measured float tensors a node computes from, looking through quantize/dequantize and unmeasured ops."""
    found: set[str] = set()
    for arg in node.all_input_nodes:
        if arg.name in measured:
            found.add(arg.name)
        elif arg.op == "call_function" and depth < 16:
            found |= _inputs_of(arg, measured, depth + 1)
    return found


def _op_name(node) -> str:
    """'linear', 'bmm', 'layer_norm', 'slice' (the ATen op without namespace and overload)."""
    return getattr(node.target, "_opname", None) or getattr(node.target, "__name__", str(node.target))


def _rank_batch(frame, outputs_fp32: dict[str, list[torch.Tensor]], fp32_nodes: dict, aten_nodes: dict,
                fp32_order: dict[str, int]) -> list[LayerDrift]:
    from edgehmr.converters.base import node_scope

    rows: dict[str, float] = {}
    for _, row in frame.iterrows():
        # A row is one output of a delegate call or portable op. Its layer is one of the call's ATen ops that FP32
        # also has (quantize/dequantize/choose_qparams are the INT8 plumbing around it). XNNPACK puts linears that
        # share one dynamically quantized input (e.g. the decoder's to_kv of every layer, all reading the same
        # context) in one call with one output each; the Inspector gives each output the whole call's op list, so
        # the output is matched to the candidate it is closest to (distinct layers are ~100 % apart).
        got = _tensors(row["runtime_intermediate_output"])
        scored = [(err, n) for n in row["aot_ops"] if n in fp32_nodes and n in outputs_fp32
                  and (err := _rel_l2(got, outputs_fp32[n])) is not None]
        if not scored:
            continue
        err, name = min(scored)
        rows[name] = min(err, rows.get(name, err))
    layers = []
    measured = set(rows)
    for name in sorted(rows, key=lambda n: fp32_order[n]):
        sources = _inputs_of(aten_nodes[name], measured) if name in aten_nodes else set()
        inherited = max((rows[s] for s in sources), default=0.0)
        node = fp32_nodes[name]
        scope = node_scope(node) or ""
        layers.append(LayerDrift(name, _op_name(node), scope, rows[name], rows[name] - inherited, fp32_order[name],
                                 scope))
    return layers


def executorch_layer_drift(artifact_dir: Path, meta: dict, images: np.ndarray,
                           top: int) -> tuple[str, list[LayerDrift]]:
    """Layers of an ExecuTorch XNNPACK artifact's model ranked by the error each adds, measured in the ExecuTorch
    runtime (per op: the model lowered again with one XNNPACK delegate call per op) against FP32.

    ``images`` holds whole batches of the artifact's input shape. Returns (method description, layers ranked by
    ``added``, worst case over the batches).
    """
    from edgehmr.targets.base import open_artifact_runner

    _check_supported(meta)
    batch = int(meta["inputs"][0]["shape"][0])
    if len(images) < batch or len(images) % batch:
        raise SpecError(f"{len(images)} images do not make whole batches of {batch}.")
    module, reference = _modules(meta)
    example = tuple(torch.zeros(i["shape"]) for i in meta["inputs"])
    buffer, etrecord = _lower_per_op(module, meta, example)

    with torch.no_grad():
        fp32_program = torch.export.export(reference, example)
    fp32_graph = fp32_program.module()
    fp32_nodes = {n.name: n for n in fp32_program.graph.nodes if n.op == "call_function"}
    fp32_order = {name: i for i, name in enumerate(fp32_nodes)}
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "etrecord.bin"
        etrecord.save(str(saved))  # parsed back: the Inspector's instruction maps are keyed as serialized
        from executorch.devtools.etrecord import parse_etrecord

        etrecord = parse_etrecord(str(saved))
        aten_nodes = {n.name: n for n in etrecord.exported_program.graph.nodes if n.op == "call_function"}
        artifact = open_artifact_runner(artifact_dir, meta)
        merged: dict[str, LayerDrift] = {}
        mismatch = 0.0
        for start in range(0, len(images), batch):
            feed = torch.from_numpy(np.ascontiguousarray(images[start:start + batch], dtype=np.float32))
            capture = _Capture(fp32_graph)
            with torch.no_grad():
                capture.run(feed)
            debug_bytes = 2 * sum(t.numel() * t.element_size() for ts in capture.values.values() for t in ts)
            frame, outputs = _runtime_rows(buffer, etrecord, (feed,), debug_bytes + (64 << 20), Path(tmp))
            if len(frame) == 0:
                raise SpecError("The ExecuTorch Inspector found no intermediate outputs to compare (ETDump debug "
                                "capture or ETRecord debug handles missing).")
            for layer in _rank_batch(frame, capture.values, fp32_nodes, aten_nodes, fp32_order):
                if layer.tensor not in merged or layer.added > merged[layer.tensor].added:
                    merged[layer.tensor] = layer
            got = artifact.run(artifact.default_entry, {meta["inputs"][0]["name"]: feed.numpy()})
            for name, out in zip([o["name"] for o in meta["outputs"]], outputs):
                want = got[name].astype(np.float64)
                diff = np.linalg.norm(out.numpy().astype(np.float64) - want) / max(np.linalg.norm(want), 1e-12)
                mismatch = max(mismatch, float(diff))
    method = (f", {meta['precision']}, per op: the recorded model re-lowered with one XNNPACK delegate call per "
              f"computing op (data movement on portable kernels), ETDump intermediate outputs lined up by the Inspector "
              f"(calculate_numeric_gap, ETRecord debug handles), each vs the same node of the FP32 torch.export "
              f"graph; the re-lowered program's outputs differ from the artifact's by rel L2 {mismatch:.1e}")
    return method, sorted(merged.values(), key=lambda layer: -layer.added)[:top]


def layer_drift(artifact_dir: Path, meta: dict, batches: list[dict[str, np.ndarray]],
                strict: bool = True) -> tuple[str, list[LayerDrift]]:
    """The ``edgehmr debug drift`` probe: every batch's images, every layer ranked (the caller keeps the top);
    ``strict`` is unused (the method line states how far the re-lowered program is from the artifact)."""
    images = np.concatenate([next(iter(feeds.values())) for feeds in batches])
    return executorch_layer_drift(artifact_dir, meta, images, top=10**6)
