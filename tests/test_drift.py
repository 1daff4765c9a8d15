"""``edgehmr debug drift``: a layer deliberately degraded in an otherwise FP32 graph is ranked first."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgehmr.drift import debug_drift
from edgehmr.errors import SpecError


def _degrade_one_matmul(src, dst, index: int) -> str:
    """Copy an artifact whose ONNX has the weights of its ``index``-th MatMul rounded to a coarse grid (as if that
    one layer ran in ~3-bit precision); returns the MatMul's output tensor name."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    path = dst / meta["files"]["model"]
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and any(x in inits for x in n.input)]
    node = matmuls[index]
    weight = inits[next(x for x in node.input if x in inits)]
    w = numpy_helper.to_array(weight)
    step = np.abs(w).max() / 3
    weight.CopyFrom(numpy_helper.from_array((np.round(w / step) * step).astype(w.dtype), weight.name))
    onnx.save(model, str(path))
    return node.output[0]


def test_injected_low_precision_layer_is_ranked_first(artifact, bundle, tmp_path):
    src = artifact("hmr2-vit-s")
    degraded = _degrade_one_matmul(src, tmp_path / "degraded", index=20)
    result = debug_drift(tmp_path / "degraded", bundle("hmr2-vit-s"), samples=2, top=5)
    layers = result["layers"]
    assert layers[0]["tensor"] == degraded and layers[0]["op"] == "MatMul"
    assert layers[0]["added"] > 2 * layers[1]["added"]  # layers after it mostly carry the error along


def test_untouched_fp32_artifact_adds_no_drift(artifact, bundle):
    result = debug_drift(artifact("hmr2-vit-s"), bundle("hmr2-vit-s"), samples=1, top=3)
    assert result["layers"][0]["rel_l2"] < 1e-5


def test_other_targets_are_told_what_to_use(artifact, bundle):
    with pytest.raises(SpecError, match="ExecuTorch Inspector"):
        debug_drift(artifact("hmr2-vit-s", target="openvino"), bundle("hmr2-vit-s"))


def test_cli_lists_the_layers(artifact, bundle, capsys):
    from edgehmr.cli import main

    code = main(["debug", "drift", str(artifact("hmr2-vit-s")), "-r", str(bundle("hmr2-vit-s")), "--samples", "1",
                 "--top", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and len(result["layers"]) == 2
