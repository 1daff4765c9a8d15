"""ONNX target end to end: convert -> run with ONNX Runtime -> compare with FP32 PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from edgehmr.convert import convert
from edgehmr.errors import ConversionError, InputError
from edgehmr.reference import load_bundle
from edgehmr.spec import resolve_spec
from edgehmr.artifact import read_metadata
from edgehmr.targets.base import open_artifact_runner
from edgehmr.validate import validate
from model_helpers import HMR, POSE, family, slow

MODELS = [HMR, POSE, *slow("hmr2-vit-s", "vitpose-s")]


@pytest.mark.parametrize("name", MODELS)
def test_fp32_matches_pytorch_within_1e4(name, artifact, bundle, loaded_models):
    path = artifact(name, "fp32")
    ref = load_bundle(bundle(name))
    runner = open_artifact_runner(path, read_metadata(path))
    loaded = loaded_models(name)
    for i in range(ref.count):  # ONNX Runtime against PyTorch directly, not through validate
        x = ref.inputs["image"][i:i + 1]
        got = runner.run(runner.default_entry, {"image": x})
        with torch.no_grad():
            want = loaded.module(torch.from_numpy(x))
        for out_name, w in zip(loaded.info.output_names, want):
            w = w.numpy()
            rel = np.linalg.norm(got[out_name] - w) / np.linalg.norm(w)
            assert rel < 1e-4, (out_name, rel)
    report = validate(path, bundle(name))
    assert report.passed, report.to_json()
    assert max(o["rel_l2"] for o in report.outputs.values()) < 1e-4
    assert all(t["value"] < 0.05 for t in report.task.values() if t["unit"] in ("mm", "px"))


@pytest.mark.parametrize("name", MODELS)
def test_fp16_within_documented_tolerance(name, artifact, bundle):
    path = artifact(name, "fp16")
    model = onnx.load(str(path / "model.onnx"))
    dtypes = {init.data_type for init in model.graph.initializer if len(init.dims) >= 2}
    assert onnx.TensorProto.FLOAT16 in dtypes  # weights really are half precision
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O for apps
    report = validate(path, bundle(name))
    assert report.passed, report.to_json()
    worst = max(o["rel_l2"] for o in report.outputs.values())
    assert 1e-5 < worst < 2e-2  # fp16 drift is present and bounded
    metric = "mpjpe_mm" if family(name) == "hmr2" else "kp2d_px"
    assert report.task[metric]["value"] > 0
    # The per-joint drift breaks the task metric down: its mean over joints is the metric itself.
    joints = report.per_joint
    assert len(joints["names"]) == (24 if family(name) == "hmr2" else 17)
    assert sum(joints["mean"]) / len(joints["mean"]) == pytest.approx(report.task[metric]["value"], rel=1e-9)
    saved = json.loads((path / "validation.json").read_text())
    assert saved["passed"] and saved["precision"] == "fp16"


def test_mesh_artifact_outputs_vertices(artifact, bundle):
    path = artifact(HMR, "fp32", with_mesh=True)
    meta = json.loads((path / "metadata.json").read_text())
    assert [o["name"] for o in meta["outputs"]][-2:] == ["vertices", "joints"]
    assert meta["outputs"][-2]["shape"] == [1, 6890, 3]
    report = validate(path, bundle(HMR))
    assert report.outputs["vertices"]["rel_l2"] < 1e-4 and report.passed


def test_metadata_records_what_apps_need(artifact):
    meta = json.loads((artifact(HMR, "fp32") / "metadata.json").read_text())
    assert meta["model"]["weights"] == "untrained" and len(meta["model"]["weights_sha256"]) == 64
    assert meta["preprocessing"]["name"] == "hmr2" and meta["preprocessing"]["input_hw"] == [256, 192]
    assert meta["inputs"] == [{"name": "image", "shape": [1, 3, 256, 192], "dtype": "float32",
                               "meaning": "person crop, see preprocessing"}]
    assert meta["postprocessing"]["camera"]["focal_length_px"] == 5000.0
    assert "onnxruntime" in meta["environment"]["versions"]


def test_bundle_from_other_model_is_refused(artifact, bundle):
    with pytest.raises(InputError, match=f"was made from {POSE}"):
        validate(artifact(HMR, "fp32"), bundle(POSE))


def test_drift_beyond_tolerance_fails(artifact, bundle, tmp_path):
    src = bundle(HMR)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for f in ("bundle.json", "inputs.npz"):
        (tampered / f).write_bytes((src / f).read_bytes())
    with np.load(src / "outputs.npz") as z:
        outs = {k: z[k] for k in z.files}
    outs["betas"] = outs["betas"] + 0.05  # a shape change the artifact does not reproduce
    np.savez(tampered / "outputs.npz", **outs)
    report = validate(artifact(HMR, "fp32"), tampered)
    assert not report.passed
    assert not report.outputs["betas"]["ok"] and report.outputs["pred_cam"]["ok"]


def test_failed_conversion_leaves_nothing(tmp_path, loaded_models, monkeypatch):
    import edgehmr.converters.onnx as onnx_converter

    def broken(job, out_path, dynamic_shapes=None):
        out_path.write_bytes(b"half-written")
        raise ConversionError("ONNX export of hmr2-vit-s failed: simulated")

    monkeypatch.setattr(onnx_converter, "torch2onnx", broken)
    spec = resolve_spec(HMR, "onnx", "fp32", out_dir=str(tmp_path))
    with pytest.raises(ConversionError):
        convert(spec, loaded_models(HMR))
    assert list(tmp_path.iterdir()) == []
