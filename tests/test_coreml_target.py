"""Core ML target: the saved program is inspected on Linux (ops, dtypes, I/O), numerics are simulated in torch,
and the macOS prediction path runs where Core ML exists."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgehmr.calibration.recipes import resolve_recipe
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.coreml import (package_bytes, program_summary, torch2coreml,
                                       torch2coreml_multifunction)
from edgehmr.errors import ConversionError
from edgehmr.targets.base import open_artifact_runner
from edgehmr.targets.coreml import can_run_coreml
from edgehmr.validate import validate
from model_helpers import HMR, POSE, called_layers, slow, tiny_vit

pytest.importorskip("coremltools")


def _metadata(path):
    return json.loads((path / "metadata.json").read_text())


@pytest.mark.parametrize("name", [HMR, *slow("hmr2-vit-s")])
def test_default_precision_is_fp16_program_matching_metadata(name, artifact, bundle, loaded_models):
    path = artifact(name, "fp16", target="coreml")
    blocks = len(loaded_models(name).module.backbone.blocks)
    meta = _metadata(path)
    summary = program_summary(path / "model.mlpackage")  # read back from disk, not from the metadata
    # Every compute op of the program produces float16; only the boundary casts touch float32.
    assert summary["compute_dtypes"].get("float16", 0) > 40 * blocks and "float32" not in summary["compute_dtypes"]
    assert summary["ops"]["cast"] >= 1 + len(meta["outputs"])  # float32 input in, float32 outputs out
    assert summary["ops"]["linear"] >= 4 * blocks and summary["ops"]["conv"] == 1
    assert [(i["name"], i["shape"], "float32") for i in meta["inputs"]] == \
        [(i["name"], i["shape"], i["dtype"]) for i in summary["inputs"]]
    assert [(o["name"], o["shape"], "float32") for o in meta["outputs"]] == \
        [(o["name"], o["shape"], o["dtype"]) for o in summary["outputs"]]
    details = meta["parts"]["model"]["details"]
    assert details["compute_precision"] == "float16"
    assert details["minimum_deployment_target"]["ios"] == "iOS15"
    report = validate(path, bundle(name))
    assert report.passed
    if not can_run_coreml():
        assert report.execution.startswith("simulated in torch (float16 compute)")
    # float16 really changes the numbers (the simulation is not the float32 model) but stays within tolerance.
    assert 1e-5 < max(o["rel_l2"] for o in report.outputs.values()) < 2e-2


def test_int8_weights_program_stores_int8_weights_outside_kept_scopes(artifact, bundle, loaded_models):
    path = artifact(HMR, "int8-weights", target="coreml")
    meta = _metadata(path)
    fp16 = artifact(HMR, "fp16", target="coreml")
    summary = program_summary(path / "model.mlpackage")
    kept = [k for k in meta["parts"]["model"]["kept_fp32_ops"] if k.startswith("linear/conv ")]
    # Every backbone block's 4 linears alone are quantized; the recipe's scopes are not.
    assert summary["ops"]["constexpr_affine_dequantize"] >= 4 * len(loaded_models(HMR).module.backbone.blocks)
    assert any("smpl_head.decpose" in k for k in kept) and any("backbone.patch_embed" in k for k in kept)
    assert meta["parts"]["model"]["details"]["minimum_deployment_target"]["ios"] == "iOS16"
    # Each quantized weight drops from 2 bytes (float16) to 1; the kept-float decoder linears stay float16.
    recipe = resolve_recipe("hmr2")
    quantized = sum(m.weight.numel() for n, m in loaded_models(HMR).module.named_modules()
                    if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and not recipe.covers(n))
    expected = package_bytes(fp16 / "model.mlpackage") - quantized
    assert package_bytes(path / "model.mlpackage") == pytest.approx(expected, rel=0.03)
    report = validate(path, bundle(HMR))
    assert report.passed


def test_int8_w8a8_program_quantizes_linear_activations_and_rebuilds_for_validation(artifact, bundle, loaded_models):
    path = artifact(HMR, "int8", target="coreml")
    meta = _metadata(path)
    summary = program_summary(path / "model.mlpackage")
    recipe = resolve_recipe("hmr2")
    layers = [n for n in called_layers(loaded_models(HMR).module, torch.randn(1, 3, 256, 192))
              if not recipe.covers(n)]
    # Every quantized linear/conv has INT8 weights and a quantized input; residual adds, attention matmuls and
    # GELU stay float, so there are far fewer quantize ops than compute ops.
    assert summary["ops"]["constexpr_affine_dequantize"] == len(layers)
    assert len(layers) <= summary["ops"]["quantize"] <= 2 * len(layers)
    assert summary["ops"]["quantize"] == summary["ops"]["dequantize"]
    assert meta["parts"]["model"]["details"]["minimum_deployment_target"]["ios"] == "iOS17"
    assert (path / meta["parts"]["model"]["details"]["w8a8_state"]).stat().st_size < 2e6  # observer ranges, no weights
    report = validate(path, bundle(HMR))
    assert report.passed
    if not can_run_coreml():
        assert "INT8 weights and activations" in report.execution
    # the INT8 graph ran, not a float32 one (which drifts < 1e-6 on the tiny model; INT8 ~1e-4)
    assert max(o["rel_l2"] for o in report.outputs.values()) > 1e-5


def test_multifunction_package_shares_weights_across_static_shapes(tmp_path):
    module = tiny_vit()
    shapes = {f"forward_b{b}": (torch.randn(b, 3, 256, 192),) for b in (1, 2)}
    singles = 0
    for function, example in shapes.items():
        single = tmp_path / f"{function}.mlpackage"
        torch2coreml(module, example, ["image"], ["tokens"], Precision.fp16, "tiny", single)
        singles += package_bytes(single)
    merged = tmp_path / "multi.mlpackage"
    torch2coreml_multifunction(module, shapes, ["image"], ["tokens"], Precision.fp16, "tiny", merged)
    assert package_bytes(merged) < 0.7 * singles
    for function, (example,) in shapes.items():
        summary = program_summary(merged, function)
        assert summary["functions"] == ["forward_b1", "forward_b2"]
        assert summary["inputs"][0]["shape"] == list(example.shape)
        assert summary["outputs"][0]["shape"][0] == example.shape[0]


class _Unconvertible(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.odd = _CumMax()

    def forward(self, x):
        return self.odd(self.proj(x))


class _CumMax(torch.nn.Module):
    def forward(self, x):
        return torch.cummax(x, dim=1)[0]


def test_op_core_ml_cannot_convert_names_op_module_and_alternative(tmp_path):
    with pytest.raises(ConversionError) as err:
        torch2coreml(_Unconvertible().eval(), (torch.randn(1, 4, 8),), ["x"], ["y"], Precision.fp16, "toy",
                     tmp_path / "toy.mlpackage")
    message = str(err.value)
    assert "'cummax'" in message and "'odd'" in message and "--target executorch" in message
    assert list(tmp_path.iterdir()) == []  # the worker's scratch folder is gone, no package half-written


def test_a_crashing_vendor_step_fails_with_its_signal_and_the_process_lives_on():
    """coremltools or TensorRT crashing in native code (here: an abort) ends only its worker process."""
    import sys

    from edgehmr.isolated import run_isolated

    with pytest.raises(ConversionError, match=r"Core ML conversion of toy crashed \(SIGABRT\) in its own process"):
        run_isolated([sys.executable, "-c", "import os; os.abort()"], "Core ML conversion of toy")


@pytest.mark.skipif(not can_run_coreml(), reason="Core ML runs predictions only on macOS")
def test_macos_prediction_matches_simulation(artifact):
    path = artifact(HMR, "fp16", target="coreml")
    runner = open_artifact_runner(path, _metadata(path))
    image = np.random.default_rng(0).standard_normal((1, 3, 256, 192)).astype(np.float32)
    out = runner.run(runner.default_entry, {"image": image})
    assert not runner.simulated
    assert all(np.isfinite(v).all() for v in out.values())


def test_vitpose_fp16_package_passes_simulated_validation(artifact, bundle):
    path = artifact(POSE, "fp16", target="coreml")
    summary = program_summary(path / "model.mlpackage")
    assert summary["outputs"] == [{"name": "heatmaps", "shape": [1, 17, 64, 48], "dtype": "float32"}]
    report = validate(path, bundle(POSE))
    assert report.passed and report.task["kp2d_px"]["value"] < 0.05


def test_simulation_rebuilds_checkpoint_models_only_from_the_converted_file(tmp_path):
    """The simulation reloads the checkpoint the artifact names; a changed file is refused before it is read."""
    from safetensors.torch import save_file

    from edgehmr.errors import InputError
    from edgehmr.models import load_model
    from edgehmr.models._checkpoint import file_sha256
    from edgehmr.rebuild import rebuild_model

    state = load_model(POSE, seed=3).module.state_dict()
    ckpt = tmp_path / "vitpose.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
    loaded = load_model(POSE, ckpt)
    meta = {"model": loaded.describe(), "with_mesh": False, "spec": {"trust_checkpoint": False}}
    assert meta["model"]["checkpoint_sha256"] == file_sha256(ckpt)
    rebuilt = rebuild_model(meta).module
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), state.values()))
    state[next(iter(state))] += 1
    save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
    with pytest.raises(InputError, match="changed since the artifact was converted"):
        rebuild_model(meta)


@pytest.mark.skipif(can_run_coreml(), reason="on macOS Core ML runs and is profiled")
def test_profile_refuses_at_once_off_macos(artifact, capsys, monkeypatch):
    """Profiling measures the device: off macOS the command refuses in one line before building the torch
    simulation (which validate uses) or starting to time anything."""
    from edgehmr.cli import main

    def no_simulation(meta, part):
        raise AssertionError("profile built the simulation")

    monkeypatch.setattr("edgehmr.rebuild.simulation_module", no_simulation)
    path = artifact("test-hmr2", "fp16", target="coreml")
    assert main(["profile", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only on macOS" in err and "run 'edgehmr profile' on it" in err, err
