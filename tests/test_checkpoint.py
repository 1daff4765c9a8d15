"""Checkpoints in the published layouts load strictly and safely; mismatched or hostile ones fail clearly."""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch

from edgehmr.errors import CheckpointMismatchError, InputError
from edgehmr.models import load_model


@pytest.fixture
def fake_yacs(monkeypatch):
    """A stand-in ``yacs.config.CfgNode`` so we can write a Lightning checkpoint as 4D-Humans does."""
    mod = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.__dict__["__immutable__"] = False

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    mod.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", mod)
    return CfgNode


def _reference_state(name: str, seed: int = 5) -> dict[str, torch.Tensor]:
    return load_model(name, seed=seed).module.state_dict()


def test_4dhumans_lightning_checkpoint_loads_strictly_without_code(tmp_path, fake_yacs):
    state = {f"{k}": v for k, v in _reference_state("test-hmr2").items()}
    # Keys the 4D-Humans checkpoint carries that inference drops.
    state["discriminator.D_conv1.weight"] = torch.zeros(32, 9, 1, 1)
    state["smpl.shapedirs"] = torch.zeros(6890, 3, 10)
    state["initialized"] = torch.tensor(True)
    cfg = fake_yacs({"MODEL": fake_yacs({"IMAGE_SIZE": 256})})
    ckpt = {"epoch": 35, "global_step": 1000000, "pytorch-lightning_version": "1.8.1", "state_dict": state,
            "hyper_parameters": {"cfg": cfg}}
    path = tmp_path / "epoch=35-step=1000000.ckpt"
    torch.save(ckpt, path)
    loaded = load_model("test-hmr2", path)  # safe mode: the CfgNode unpickles as data
    assert loaded.weights == str(path) and loaded.checkpoint_sha256
    assert loaded.weights_sha256 == load_model("test-hmr2", seed=5).weights_sha256
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        for a, b in zip(loaded.module(x), load_model("test-hmr2", seed=5).module(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_vitpose_mmpose_checkpoint_loads_strictly(tmp_path):
    state = _reference_state("test-vitpose")
    state["backbone.cls_token"] = torch.zeros(1, 1, 64)  # multi-dataset files carry these
    state["associate_keypoint_heads.0.final_layer.weight"] = torch.zeros(14, 32, 1, 1)
    path = tmp_path / "vitpose_small.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": state}, path)
    loaded = load_model("test-vitpose", path)
    assert loaded.weights_sha256 == load_model("test-vitpose", seed=5).weights_sha256


def test_mismatched_checkpoint_reports_diff(tmp_path):
    state = _reference_state("test-vitpose")
    state.pop("backbone.last_norm.bias")
    state["keypoint_head.extra.weight"] = torch.zeros(3)
    state["keypoint_head.final_layer.weight"] = torch.zeros(14, 32, 1, 1)  # test-vitpose: 32 deconv channels
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model("test-vitpose", path)
    diff = info.value.diff
    assert diff.missing == ["backbone.last_norm.bias"]
    assert diff.unexpected == ["keypoint_head.extra.weight"]
    assert diff.shape == [("keypoint_head.final_layer.weight", (14, 32, 1, 1), (17, 32, 1, 1))]
    assert "1 missing, 1 unexpected, 1 of another shape" in str(info.value)


def test_wrong_size_checkpoint_fails(tmp_path):
    path = tmp_path / "vitpose_s.pth"
    torch.save({"state_dict": _reference_state("test-vitpose")}, path)
    with pytest.raises(CheckpointMismatchError, match="does not fit vitpose-s"):
        load_model("vitpose-s", path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"state_dict": _reference_state("test-vitpose")}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_model("test-vitpose", path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def test_pickled_code_is_not_run_without_trust(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _reference_state("test-vitpose"), "payload": _Exploit()}, path)
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_model("test-vitpose", path)
    assert not (tmp_path / "EXPLOITED").exists()


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "vitpose_s.safetensors"
    save_file({k: v.contiguous() for k, v in _reference_state("test-vitpose").items()}, str(path))
    assert load_model("test-vitpose", path).weights_sha256 == load_model("test-vitpose", seed=5).weights_sha256


def test_missing_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model("test-vitpose", tmp_path / "nope.pth")
