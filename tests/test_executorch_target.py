"""ExecuTorch target: XNNPACK-lowered .pte run through executorch.runtime, against FP32 PyTorch."""

from __future__ import annotations

import json

from edgehmr.validate import validate


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
