"""``edgehmr debug drift`` on ONNX Runtime (targets onnx and tensorrt, whose Q/DQ ONNX the engine is built from).

ONNX Runtime runs the artifact's graph and an FP32 ONNX export of the same model and weights with every shared
intermediate tensor exposed. Quantization keeps the float ops' output names (Q/DQ pairs are inserted around
them), so shared names are the same layer in both graphs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgehmr.artifact import parts
from edgehmr.converters.onnx_quant import node_scope
from edgehmr.drift import GraphTensor, LayerDrift, rank, reference_onnx, worst_per_layer

# ops whose outputs are the same tensor requantized or retyped: looked through to the float tensor behind
ONNX_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Cast")


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
    # the module scope from the FP32 export: the quantizer's rewritten graph need not keep the node metadata
    ref_scopes = {out: node_scope(node) for node in reference.graph.node for out in node.output}
    return [GraphTensor(out, node.op_type, node.name, _float_inputs_of(node, producers), ref_scopes[out])
            for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
            for out in node.output if out in ref_scopes]


def layer_drift(artifact_dir: Path, meta: dict, batches: list[dict[str, np.ndarray]],
                strict: bool = True) -> tuple[str, list[LayerDrift]]:
    """Shared float tensors of the artifact's ONNX and the FP32 export, ranked by the error each layer added
    (``strict`` has nothing to relax: ONNX Runtime runs the artifact's own graph with its tensors exposed)."""
    model = onnx.load(str(artifact_dir / next(iter(parts(meta).values()))["file"]))
    reference = reference_onnx(meta)
    tensors = onnx_tensors(model, reference)
    names = [t.name for t in tensors]
    with tempfile.TemporaryDirectory() as tmp:
        run, run_reference = (_onnx_probe(m, names, Path(tmp) / f"{label}.onnx")
                              for m, label in ((model, "artifact"), (reference, "reference")))
        return "", worst_per_layer([rank(tensors, run(feeds), run_reference(feeds), top=len(tensors))
                                    for feeds in batches])
