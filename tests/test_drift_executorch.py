"""``debug drift`` on ExecuTorch artifacts: runtime intermediate outputs (ETDump, per op) via the Inspector.

A 2-block ViT (real model code, seconds to lower) stands in for a registered model: ``simulation_module`` is pointed at
it, so the module the drift tool lowers and its FP32 reference are both the tiny ViT.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import edgehmr.targets.executorch_drift as dx
from edgehmr.converters.base import ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.executorch import lower_methods, quantized_or_fail
from edgehmr.targets.executorch_drift import executorch_layer_drift
from edgehmr.errors import SpecError
from model_helpers import tiny_vit

SHAPE = [1, 3, 256, 192]
DEGRADED = "blocks.0.mlp.fc1"


def _tiny_artifact(path, precision: Precision):
    """A tiny-ViT XNNPACK .pte (lowered as the converter does) with the metadata the drift tool reads."""
    module = tiny_vit()
    example = torch.randn(*SHAPE)
    with torch.no_grad():
        out_shape = list(module(example).shape)
    if precision == Precision.int8:
        module = quantized_or_fail(ExportJob.single(module, (example,), ["image"], ["tokens"], precision, "tiny"),
                                   "tiny")
    buffer, _ = lower_methods({"forward": (module, (example,))}, "xnnpack", precision, "tiny")
    (path / "model.pte").write_bytes(buffer)
    part = {"target": "executorch", "file": "model.pte", "input_names": ["image"], "output_names": ["tokens"],
            "precision": precision.value, "entries": {"main": {"image": list(SHAPE)}},
            "details": {"delegate": "xnnpack", "methods": ["forward"]}}
    meta = {"target": "executorch", "precision": precision.value, "model": {"model": "tiny-vit"},
            "inputs": [{"name": "image", "shape": SHAPE, "dtype": "float32"}],
            "outputs": [{"name": "tokens", "shape": out_shape, "dtype": "float32"}],
            "parts": {"model": part}, "quantization": None}
    (path / "metadata.json").write_text(json.dumps(meta))
    return path, meta


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    return _tiny_artifact(tmp_path_factory.mktemp("tiny-executorch-fp32"), Precision.fp32)


@pytest.fixture
def images():
    return np.random.default_rng(0).standard_normal((1, *SHAPE[1:])).astype(np.float32)


@pytest.fixture(autouse=True)
def rebuilds_tiny_vit(monkeypatch):
    monkeypatch.setattr("edgehmr.rebuild.simulation_module", lambda meta, part: tiny_vit())


def _coarse(meta: dict, reference: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module with one linear's weights rounded to 7 levels (as if that layer alone ran at ~3 bits)."""
    module = copy.deepcopy(reference)
    layer = module.get_submodule(DEGRADED)
    with torch.no_grad():
        step = layer.weight.abs().max() / 3
        layer.weight.copy_(torch.round(layer.weight / step) * step)
    return module


def test_injected_low_precision_layer_is_ranked_first(tiny_artifact, images, monkeypatch):
    path, meta = tiny_artifact
    monkeypatch.setattr(dx, "_lowering_module", _coarse)
    method, layers = executorch_layer_drift(path, meta, images, top=5)
    first, second = layers[0], layers[1]
    assert first.node == DEGRADED and first.op == "linear"
    assert first.added > 0.05 and first.added > 3 * second.added  # the layers after it only carry it along
    assert "per op" in method and "Inspector" in method
    # The re-lowered program is not the (clean) artifact: the method string says by how much.
    assert float(method.rsplit(" ", 1)[1]) > 1e-3


def test_untouched_fp32_artifact_adds_no_drift(tiny_artifact, images):
    path, meta = tiny_artifact
    method, layers = executorch_layer_drift(path, meta, images, top=3)
    assert len(layers) == 3 and all(layer.rel_l2 < 1e-4 for layer in layers)
    assert float(method.rsplit(" ", 1)[1]) < 1e-5  # the re-lowered program reproduces the artifact


def test_int8_artifact_drift_starts_at_quantized_linears(tmp_path, images):
    path, meta = _tiny_artifact(tmp_path, Precision.int8)
    method, layers = executorch_layer_drift(path, meta, images, top=100)
    # The INT8 GEMMs (patch conv, 8 linears) are where error comes from, the first one most; data movement adds
    # none. (bmm, float in XNNPACK, compounds the error of its two inputs, so it ranks among them too.)
    assert layers[0].op in ("linear", "conv2d") and layers[0].added > 5e-3
    assert sum(layer.op in ("linear", "conv2d") for layer in layers[:10]) >= 6
    assert all(abs(layer.added) < 1e-5 for layer in layers if layer.op in ("transpose", "view", "reshape"))
    assert float(method.rsplit(" ", 1)[1]) < 1e-3  # per op, the INT8 numbers are the artifact's


def test_other_executorch_artifacts_are_refused(tiny_artifact, images):
    path, meta = tiny_artifact
    with pytest.raises(SpecError, match="Core ML"):
        coreml = {"model": meta["parts"]["model"] | {"details": {"delegate": "coreml"}}}
        executorch_layer_drift(path, meta | {"parts": coreml}, images, top=3)
    with pytest.raises(SpecError, match="whole batches"):
        executorch_layer_drift(path, meta, images[:0], top=3)


def test_debug_drift_dispatches_executorch_artifacts(tiny_artifact, images, monkeypatch):
    """``debug_drift`` (the CLI's entry) takes the bundle's inputs to this path for -t executorch artifacts."""
    from types import SimpleNamespace

    from edgehmr.drift import debug_drift

    path, _ = tiny_artifact
    monkeypatch.setattr("edgehmr.drift.read_metadata", lambda d: json.loads((path / "metadata.json").read_text()))
    monkeypatch.setattr("edgehmr.drift.load_bundle", lambda d: SimpleNamespace(inputs={"image": images}, count=1))
    result = debug_drift(path, "bundle", samples=1, top=4)
    assert result["target"] == "executorch" and result["samples"] == 1 and len(result["layers"]) == 4
    assert "Inspector" in result["method"] and result["layers"][0]["rel_l2"] < 1e-4
