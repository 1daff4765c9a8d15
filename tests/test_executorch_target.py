"""ExecuTorch target: XNNPACK-lowered .pte run through executorch.runtime, against FP32 PyTorch."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest
import torch

from edgehmr.calibration.recipes import resolve_recipe
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.executorch import lower_methods
from edgehmr.errors import TargetUnavailableError
from edgehmr.targets.base import open_artifact_runner
from edgehmr.targets.executorch import ExecuTorchRunner, method_names
from edgehmr.validate import validate
from model_helpers import called_layers, tiny_vit


def test_fp32_pte_matches_pytorch_and_reports_delegation(artifact, bundle):
    path = artifact("hmr2-vit-s", "fp32", target="executorch")
    assert (path / "model.pte").stat().st_size > 100e6  # fp32 weights of a 55.7 M-parameter model
    details = json.loads((path / "metadata.json").read_text())["target_details"]
    # With ExecuTorch 1.5 LayerNorm stays on portable kernels (43 for hmr2-vit-s: 25 in the ViT, 18 in the
    # decoder); every linear and the patch conv must be delegated to XNNPACK.
    left = details["non_delegated"]
    assert left.get("aten.native_layer_norm", 0) >= 25
    assert not any("linear" in op or "convolution" in op or "mm" in op for op in left)
    assert details["non_delegated_total"] == sum(left.values())
    report = validate(path, bundle("hmr2-vit-s"))
    assert report.passed and max(o["rel_l2"] for o in report.outputs.values()) < 1e-4


def test_int8_pte_quantizes_linears_outside_recipe_and_passes_validate(artifact, bundle, loaded_models):
    path = artifact("hmr2-vit-s", "int8", target="executorch")
    meta = json.loads((path / "metadata.json").read_text())
    details = meta["target_details"]
    recipe = resolve_recipe("hmr2")
    layers = called_layers(loaded_models("hmr2-vit-s").module, torch.randn(1, 3, 256, 192))
    assert details["linear_conv"] == len(layers)
    assert details["quantized_linear_conv"] == sum(not recipe.covers(n) for n in layers) > 48
    assert not any("linear" in op or "convolution" in op or "mm" in op for op in details["non_delegated"])
    report = validate(path, bundle("hmr2-vit-s"))
    assert report.passed
    assert max(o["rel_l2"] for o in report.outputs.values()) > 1e-4  # INT8 really ran: not the fp32 program


def test_multi_method_pte_shares_weights_and_runs_every_method(tmp_path):
    module = tiny_vit()
    shapes = {f"forward_b{b}": (module, (torch.randn(b, 3, 256, 192),)) for b in (1, 2)}
    singles = sum(len(lower_methods({m: shapes[m]}, "xnnpack", Precision.fp32, "tiny")[0]) for m in shapes)
    buffer, leftover = lower_methods(shapes, "xnnpack", Precision.fp32, "tiny")
    assert len(buffer) < 0.7 * singles
    path = tmp_path / "multi.pte"
    path.write_bytes(buffer)
    assert method_names(path) == set(shapes)
    for method, (_, (example,)) in shapes.items():
        runner = ExecuTorchRunner(path, ["image"], ["tokens"], method)
        got = runner.run({"image": example.numpy()})["tokens"]
        with torch.no_grad():
            want = module(example).numpy()
        assert got.shape == want.shape
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5
        assert not any("linear" in op for op in leftover[method])


def test_coreml_delegated_pte_is_built_whole_and_refused_off_apple(tmp_path, loaded_models, capsys):
    from edgehmr.cli import main

    code = main(["convert", "-m", "hmr2-vit-s", "-t", "executorch-coreml", "-o", str(tmp_path), "-q"])
    assert code == 0
    path = tmp_path / "hmr2-vit-s-executorch-coreml-fp16"
    details = json.loads((path / "metadata.json").read_text())["target_details"]
    # Core ML takes the whole graph: one delegate call, nothing on portable kernels.
    assert details["delegate"] == "coreml" and details["non_delegated_total"] == 0
    assert (path / "model.pte").stat().st_size > 50e6  # float16 weights of a 55.7 M-parameter model
    if platform.system() != "Darwin":
        with pytest.raises(TargetUnavailableError, match="runs only on Apple devices"):
            open_artifact_runner(path, json.loads((path / "metadata.json").read_text()))
