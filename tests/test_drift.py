"""``edgehmr debug drift``: a layer deliberately degraded in an otherwise FP32 graph is ranked first."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgehmr.artifact import file_hashes
from edgehmr.drift import debug_drift
from edgehmr.errors import SpecError
from model_helpers import slow

DEGRADED = 5  # a MatMul in the backbone's second block: several layers after it carry its error along


def _record_hashes(artifact_dir) -> None:
    """Re-record the file hashes of a deliberately edited artifact (otherwise every reader refuses it)."""
    meta = json.loads((artifact_dir / "metadata.json").read_text())
    meta["files_sha256"] = file_hashes(artifact_dir)
    (artifact_dir / "metadata.json").write_text(json.dumps(meta))


def _degrade_one_matmul(src, dst, index: int) -> str:
    """Copy an artifact whose ONNX has the weights of its ``index``-th MatMul rounded to a coarse grid (as if that
    one layer ran in ~3-bit precision); returns the MatMul's output tensor name."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    path = dst / meta["parts"]["model"]["file"]
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and any(x in inits for x in n.input)]
    node = matmuls[index]
    weight = inits[next(x for x in node.input if x in inits)]
    w = numpy_helper.to_array(weight)
    step = np.abs(w).max() / 3
    weight.CopyFrom(numpy_helper.from_array((np.round(w / step) * step).astype(w.dtype), weight.name))
    onnx.save(model, str(path))
    _record_hashes(dst)
    return node.output[0]


def _degrade_one_openvino_matmul(src, dst, index: int) -> str:
    """The same for an OpenVINO IR: the ``index``-th MatMul with constant weights gets them on a ~3-bit grid;
    returns the MatMul's friendly name."""
    import openvino as ov

    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    path = dst / meta["parts"]["model"]["file"]
    model = ov.Core().read_model(str(path))
    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"
               and op.input_value(1).get_node().get_type_name() == "Constant"]
    node = matmuls[index]
    w = node.input_value(1).get_node().get_data()
    step = np.abs(w).max() / 3
    node.input(1).replace_source_output(ov.op.Constant((np.round(w / step) * step).astype(w.dtype)).output(0))
    ov.save_model(model, str(path.with_suffix(".tmp.xml")), compress_to_fp16=False)
    del model
    for suffix in (".xml", ".bin"):
        path.with_suffix(".tmp" + suffix).replace(path.with_suffix(suffix))
    _record_hashes(dst)
    return node.get_friendly_name()


def test_injected_low_precision_layer_is_ranked_first(artifact, bundle, tmp_path):
    src = artifact("test-hmr2")
    degraded = _degrade_one_matmul(src, tmp_path / "degraded", index=DEGRADED)
    result = debug_drift(tmp_path / "degraded", bundle("test-hmr2"), samples=2, top=5)
    layers = result["layers"]
    assert layers[0]["tensor"] == degraded and layers[0]["op"] == "MatMul"
    assert layers[0]["added"] > 2 * layers[1]["added"]  # layers after it mostly carry the error along


def test_untouched_fp32_artifact_adds_no_drift(artifact, bundle):
    result = debug_drift(artifact("test-hmr2"), bundle("test-hmr2"), samples=1, top=3)
    assert result["layers"][0]["rel_l2"] < 1e-5


def test_openvino_runtime_finds_the_injected_layer(artifact, bundle, tmp_path):
    degraded = _degrade_one_openvino_matmul(artifact("test-hmr2", target="openvino"), tmp_path / "degraded",
                                            DEGRADED)
    result = debug_drift(tmp_path / "degraded", bundle("test-hmr2"), samples=1, top=5)
    layers = result["layers"]
    assert result["method"].startswith("OpenVINO")
    assert layers[0]["node"] == degraded and layers[0]["op"] == "MatMul"
    assert layers[0]["added"] > 2 * layers[1]["added"]


def test_openvino_int8_drift_is_inherited_through_nncf_ops(artifact, bundle):
    """NNCF inserts FakeQuantize and smooth-quant scales the FP32 IR lacks; the error a MatMul inherits is read
    through them, so late layers do not all look like fresh sources of drift."""
    result = debug_drift(artifact("test-hmr2", "int8", target="openvino"), bundle("test-hmr2"), samples=1,
                         top=1000)
    matmuls = [layer for layer in result["layers"] if layer["op"] == "MatMul"]
    assert len(matmuls) >= 20 and all(np.isfinite(layer["rel_l2"]) for layer in result["layers"])
    assert sum(layer["added"] < 0.9 * layer["rel_l2"] for layer in matmuls) > len(matmuls) // 2


def test_openvino_probe_in_several_passes_ranks_as_one(artifact, bundle, monkeypatch):
    """A graph whose op outputs exceed the probe's memory budget is probed in passes of that many bytes; the
    errors, and so the ranking, are those of a single pass."""
    import edgehmr.targets.openvino_drift as probe

    path, ref = artifact("test-hmr2", "int8", target="openvino"), bundle("test-hmr2")
    whole = debug_drift(path, ref, samples=2, top=1000, strict=False)
    monkeypatch.setattr(probe, "PROBE_GROUP_BYTES", 200_000)  # test-hmr2's outputs: a few MB per crop
    parted = debug_drift(path, ref, samples=2, top=1000, strict=False)
    passes = int(parted["method"].rsplit(" in ", 1)[1].split()[0])
    assert "passes" not in whole["method"] and passes > 3
    want = {layer["tensor"]: layer["rel_l2"] for layer in whole["layers"]}
    got = {layer["tensor"]: layer["rel_l2"] for layer in parted["layers"]}
    assert got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in want) < 1e-6  # 2e-10 seen: exposing fewer outputs changes nothing
    assert [layer["tensor"] for layer in parted["layers"][:5]] == [layer["tensor"] for layer in whole["layers"][:5]]


