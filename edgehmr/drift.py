"""``edgehmr debug drift``: where a quantized or reduced-precision graph first departs from FP32, layer by layer.

The artifact and an FP32 build of the same model and weights (rebuilt from the checkpoint the artifact records,
its hash checked) run on the reference bundle's inputs with every intermediate tensor they share exposed. For each
shared tensor, in graph order:

- ``rel_l2``: its relative L2 error against FP32;
- ``added``: that error minus the largest error among the tensors it was computed from, i.e. the error this
  layer introduced rather than inherited. The ranking is by ``added``: the first layer of a bad chain stands out,
  the ones after it (which only carry the error along) do not.

Per target:

- ``onnx``, ``tensorrt`` (the Q/DQ ONNX): ONNX Runtime runs the artifact's graph and an FP32 ONNX export.
  Quantization keeps the float ops' output names (Q/DQ pairs are inserted around them), so shared names are the
  same layer in both graphs.
- ``openvino``: the OpenVINO runtime runs the artifact's IR (with the runtime settings it was validated with) and
  an FP32 IR converted the same way, every op's output added as a model output. NNCF keeps the float ops' friendly
  names (FakeQuantize and weight-decompression ops are inserted around them), so shared names match.
- ``executorch``: the ExecuTorch runtime's own intermediate outputs (ETDump, read with the Inspector) of the model
  lowered again with one XNNPACK call per op; see :mod:`edgehmr.drift_executorch`.

Core ML cannot run here; its artifacts are told to use coremltools' comparator on macOS.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgehmr.artifact import parts, read_metadata
from edgehmr.converters.capabilities import get_target
from edgehmr.errors import InputError, SpecError
from edgehmr.reference import load_bundle

# ops whose outputs are the same tensor requantized or retyped: looked through to the float tensor behind
ONNX_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Cast")
OPENVINO_PASS_THROUGH = ("FakeQuantize", "Convert")
OPENVINO_NOT_LAYERS = ("Parameter", "Constant", "Result") + OPENVINO_PASS_THROUGH
OWN_OUTPUT = "output:"  # prefix of the model's own outputs in a probe's results (no op is named so)
PROBE_GAP_FLOOR = 1e-3


@dataclass
class LayerDrift:
    tensor: str
    op: str
    node: str
    rel_l2: float
    added: float
    order: int  # position in the graph (topological)


@dataclass
class GraphTensor:
    """One intermediate tensor the artifact and the FP32 graph share, and the float tensors it was computed from."""

    name: str
    op: str
    node: str
    inputs: list[str]


def rank(tensors: list[GraphTensor], got: dict[str, np.ndarray], want: dict[str, np.ndarray],
         top: int) -> list[LayerDrift]:
    """Relative L2 error per shared tensor (graph order) and the part of it each layer added."""
    errors: dict[str, float] = {}
    layers = []
    for i, t in enumerate(tensors):
        a, r = got.get(t.name), want.get(t.name)
        if a is None or r is None or a.shape != r.shape or not np.issubdtype(r.dtype, np.floating):
            continue
        a, r = a.astype(np.float64), r.astype(np.float64)
        err = float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-12))
        errors[t.name] = err
        inherited = max((errors.get(n, 0.0) for n in t.inputs), default=0.0)
        layers.append(LayerDrift(t.name, t.op, t.node, err, err - inherited, i))
    return sorted(layers, key=lambda layer: -layer.added)[:top]


# ONNX Runtime (targets onnx, tensorrt)

def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _float_inputs_of(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]) -> list[str]:
    """The tensors a node computes from, looking through quantize/dequantize pairs to the float tensor behind."""
    found = []
    for name in node.input:
        seen = 0
        while name in producers and producers[name].op_type in ONNX_PASS_THROUGH and seen < 4:
            name, seen = producers[name].input[0], seen + 1
        found.append(name)
    return found


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``names``, typed by ONNX shape inference."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    typed = {v.name: v for v in onnx.shape_inference.infer_shapes(copy).graph.value_info}
    have = {o.name for o in copy.graph.output}
    copy.graph.output.extend(typed[n] for n in names if n not in have and n in typed)
    return copy


def _onnx_probe(model: onnx.ModelProto, names: list[str], path: Path):
    """A function running ``model`` with every tensor in ``names`` exposed; the session is built once."""
    import onnxruntime as ort

    onnx.save(_with_outputs(model, names), str(path), save_as_external_data=True, location=path.name + ".data")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as named
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    return lambda feeds: dict(zip(wanted, session.run(wanted, feeds)))


def onnx_tensors(model: onnx.ModelProto, reference: onnx.ModelProto) -> list[GraphTensor]:
    producers = _producers(model)
    ref_names = {out for node in reference.graph.node for out in node.output}
    return [GraphTensor(out, node.op_type, node.name, _float_inputs_of(node, producers))
            for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
            for out in node.output if out in ref_names]


def _reference_job(meta: dict):
    """The export job of the model and weights the artifact was converted from (checkpoint hash checked), FP32."""
    import torch

    from edgehmr.artifact import CROP_PART
    from edgehmr.converters.base import ExportJob
    from edgehmr.converters.capabilities import Precision
    from edgehmr.rebuild import simulation_module

    module = simulation_module(meta, CROP_PART)
    example = tuple(torch.zeros(i["shape"]) for i in meta["inputs"])
    return ExportJob.single(module, example, [i["name"] for i in meta["inputs"]],
                            [o["name"] for o in meta["outputs"]], Precision.fp32, meta["model"]["model"])


def reference_onnx(meta: dict) -> onnx.ModelProto:
    """FP32 ONNX of the model and weights the artifact was converted from."""
    from edgehmr.converters.onnx import torch2onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = torch2onnx(_reference_job(meta), Path(tmp) / "reference.onnx")
        return onnx.load(str(path))


def onnx_layer_drift(artifact_dir: Path, meta: dict,
                     batches: list[dict[str, np.ndarray]]) -> tuple[str, list[LayerDrift]]:
    """Shared float tensors of the artifact's ONNX and the FP32 export, ranked by the error each layer added."""
    model = onnx.load(str(artifact_dir / meta["files"]["model"]))
    reference = reference_onnx(meta)
    tensors = onnx_tensors(model, reference)
    names = [t.name for t in tensors]
    with tempfile.TemporaryDirectory() as tmp:
        run, run_reference = (_onnx_probe(m, names, Path(tmp) / f"{label}.onnx")
                              for m, label in ((model, "artifact"), (reference, "reference")))
        return "", worst_per_layer([rank(tensors, run(feeds), run_reference(feeds), top=len(tensors))
                                    for feeds in batches])


