"""ONNX INT8 helpers: which nodes stay float, TensorRT's Q/DQ layout, 8-bit weight-only MatMulNBits, counts.

``int8`` (W8A8, :func:`edgehmr.converters.onnx.onnx2int8_qdq`): per-channel symmetric INT8 weights, per-tensor
activations, MinMax calibration, quantizing MatMul/Gemm/Conv only, so LayerNorm, Softmax and residual adds stay
float by construction. The recipe decides which layers are INT8; a :class:`QdqLayout` per runtime decides how the
Q/DQ graph is laid out so that runtime fuses it into its INT8 kernels (ONNX Runtime's CPU kernels and TensorRT's
explicit quantization want different graphs). The recipe's kept-float scopes become ``nodes_to_exclude`` through
the exporter's ``pkg.torch.onnx.name_scopes`` node metadata.

``int8-weights``: MatMul weights stored as 8-bit blocks (``MatMulNBits``), activations float.
"""

from __future__ import annotations

import ast
import contextlib
import logging
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class QdqLayout:
    """How one runtime wants its INT8 Q/DQ graph: activation type, which matmuls stay float, quantizer options."""
    activations: str  # "uint8" (asymmetric) or "int8" (symmetric)
    float_activation_matmuls: bool  # attention's activation x activation matmuls (and so softmax) stay float
    quantizer_options: dict = field(default_factory=dict)
    scheme: str = ""

    @property
    def activation_symmetric(self) -> bool:
        return self.activations == "int8"


# Measured on hmr2-vit-s (seeded weights, 32 synthetic calibration crops, 2 threads, bench/onnx_op_profile.py and
# alternating timing; an Intel Xeon with VNNI and AMX; FP32 97 ms; docs/targets.md has the table):
# - int8 activations, attention matmuls INT8 (the old layout): 85 ms, worst output rel L2 1.2e-2. ONNX Runtime ran
#   softmax as QLinearSoftmax (13.5 ms against 2.2 ms float in an earlier profile on an AMD EPYC) because the
#   probs @ V matmul was quantized, and the decoder's six context projections as float MatMuls on dequantized
#   INT8 weights: the six shared one Q/DQ pair on the context, and ONNX Runtime fuses a DQ -> MatMul -> Q group
#   only when the DQ feeds that one node.
# - a dedicated Q/DQ pair per consumer and attention matmuls float: 74 ms, 8.1e-3.
# - and uint8 activations: 65 ms (1.5x FP32), 6.4e-3. U8S8 is ONNX Runtime's fast INT8 GEMM on x86 (on AVX2
#   without VNNI it multiplies with vpmaddubsw, whose int16 pair sums can saturate; 7-bit weights, ONNX Runtime's
#   reduce_range, avoid that but doubled the error here: 1.4e-2).
# - Weights pre-fused into Gemm (MatMul + bias, QGemm) or float MatMul outputs (MatMulIntegerToFloat) were slower.
ONNXRUNTIME_LAYOUT = QdqLayout(
    "uint8", float_activation_matmuls=True, quantizer_options={"DedicatedQDQPair": True},
    scheme="W8A8 static QDQ for ONNX Runtime: per-channel symmetric INT8 weights, per-tensor asymmetric UINT8 "
           "activations, MinMax; attention's activation matmuls and softmax float")
# TensorRT's explicit-quantization conventions: symmetric INT8 activations (zero points must be 0), weights float
# behind their own Q->DQ pair (TensorRT quantizes them at build time, as ModelOpt's ONNX PTQ writes them), biases
# float (folded into the INT8 kernels' epilogue), per-channel MatMul weights on the output axis.
TENSORRT_LAYOUT = QdqLayout(
    "int8", float_activation_matmuls=False,
    quantizer_options={"AddQDQPairToWeight": True, "QuantizeBias": False,
                       "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}},
    scheme="W8A8 static QDQ for TensorRT: symmetric, per-channel weights, per-tensor activations, MinMax; "
           "float weights behind Q/DQ pairs, float biases")


def nodes_kept_float(model: onnx.ModelProto, recipe: QuantRecipe, float_activation_matmuls: bool = False) -> list[str]:
    """Names of the quantizable nodes that stay float: the recipe's scopes, plus activation x activation matmuls
    when the recipe or the runtime's layout keeps them float."""
    inits = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    float_activation_matmuls = float_activation_matmuls or "attention_matmul" in recipe.keep_float_ops
    kept = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OP_TYPES:
            continue
        if recipe.covers(node_scope(node)):
            kept.append(node.name)
        elif float_activation_matmuls and is_activation_matmul(node, inits | constants):
            kept.append(node.name)
    return kept


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
