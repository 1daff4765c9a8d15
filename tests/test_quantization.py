"""INT8 and FP16 on ONNX Runtime and OpenVINO: artifacts really are quantized, the recipe is honoured, and
validate passes within the documented tolerances."""

from __future__ import annotations

import json

import onnx
import openvino as ov
import pytest

from edgehmr.converters.onnx_quant import is_activation_matmul, node_scope
from edgehmr.models import get_model_info
from edgehmr.validate import validate
from model_helpers import HMR, POSE, hmr2_depths, slow

TARGETS = ["onnx", "openvino"]


def _meta(path):
    return json.loads((path / "metadata.json").read_text())


@pytest.mark.parametrize("name", [HMR, *slow("hmr2-vit-s")])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("precision", ["int8", "int8-weights", "fp16"])
def test_validate_passes(name, target, precision, artifact, bundle):
    path = artifact(name, precision, target=target)
    report = validate(path, bundle(name))
    assert report.passed, json.dumps(report.to_json(), indent=1)
    assert report.task["mpjpe_mm"]["value"] > 0  # a lossy scheme shows drift


def test_onnx_int8_is_qdq_and_keeps_the_recipe_float(artifact):
    path = artifact(HMR, "int8")
    blocks, layers = hmr2_depths(HMR)
    meta = _meta(path)
    model = onnx.load(str(path / "model.onnx"))
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    quantized = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")
                 and any(i in dq_outputs for i in n.input)]
    # Each block's qkv, proj, fc1, fc2, plus each decoder layer's to_kv (ViT-S: 48 + 6); the patch conv, heads,
    # single-query linears and attention's activation matmuls (ONNX Runtime's layout) stay float.
    assert len(quantized) == meta["parts"]["model"]["details"]["quantized_compute_ops"] == 4 * blocks + layers
    inits = {i.name for i in model.graph.initializer}
    weight_dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    assert all(set(n.input) & weight_dq for n in quantized)
    assert {n.name for n in model.graph.node if is_activation_matmul(n, inits | weight_dq)} <= set(
        meta["parts"]["model"]["details"]["kept_float_nodes"])
    scopes = {node_scope(n) for n in quantized}
    assert not any(s.startswith(("smpl_head.dec", "backbone.patch_embed")) for s in scopes)
    assert not any(".fn.to_q" in s or ".2.fn.net" in s for s in scopes)
    assert any(s.endswith(".fn.to_kv") for s in scopes)
    weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert len(weights) >= 4 * blocks + layers  # weights are stored as int8
    assert meta["quantization"]["calibration"]["samples"] == 32


def test_onnx_int8_fuses_into_onnxruntime_int8_kernels(artifact, tmp_path):
    """The layout is what ONNX Runtime's CPU kernels want: after its own graph optimisation every quantized matmul
    is an INT8 kernel (no INT8 weight dequantized into a float MatMul on every run, as a shared Q/DQ pair caused),
    softmax stays float (no QLinearSoftmax, which a quantized probs @ V matmul caused), activations are UINT8."""
    import onnxruntime as ort

    path = artifact(HMR, "int8")
    blocks, layers = hmr2_depths(HMR)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QLinearMatMul") + ops.count("QGemm") == 4 * blocks + layers
    assert "QLinearSoftmax" not in ops
    inits = {i.name: i for i in graph.initializer}
    weight_dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    assert not [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and set(n.input) & weight_dq]
    model = onnx.load(str(path / "model.onnx"))
    zero_points = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_zero_point")]
    assert {z.dtype.name for z in zero_points} == {"uint8", "int8"}  # UINT8 activations, INT8 weights


def test_onnx_int8_weights_uses_matmulnbits(artifact):
    meta = _meta(artifact(HMR, "int8-weights"))
    blocks, layers = hmr2_depths(HMR)
    assert meta["parts"]["model"]["details"]["matmul_nbits"] == 4 * blocks + layers  # backbone linears + decoder to_kv
    assert meta["quantization"]["calibration"] is None


def test_openvino_int8_has_fake_quantize_and_ignored_scope(artifact):
    path = artifact(HMR, "int8", target="openvino")
    blocks, layers = hmr2_depths(HMR)
    meta = _meta(path)
    model = ov.Core().read_model(str(path / "model.xml"))
    fq = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fq) == meta["parts"]["model"]["details"]["fake_quantize"] > 4 * blocks + layers
    kept = meta["parts"]["model"]["kept_fp32_ops"]
    # decpose: the linear after every block's 4 and every decoder layer's 7 (ViT-S: linear_90)
    assert any(name.startswith(f"linear_{4 * blocks + 7 * layers}/") for name in kept)
    assert meta["parts"]["model"]["details"]["runtime_config"]["INFERENCE_PRECISION_HINT"] == "f32"


@pytest.mark.parametrize("name", [HMR, *slow("hmr2-vit-s")])
def test_openvino_fp32_matches_pytorch(name, artifact, bundle):
    report = validate(artifact(name, "fp32", target="openvino"), bundle(name))
    assert report.passed and max(o["rel_l2"] for o in report.outputs.values()) < 1e-5


def test_recipe_override_changes_the_artifact(tmp_path, loaded_models):
    from edgehmr.convert import convert
    from edgehmr.spec import resolve_spec

    blocks = len(get_model_info(POSE).build().backbone.blocks)
    spec = resolve_spec(POSE, "onnx", "int8", out_dir=str(tmp_path), calib="synthetic", calib_count=8,
                        keep_float=("attention_matmul", f"backbone.blocks.{blocks - 1}"))
    meta = _meta(convert(spec, loaded_models(POSE)))
    kept = meta["parts"]["model"]["kept_fp32_ops"]
    # every block's 2 attention matmuls + the last block's four linears + the final heatmap conv + the patch conv
    assert len(kept) == 2 * blocks + 4 + 1 + 1
    assert meta["quantization"]["recipe"]["keep_float_ops"] == ["softmax", "layernorm", "attention_matmul"]
