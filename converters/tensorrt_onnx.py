"""Structural check of an ONNX graph against what TensorRT 10.x's ONNX parser accepts, without TensorRT or a GPU.

It cannot replace a real parse on the device (``edgehmr build-engine``), but it catches on any machine what would
stop a build there: opsets outside 9-20, operators the parser does not implement, ONNX Runtime contrib ops, dynamic
input shapes, and Q/DQ nodes TensorRT's explicit quantization rejects (non-INT8 types, non-zero zero points,
non-positive scales). Each problem names the node and its op.

Dynamic input dims are accepted only with optimization profiles that cover them (multi-shape artifacts: one
profile per entry): every profile must give each dynamic input a full shape that keeps its static dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# TensorRT 10.0 parses opsets 9 to 20 (onnx-tensorrt docs/operators.md for 10.x); later 10.x keep that floor.
MIN_OPSET, MAX_OPSET = 9, 20
# Standard-domain operators the TensorRT 10.x ONNX parser does not implement (operators.md, "N" rows). Contrib
# domains (com.microsoft: MatMulNBits, QLinear* fusions, ...) are rejected separately.
UNSUPPORTED_OPS = frozenset({
    "BitShift", "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear", "MatMulInteger",
    "MaxRoiPool", "MaxUnpool", "Multinomial", "NegativeLogLikelihoodLoss", "QLinearConv", "QLinearMatMul",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringNormalizer", "TfIdfVectorizer", "Unique",
})
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Problem:
    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.reason}"


def check_tensorrt_onnx(model: onnx.ModelProto,
                        profiles: list[dict[str, list[int]]] | None = None) -> list[Problem]:
    """Problems TensorRT would hit; ``profiles`` (input name -> shape, one dict per optimization profile) allow
    dynamic input dims they cover."""
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET:
        problems.append(Problem("<model>", "opset",
                                f"opset {opset} is outside TensorRT 10.x's {MIN_OPSET}-{MAX_OPSET}"))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if profiles:
            problems.extend(_check_profiles(inp.name, dims, profiles))
        elif any(not d.HasField("dim_value") for d in dims):
            problems.append(Problem(inp.name, "input", "dynamic shape; artifacts are static-shape (one profile)"))
    constants = _constant_values(model)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(Problem(node.name, f"{node.domain}.{node.op_type}",
                                    "ONNX Runtime contrib op; TensorRT has no importer for it"))
        elif node.op_type in UNSUPPORTED_OPS:
            problems.append(Problem(node.name, node.op_type, "not supported by TensorRT's ONNX parser"))
        elif node.op_type in QDQ_OPS:
            problems.extend(_check_qdq(node, constants))
    return problems


def _check_profiles(name: str, dims, profiles: list[dict[str, list[int]]]) -> list[Problem]:
    """Each profile must give a dynamic input a positive shape of its rank that keeps its static dims (a static
    input needs no profile shape, but one given must equal it)."""
    dynamic = any(not d.HasField("dim_value") for d in dims)
    problems = []
    for index, profile in enumerate(profiles):
        shape = profile.get(name)
        if shape is None:
            if dynamic:
                problems.append(Problem(name, "input", f"dynamic shape not covered by optimization profile {index}"))
            continue
        if len(shape) != len(dims):
            problems.append(Problem(name, "input", f"profile {index} gives rank {len(shape)}, input has {len(dims)}"))
            continue
        for axis, (d, size) in enumerate(zip(dims, shape)):
            if d.HasField("dim_value") and d.dim_value != size:
                problems.append(Problem(name, "input", f"profile {index} gives {size} for axis {axis}, which is "
                                                       f"fixed to {d.dim_value}"))
            elif size < 1:
                problems.append(Problem(name, "input", f"profile {index} gives size {size} for axis {axis}"))
    return problems


def _constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _check_qdq(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> list[Problem]:
    """TensorRT's explicit quantization: symmetric (zero point 0) signed INT8 with positive, constant scales."""
    problems = []
    scale = constants.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        problems.append(Problem(node.name, node.op_type, "scale is not a constant"))
    elif not np.all(scale > 0):
        problems.append(Problem(node.name, node.op_type, "scale has non-positive entries"))
    zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero_point is not None:
        if zero_point.dtype != np.int8:
            problems.append(Problem(node.name, node.op_type, f"zero point is {zero_point.dtype}, TensorRT needs int8"))
        elif np.any(zero_point != 0):
            problems.append(Problem(node.name, node.op_type, "zero point is not 0 (TensorRT is symmetric only)"))
    return problems


def qdq_summary(model: onnx.ModelProto) -> dict:
    """Q/DQ counts as the metadata records them: activation vs weight pairs, per-channel vs per-tensor."""
    constants = _constant_values(model)
    weights = {i.name for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    per_channel = sum(1 for n in q if constants.get(n.input[1]) is not None and constants[n.input[1]].size > 1)
    on_weights = sum(1 for n in q if n.input[0] in weights)
    return {"quantize_linear": len(q), "dequantize_linear": len(dq), "weight_qdq_pairs": on_weights,
            "activation_qdq_pairs": len(q) - on_weights, "per_channel_quantize": per_channel}
