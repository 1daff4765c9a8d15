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
from edgehmr.targets.base import open_part_runner
from edgehmr.targets.executorch import method_names
from edgehmr.validate import validate
from model_helpers import HMR, called_layers, slow, tiny_vit


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", [HMR, *slow("hmr2-vit-s")])
def test_fp32_pte_matches_pytorch_and_reports_delegation(name, artifact, bundle, loaded_models):
    path = artifact(name, "fp32", target="executorch")
    module = loaded_models(name).module
    assert (path / "model.pte").stat().st_size > 0.9 * 4 * _params(module)  # fp32 weights
    details = json.loads((path / "metadata.json").read_text())["parts"]["model"]["details"]
    # With ExecuTorch 1.5 LayerNorm stays on portable kernels (two per ViT block and the last norm, three per
    # decoder layer: 43 for hmr2-vit-s); every linear and the patch conv must be delegated to XNNPACK.
    left = details["non_delegated"]
    assert left.get("aten.native_layer_norm", 0) >= 2 * len(module.backbone.blocks) + 1
    assert not any("linear" in op or "convolution" in op or "mm" in op for op in left)
    assert details["non_delegated_total"] == sum(left.values())
    report = validate(path, bundle(name))
    assert report.passed and max(o["rel_l2"] for o in report.outputs.values()) < 1e-4


def test_int8_pte_quantizes_linears_outside_recipe_and_passes_validate(artifact, bundle, loaded_models):
    path = artifact(HMR, "int8", target="executorch")
    meta = json.loads((path / "metadata.json").read_text())
    details = meta["parts"]["model"]["details"]
    recipe = resolve_recipe("hmr2")
    module = loaded_models(HMR).module
    layers = called_layers(module, torch.randn(1, 3, 256, 192))
    assert details["linear_conv"] == len(layers)
    quantized = sum(not recipe.covers(n) for n in layers)
    assert details["quantized_linear_conv"] == quantized >= 4 * len(module.backbone.blocks)  # every block's linears
    assert not any("linear" in op or "convolution" in op or "mm" in op for op in details["non_delegated"])
    report = validate(path, bundle(HMR))
    assert report.passed
    # INT8 really ran, not the fp32 program (which drifts ~1e-8 here; INT8 ~2e-5 on the tiny model)
    assert max(o["rel_l2"] for o in report.outputs.values()) > 5e-6


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
        part = {"target": "executorch", "file": path.name, "input_names": ["image"], "output_names": ["tokens"],
                "precision": "fp32", "entries": {method: {"image": list(example.shape)}},
                "details": {"entry_methods": {method: method}}}
        got = open_part_runner(tmp_path, part).run(method, {"image": example.numpy()})["tokens"]
        with torch.no_grad():
            want = module(example).numpy()
        assert got.shape == want.shape
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5
        assert not any("linear" in op for op in leftover[method])


def test_coreml_delegated_pte_is_built_whole_and_refused_off_apple(tmp_path, loaded_models, capsys):
    from edgehmr.cli import main

    code = main(["convert", "-m", HMR, "-t", "executorch-coreml", "-o", str(tmp_path), "-q"])
    assert code == 0
    path = tmp_path / f"{HMR}-executorch-coreml-fp16"
    details = json.loads((path / "metadata.json").read_text())["parts"]["model"]["details"]
    # Core ML takes the whole graph: one delegate call, nothing on portable kernels.
    assert details["delegate"] == "coreml" and details["non_delegated_total"] == 0
    assert (path / "model.pte").stat().st_size > 0.9 * 2 * _params(loaded_models(HMR).module)  # float16 weights
    if platform.system() != "Darwin":
        with pytest.raises(TargetUnavailableError, match="runs only on Apple devices"):
            open_artifact_runner(path, json.loads((path / "metadata.json").read_text()))