def worst_per_layer(per_batch: list[list[LayerDrift]]) -> list[LayerDrift]:
    """One entry per layer, the one where it added the most error, ranked."""
    merged: dict[str, LayerDrift] = {}
    for layers in per_batch:
        for layer in layers:
            if layer.tensor not in merged or layer.added > merged[layer.tensor].added:
                merged[layer.tensor] = layer
    return sorted(merged.values(), key=lambda layer: -layer.added)


# OpenVINO

def _output_key(port) -> str:
    node = port.get_node()
    return node.get_friendly_name() if node.get_output_size() == 1 else f"{node.get_friendly_name()}:{port.get_index()}"


def _float_source(port, ref_names: set[str]) -> str:
    """The layer output a value comes from, looking through FakeQuantize/Convert and through ops the FP32 graph
    does not have (NNCF's smooth-quant scales, weight decompression) to the float tensor behind."""
    for _ in range(8):
        node = port.get_node()
        if node.get_type_name() in OPENVINO_PASS_THROUGH:
            port = node.input_value(0)
        elif node.get_friendly_name() not in ref_names and node.get_type_name() not in OPENVINO_NOT_LAYERS:
            varying = [node.input_value(i) for i in range(node.get_input_size())
                       if node.input_value(i).get_node().get_type_name() != "Constant"]
            if not varying:
                break
            port = varying[0]
        else:
            break
    return _output_key(port)


