"""TensorRT target: Q/DQ and FP16 ONNX validated in simulation here; engine build and run where TensorRT exists."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgehmr.cli import main
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.tensorrt_engine import can_build_here
from edgehmr.converters.tensorrt_onnx import check_tensorrt_onnx, qdq_summary
from edgehmr.validate import validate
from model_helpers import hmr2_depths


def _metadata(path):
    return json.loads((path / "metadata.json").read_text())


def test_int8_writes_explicit_qdq_onnx_that_passes_simulated_validation(artifact, bundle, loaded_models):
    path = artifact("test-hmr2", "int8", target="tensorrt")
    blocks, layers = hmr2_depths("test-hmr2")
    meta = _metadata(path)
    model = onnx.load(str(path / "model.onnx"))
    counts = qdq_summary(model)  # recounted from the file, compared with what the metadata claims
    assert meta["parts"]["model"]["details"]["qdq"] == counts
    assert counts["quantize_linear"] == counts["dequantize_linear"] > 0
    # The linears outside the recipe (4 per block, each decoder layer's to_kv: 54 for hmr2-vit-s), each with its
    # float weight behind a per-channel Q->DQ pair.
    assert counts["weight_qdq_pairs"] == counts["per_channel_quantize"] == 4 * blocks + layers
    inits = {i.name: i for i in model.graph.initializer}
    weight_inputs = [inits[n.input[0]] for n in model.graph.node
                     if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    assert len(weight_inputs) == 4 * blocks + layers
    assert all(w.data_type == TensorProto.FLOAT for w in weight_inputs)  # float weights
    assert check_tensorrt_onnx(model) == []
    assert "--stronglyTyped" in (path / "build_engine.sh").read_text()
    report = validate(path, bundle("test-hmr2"))
    assert report.passed
    if not can_build_here():
        assert report.execution.startswith("simulated INT8")
    # the Q/DQ graph ran, not a float one (which drifts ~1e-7; INT8 ~7e-5 on the tiny model)
    assert max(o["rel_l2"] for o in report.outputs.values()) > 1e-5


def test_fp16_onnx_is_float16_inside_and_passes_simulated_validation(artifact, bundle, loaded_models):
    path = artifact("test-hmr2", "fp16", target="tensorrt")
    blocks, layers = hmr2_depths("test-hmr2")
    model = onnx.load(str(path / "model.onnx"))
    halves = sum(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
    assert halves > 6 * blocks + 7 * layers  # every weight and bias of the blocks and decoder layers
    assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in model.graph.input)
    fp16_range = _metadata(path)["parts"]["model"]["details"]["fp16_range"]
    assert 1 < fp16_range["max_abs"] < 65504 and fp16_range["softmax_input_max_abs"] > 0
    report = validate(path, bundle("test-hmr2"))
    assert report.passed and 1e-5 < max(o["rel_l2"] for o in report.outputs.values()) < 2e-2


class _Overflowing(torch.nn.Module):
    def forward(self, x):
        return (x * 1e6,)


def test_fp16_refuses_a_model_whose_activations_overflow_float16():
    from edgehmr.converters.base import ExportJob
    from edgehmr.converters.tensorrt import fp16_range_or_fail
    from edgehmr.errors import ConversionError

    job = ExportJob.single(_Overflowing(), (torch.ones(1, 4),), ["x"], ["y"], Precision.fp16, "toy")
    with pytest.raises(ConversionError, match="in 'mul', beyond float16"):
        fp16_range_or_fail(job)


def _graph(nodes, inits, opset=18, dynamic=False):
    dim = "n" if dynamic else 4
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _qdq(zero_point: int, scale: float = 0.1):
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq0")]
    return _graph(nodes, inits)


def test_structural_check_accepts_symmetric_qdq_and_names_what_tensorrt_rejects():
    assert check_tensorrt_onnx(_qdq(0)) == []
    asymmetric = check_tensorrt_onnx(_qdq(3))
    assert [p.node for p in asymmetric] == ["q0", "dq0"] and "zero point is not 0" in str(asymmetric[0])
    assert "non-positive" in str(check_tensorrt_onnx(_qdq(0, scale=0.0))[0])
    contrib = _graph([helper.make_node("MatMulNBits", ["x"], ["y"], name="mm", domain="com.microsoft")], [])
    assert "contrib op" in str(check_tensorrt_onnx(contrib)[0]) and "'mm'" in str(check_tensorrt_onnx(contrib)[0])
    unique = _graph([helper.make_node("Unique", ["x"], ["y"], name="u")], [])
    assert "not supported by TensorRT" in str(check_tensorrt_onnx(unique)[0])
    assert "opset 21" in str(check_tensorrt_onnx(_graph([], [], opset=21))[0])
    assert "dynamic shape" in str(check_tensorrt_onnx(_graph([], [], dynamic=True))[0])


def test_build_engine_without_tensorrt_is_one_clear_line(artifact, capsys):
    pytest.importorskip("onnxruntime")
    if can_build_here():
        pytest.skip("TensorRT and a GPU are present: the engine tests below run instead")
    path = artifact("test-hmr2", "fp16", target="tensorrt")
    code = main(["build-engine", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "needs TensorRT" in err and "build_engine.sh" in err
    assert not (path / "model.engine").exists()


@pytest.mark.skipif(not can_build_here(), reason="TensorRT engines need TensorRT and an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_runs_and_validates_on_the_device(artifact, bundle, precision):
    path = artifact("test-hmr2", precision, target="tensorrt")
    assert main(["build-engine", str(path)]) == 0
    meta = _metadata(path)
    assert (path / "model.engine").stat().st_size > 1e6 and meta["parts"]["model"]["details"]["engine"]["tensorrt"]
    report = validate(path, bundle("test-hmr2"))
    assert report.execution == "TensorRT engine (GPU)"
    assert report.passed


@pytest.mark.skipif(not can_build_here(), reason="TensorRT engines need TensorRT and an NVIDIA GPU")
def test_engine_from_another_tensorrt_version_is_refused(artifact, tmp_path):
    from edgehmr.errors import InputError
    from edgehmr.targets.tensorrt import TensorRTRunner

    path = artifact("test-hmr2", "fp16", target="tensorrt")
    assert main(["build-engine", str(path)]) == 0
    with pytest.raises(InputError, match="rebuild"):
        TensorRTRunner(path / "model.engine", "0.0.0", ["image"], ["global_orient"])


def test_trtexec_command_matches_precision_and_dla():
    from edgehmr.converters.tensorrt_engine import EngineOptions, trtexec_command

    assert "--noTF32" in trtexec_command(Precision.fp32)
    dla = trtexec_command(Precision.int8, EngineOptions(dla_core=0))
    assert "--useDLACore=0" in dla and "--int8" in dla and "--stronglyTyped" not in dla
