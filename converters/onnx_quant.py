"""ONNX INT8 helpers: which nodes stay float, TensorRT's Q/DQ layout, 8-bit weight-only MatMulNBits, counts.

``int8`` (W8A8, :func:`edgehmr.converters.onnx.onnx2int8_qdq`): symmetric INT8 everywhere (per-channel weights,
per-tensor activations, MinMax calibration), quantizing MatMul/Gemm/Conv only, so LayerNorm, Softmax and
residual adds stay float by construction. This is the explicit-quantization form TensorRT builds from. The
recipe's kept-float scopes become ``nodes_to_exclude`` through the exporter's ``pkg.torch.onnx.name_scopes``
node metadata.

``int8-weights``: MatMul weights stored as 8-bit blocks (``MatMulNBits``), activations float.
"""

from __future__ import annotations

import ast
import contextlib
import logging
from pathlib import Path

import onnx

from edgehmr.calibration.recipes import QuantRecipe

QUANTIZED_OP_TYPES = ["MatMul", "Gemm", "Conv"]
WEIGHT_BLOCK = 32  # MatMulNBits block along K; every hidden size of our models is a multiple of it


def node_scope(node: onnx.NodeProto) -> str:
    """Innermost module path of an exported node (``''`` when the exporter recorded none)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s for s in ast.literal_eval(prop.value) if s]
            # The last entry is the op itself (e.g. 'linear_90'); the one before it is its module.
            return scopes[-2] if len(scopes) >= 2 else ""
    return ""


def is_activation_matmul(node: onnx.NodeProto, initializers: set[str]) -> bool:
    return node.op_type == "MatMul" and not any(i in initializers for i in node.input)


def nodes_kept_float(model: onnx.ModelProto, recipe: QuantRecipe) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    kept = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OP_TYPES:
            continue
        if recipe.covers(node_scope(node)):
            kept.append(node.name)
        elif "attention_matmul" in recipe.keep_float_ops and is_activation_matmul(node, inits | constants):
            kept.append(node.name)
    return kept


# TensorRT's explicit-quantization conventions on top of the shared scheme: weights stay float behind their own
# Q->DQ pair (TensorRT quantizes them at build time, as ModelOpt's ONNX PTQ writes them), biases stay float
# (TensorRT folds them into the INT8 kernels' epilogue), and per-channel MatMul weights use the output axis.
TENSORRT_OPTIONS = {"AddQDQPairToWeight": True, "QuantizeBias": False,
                    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}}


def onnx2int8_weights(src: Path, out_path: Path, recipe: QuantRecipe) -> dict:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    kept = nodes_kept_float(model, recipe)
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=WEIGHT_BLOCK, is_symmetric=True,
                                     nodes_to_exclude=kept, op_types_to_quantize=("MatMul",))
    quantizer.process()
    quantizer.model.save_model_to_file(str(out_path), use_external_data_format=False)
    return {"scheme": f"8-bit weight-only MatMulNBits, symmetric, block {WEIGHT_BLOCK}",
            "kept_float_nodes": kept} | count_quantized(onnx.load(str(out_path)))


@contextlib.contextmanager
def _root_logger_quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def count_quantized(model: onnx.ModelProto) -> dict:
    """How many ops really are quantized: the number every INT8 artifact records and tests check."""
    ops = [n.op_type for n in model.graph.node]
    dq_inputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    quantized_compute = sum(1 for n in model.graph.node
                            if n.op_type in QUANTIZED_OP_TYPES and any(i in dq_inputs for i in n.input))
    return {"quantize_linear": ops.count("QuantizeLinear"), "dequantize_linear": ops.count("DequantizeLinear"),
            "matmul_nbits": ops.count("MatMulNBits"), "quantized_compute_ops": quantized_compute}