def test_probe_groups_cut_in_graph_order_within_the_budget():
    from edgehmr.drift import GraphTensor
    from edgehmr.targets.openvino_drift import probe_groups

    tensors = [GraphTensor(name, "Add", name, []) for name in "abcde"]
    sizes = {"a": 4, "b": 4, "c": 10, "d": 1}  # e: dynamic shape, size unknown
    assert [[t.name for t in g] for g in probe_groups(tensors, sizes, budget=8)] == [["a", "b"], ["c"], ["d", "e"]]
    assert [[t.name for t in g] for g in probe_groups(tensors, sizes, budget=100)] == [list("abcde")]


@pytest.mark.parametrize("name", ["test-hmr2-gmf", *slow("vitpose-gmf-t-s2")])
def test_openvino_int8_probe_reads_what_the_artifact_computes(name, artifact, bundle):
    """With the artifact's SNIPPETS_MODE=DISABLE and every op output exposed, OpenVINO's CPU plugin computed an INT8
    GroupMixFormer wrongly (zeros in the stage-1 patch embedding, heatmaps 0.99 away from the artifact's run), and
    those layers read as 100% drift. The probe runs with snippets on: its copy of the output stays near the
    artifact's run, and debug drift uses it exactly when that gap is under half the artifact's drift from FP32."""
    import openvino as ov

    from edgehmr.drift import reference_onnx
    from edgehmr.reference import load_bundle
    from edgehmr.targets.base import open_artifact_runner
    from edgehmr.targets.openvino_drift import OWN_OUTPUT, _openvino_probe, openvino_tensors, probe_config

    path = artifact(name, "int8", target="openvino")
    meta = json.loads((path / "metadata.json").read_text())
    model = ov.Core().read_model(str(path / meta["parts"]["model"]["file"]))
    feeds = {"image": load_bundle(bundle(name)).inputs["image"][:1]}
    names = {t.name for t in openvino_tensors(model, model)}
    probed = _openvino_probe(model, probe_config(meta["parts"]["model"]["details"].get("runtime_config")), names)(feeds)
    output = meta["outputs"][0]["name"]
    runner = open_artifact_runner(path, meta)
    own = runner.run(runner.default_entry, feeds)[output]
    gap = np.linalg.norm(probed[OWN_OUTPUT + output] - own) / np.linalg.norm(own)
    assert len(names) > 100 and gap < 0.05
    assert all(np.isfinite(v).all() for v in probed.values())
    import onnxruntime as ort

    fp32 = ort.InferenceSession(reference_onnx(meta).SerializeToString()).run([output], feeds)[0]
    drift = np.linalg.norm(own - fp32) / np.linalg.norm(fp32)
    if gap <= 0.5 * drift:
        result = debug_drift(path, bundle(name), samples=1, top=10**6)
        assert max(layer["rel_l2"] for layer in result["layers"]) < 0.9
    else:
        with pytest.raises(SpecError, match="would not describe this artifact"):
            debug_drift(path, bundle(name), samples=1, top=10**6)


def test_openvino_probe_that_disagrees_with_the_artifact_is_refused(artifact, bundle):
    from edgehmr.targets.openvino_drift import OWN_OUTPUT, probe_gap
    from edgehmr.reference import load_bundle
    from edgehmr.targets.base import open_artifact_runner

    path = artifact("test-hmr2", target="openvino")
    meta = json.loads((path / "metadata.json").read_text())
    feeds = {"image": load_bundle(bundle("test-hmr2")).inputs["image"][:1]}
    runner = open_artifact_runner(path, meta)
    outputs = runner.run(runner.default_entry, feeds)
    own = {OWN_OUTPUT + k: v for k, v in outputs.items()}
    assert probe_gap(own, own, outputs) < 1e-6
    off = own | {OWN_OUTPUT + "pred_cam": own[OWN_OUTPUT + "pred_cam"] * 1.01}
    with pytest.raises(SpecError, match="output 'pred_cam'.*would not describe this artifact"):
        probe_gap(off, own, outputs)
    # a 1% gap is tolerated where the artifact itself drifts 5% from FP32 on that output
    drifted = own | {OWN_OUTPUT + "pred_cam": own[OWN_OUTPUT + "pred_cam"] * 1.05}
    assert 0.009 < probe_gap(off, drifted, outputs) < 0.011


def test_other_targets_are_told_what_to_use(artifact, bundle):
    with pytest.raises(SpecError, match="coremltools"):
        debug_drift(artifact("test-hmr2", target="coreml", precision="fp16"), bundle("test-hmr2"))


def test_cli_lists_the_layers(artifact, bundle, capsys):
    from edgehmr.cli import main

    code = main(["debug", "drift", str(artifact("test-hmr2")), "-r", str(bundle("test-hmr2")), "--samples", "1",
                 "--top", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and len(result["layers"]) == 2
