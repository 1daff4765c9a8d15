"""``edgehmr debug drift``: where a quantized or reduced-precision graph first departs from FP32, layer by layer.

ONNX-based artifacts (targets onnx and tensorrt): the artifact's graph and an FP32 export of the same model and
weights (rebuilt from the checkpoint the artifact records, its hash checked) run in ONNX Runtime on the reference
bundle's inputs, with every intermediate tensor the two graphs share exposed as an output. Quantization keeps the
float ops' output names (Q/DQ pairs are inserted around them), so shared names are the same layer in both graphs.
For each shared tensor, in graph order:

- ``rel_l2``: its relative L2 error against FP32;
- ``added``: that error minus the largest error among the tensors it was computed from, i.e. the error this
  layer introduced rather than inherited. The ranking is by ``added``: the first layer of a bad chain stands out,
  the ones after it (which only carry the error along) do not.

Other targets say which tool to use instead (their runtimes do not expose intermediate tensors the same way).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgehmr.artifact import read_metadata
from edgehmr.errors import InputError, SpecError
from edgehmr.reference import load_bundle

ONNX_TARGETS = ("onnx", "tensorrt")


@dataclass
class LayerDrift:
    tensor: str
    op: str
    node: str
    rel_l2: float
    added: float
    order: int  # position in the graph (topological)


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _float_inputs_of(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]) -> list[str]:
    """The tensors a node computes from, looking through quantize/dequantize pairs to the float tensor behind."""
    found = []
    for name in node.input:
        seen = 0
        while name in producers and producers[name].op_type in ("QuantizeLinear", "DequantizeLinear", "Cast") \
                and seen < 4:
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


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], names: list[str], workdir: Path) -> dict:
    import onnxruntime as ort

    path = workdir / "probe.onnx"
    onnx.save(_with_outputs(model, names), str(path), save_as_external_data=True, location="probe.onnx.data")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as named
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    return dict(zip(wanted, session.run(wanted, feeds)))


def rank_layers(model: onnx.ModelProto, reference: onnx.ModelProto, feeds: dict[str, np.ndarray],
                top: int = 10) -> list[LayerDrift]:
    """Shared float tensors of two graphs of one model, ranked by the error each layer added."""
    producers = _producers(model)
    ref_names = {out for node in reference.graph.node for out in node.output}
    order = [out for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
             for out in node.output if out in ref_names]
    with tempfile.TemporaryDirectory() as tmp:
        got = _run(model, feeds, order, Path(tmp))
        want = _run(reference, feeds, order, Path(tmp))
    errors: dict[str, float] = {}
    layers = []
    for i, name in enumerate(order):
        if name not in got or name not in want or got[name].shape != want[name].shape:
            continue
        a, r = got[name].astype(np.float64), want[name].astype(np.float64)
        if not np.issubdtype(want[name].dtype, np.floating):
            continue
        err = float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-12))
        errors[name] = err
        node = producers[name]
        inherited = max((errors.get(n, 0.0) for n in _float_inputs_of(node, producers)), default=0.0)
        layers.append(LayerDrift(name, node.op_type, node.name, err, err - inherited, i))
    return sorted(layers, key=lambda layer: -layer.added)[:top]


def reference_onnx(meta: dict) -> onnx.ModelProto:
    """FP32 ONNX of the model and weights the artifact was converted from (checkpoint hash checked)."""
    import torch

    from edgehmr.converters.base import ExportJob
    from edgehmr.converters.capabilities import Precision
    from edgehmr.converters.onnx import torch2onnx
    from edgehmr.targets.coreml import rebuild_module

    module = rebuild_module(meta)
    example = tuple(torch.zeros(i["shape"]) for i in meta["inputs"])
    job = ExportJob(module, example, [i["name"] for i in meta["inputs"]], [o["name"] for o in meta["outputs"]],
                    Precision.fp32, meta["model"]["model"])
    with tempfile.TemporaryDirectory() as tmp:
        path = torch2onnx(job, Path(tmp) / "reference.onnx")
        return onnx.load(str(path))


def debug_drift(artifact_dir: str | Path, bundle_dir: str | Path, samples: int = 4, top: int = 10) -> dict:
    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    if meta["target"] not in ONNX_TARGETS or "stages" in meta:
        raise SpecError(f"debug drift reads ONNX graphs (targets {', '.join(ONNX_TARGETS)}; not multi-stage "
                        f"SAT-HMR yet). For {meta['target']}: convert the same model with -t onnx at this precision "
                        f"and debug that, or use the vendor tool (ExecuTorch Inspector, OpenVINO intermediate "
                        f"outputs, coremltools' comparator on macOS).")
    bundle = load_bundle(bundle_dir)
    name = meta["inputs"][0]["name"]
    batch = int(meta["inputs"][0]["shape"][0])
    images = bundle.inputs["image"][:max(batch, min(samples, bundle.count))]
    if len(images) < batch:
        raise InputError(f"the bundle has {len(images)} samples, the artifact takes batches of {batch}.")
    model = onnx.load(str(artifact_dir / meta["files"]["model"]))
    reference = reference_onnx(meta)
    per_batch = [rank_layers(model, reference, {name: images[i:i + batch]}, top=len(model.graph.node))
                 for i in range(0, len(images) - batch + 1, batch)]
    merged: dict[str, LayerDrift] = {}
    for layers in per_batch:  # worst case over the samples, per layer
        for layer in layers:
            if layer.tensor not in merged or layer.added > merged[layer.tensor].added:
                merged[layer.tensor] = layer
    ranked = sorted(merged.values(), key=lambda layer: -layer.added)[:top]
    return {"artifact": str(artifact_dir), "target": meta["target"], "precision": meta["precision"],
            "samples": len(images), "method": "ONNX Runtime, every shared intermediate tensor vs the FP32 export",
            "layers": [asdict(layer) for layer in ranked]}