def openvino_tensors(model, reference) -> list[GraphTensor]:
    ref_names = {op.get_friendly_name() for op in reference.get_ordered_ops()}
    tensors = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in OPENVINO_NOT_LAYERS or op.get_friendly_name() not in ref_names:
            continue
        inputs = [_float_source(op.input_value(i), ref_names) for i in range(op.get_input_size())]
        for port in op.outputs():
            if port.get_element_type().is_real():
                tensors.append(GraphTensor(_output_key(port), op.get_type_name(), op.get_friendly_name(), inputs))
    return tensors


def _openvino_probe(model, config: dict, names: set[str]):
    """A function running ``model`` with every op output named in ``names`` added as a model output (on a clone:
    ``add_outputs`` changes the model in place); compiled once. The model's own outputs come back too, under
    ``OWN_OUTPUT`` + their names."""
    import openvino as ov

    probe = model.clone()
    own = [port.get_any_name() for port in probe.outputs]
    ports = [port for op in probe.get_ordered_ops() if op.get_type_name() not in OPENVINO_NOT_LAYERS
             for port in op.outputs() if _output_key(port) in names]
    keys = [_output_key(port) for port in ports]
    added = probe.add_outputs(ports)
    compiled = ov.Core().compile_model(probe, "CPU", config)
    request = compiled.create_infer_request()
    index = {p.get_any_name(): i for i, p in enumerate(compiled.outputs)}
    found = [(key, compiled.outputs[index[port.get_any_name()]]) for key, port in zip(keys, added)
             if port.get_any_name() in index]
    found += [(OWN_OUTPUT + name, compiled.outputs[index[name]]) for name in own if name in index]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = request.infer(feeds)
        return {key: np.array(result[port], copy=True) for key, port in found}

    return run


def probe_config(runtime_config: dict | None) -> dict:
    """The artifact's CPU settings for the probe, except ``SNIPPETS_MODE=DISABLE``.

    reason: with snippets disabled and op outputs added as model outputs, OpenVINO 2026.4's CPU plugin computed
    an NNCF INT8 GroupMixFormer wrongly: some exposed tensors read as zeros and the model's own output was 0.99
    (relative L2) away from the artifact's run. With snippets on, the probe's outputs are repeatable and within
    ~1e-2 of the artifact's run (the snippets discrepancy the artifact disables them for);
    :func:`probe_gap` measures that on every run and the method line reports it.
    """
    from edgehmr.targets.openvino import compile_config

    return {k: v for k, v in compile_config(runtime_config, None).items() if k != "SNIPPETS_MODE"}


def probe_gap(probed: dict[str, np.ndarray], reference: dict[str, np.ndarray],
              artifact_outputs: dict[str, np.ndarray]) -> float:
    """Worst relative L2 gap between the probe's copy of the model outputs and ``artifact_outputs`` (the artifact
    run as ``validate`` runs it). A gap over half the artifact's own drift from FP32 means the per-layer numbers
    would describe another computation: refused."""
    worst = 0.0
    for name, value in artifact_outputs.items():
        got, fp32 = probed.get(OWN_OUTPUT + name), reference.get(OWN_OUTPUT + name)
        if got is None or fp32 is None:
            continue
        gap = _rel_l2(got, value)
        drift = _rel_l2(value, fp32)
        if gap > max(PROBE_GAP_FLOOR, 0.5 * drift):
            raise SpecError(f"debug drift: with every intermediate output exposed, OpenVINO computes output '{name}' "
                            f"{gap:.1e} (relative L2) away from the artifact's own run (whose drift from FP32 is "
                            f"{drift:.1e}), so its per-layer numbers would not describe this artifact; use -t onnx at "
                            f"this precision to locate the drift.")
        worst = max(worst, gap)
    return worst


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-12))


def openvino_layer_drift(artifact_dir: Path, meta: dict,
                         batches: list[dict[str, np.ndarray]]) -> tuple[str, list[LayerDrift]]:
    import openvino as ov

    from edgehmr.converters.openvino import torch2openvino
    from edgehmr.targets.base import open_artifact_runner
    from edgehmr.targets.openvino import compile_config

    model = ov.Core().read_model(str(artifact_dir / meta["files"]["model"]))
    reference, _ = torch2openvino(_reference_job(meta))
    tensors = openvino_tensors(model, reference)
    names = {t.name for t in tensors}
    run = _openvino_probe(model, probe_config(meta.get("target_details", {}).get("runtime_config")), names)
    run_reference = _openvino_probe(reference, compile_config(None, None), names)
    artifact = open_artifact_runner(artifact_dir, meta)
    per_batch, gap = [], 0.0
    for feeds in batches:
        got, want = run(feeds), run_reference(feeds)
        gap = max(gap, probe_gap(got, want, artifact.run(artifact.default_entry, feeds)))
        per_batch.append(rank(tensors, got, want, top=len(tensors)))
    return f"; probe outputs within {gap:.1e} of the artifact's run", worst_per_layer(per_batch)


def executorch_drift(artifact_dir: Path, meta: dict, batches: list[dict[str, np.ndarray]]) -> tuple[str, list]:
    """The ExecuTorch runtime's per-op intermediate outputs (see :mod:`edgehmr.drift_executorch`); the note
    carries how the per-op re-lowering works and how far its outputs are from the artifact's own."""
    from edgehmr.drift_executorch import executorch_layer_drift as per_op

    images = np.concatenate([next(iter(feeds.values())) for feeds in batches])
    return per_op(artifact_dir, meta, images, top=10**6)


# A probe: (artifact folder, metadata, input batches) -> (a note appended to the method line, the layers). Which
# target uses which probe, with what method line, is the capability table's ``drift`` field.
Probe = Callable[[Path, dict, list[dict[str, np.ndarray]]], tuple[str, list[LayerDrift]]]


PROBES: dict[str, Probe] = {"onnxruntime": onnx_layer_drift, "openvino": openvino_layer_drift,
                            "executorch": executorch_drift}


def drift_targets() -> list[str]:
    from edgehmr.converters.capabilities import TARGETS

    return [caps.id for caps in TARGETS.values() if caps.drift]


def debug_drift(artifact_dir: str | Path, bundle_dir: str | Path, samples: int = 4, top: int = 10) -> dict:
    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    drift = get_target(meta["target"]).drift
    if drift is None or len(parts(meta)) > 1:
        raise SpecError(f"debug drift runs {', '.join(drift_targets())} artifacts (not multi-stage SAT-HMR yet). For "
                        f"{meta['target']}: convert the same model with -t onnx or -t openvino at this precision "
                        f"and debug that, or use the vendor tool (coremltools' comparator on macOS).")
    bundle = load_bundle(bundle_dir)
    name = meta["inputs"][0]["name"]
    batch = int(meta["inputs"][0]["shape"][0])
    images = bundle.inputs["image"][:max(batch, min(samples, bundle.count))]
    if len(images) < batch:
        raise InputError(f"the bundle has {len(images)} samples, the artifact takes batches of {batch}.")
    batches = [{name: images[i:i + batch]} for i in range(0, len(images) - batch + 1, batch)]
    method, probe = drift
    note, layers = PROBES[probe](artifact_dir, meta, batches)
    method += note
    return {"artifact": str(artifact_dir), "target": meta["target"], "precision": meta["precision"],
            "samples": batch * len(batches), "method": method, "layers": [asdict(layer) for layer in layers[:top]]}
