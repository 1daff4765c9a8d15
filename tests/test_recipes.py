"""Quantization recipes: defaults, overrides, files and the checks that stop typos."""

from __future__ import annotations

import json

import pytest

from edgehmr.calibration.recipes import DEFAULT_RECIPES, check_scopes, resolve_recipe
from edgehmr.errors import SpecError
from edgehmr.spec import resolve_spec


def test_scope_matching_covers_children_and_globs():
    r = DEFAULT_RECIPES["hmr2"]
    assert r.covers("smpl_head.deccam")
    assert r.covers("smpl_head.transformer.transformer.layers.3.2.fn.net.0")  # feed-forward of layer 3
    assert not r.covers("smpl_head.transformer.transformer.layers.3.1.fn.to_kv")  # context projection is INT8
    assert not r.covers("backbone.blocks.0.attn.qkv")
    assert r.covers("backbone.patch_embed.proj")


def test_overrides_add_and_remove():
    r = resolve_recipe("hmr2", "default", keep_float=("attention_matmul", "backbone.blocks.0"),
                       quantize=("layernorm", "smpl_head.deccam"))
    assert "attention_matmul" in r.keep_float_ops and "layernorm" not in r.keep_float_ops
    assert "backbone.blocks.0" in r.keep_float_scopes and "smpl_head.deccam" not in r.keep_float_scopes
    assert r.name == "hmr2-default+overrides"
    assert resolve_recipe("hmr2", "none").keep_float_scopes == ()


def test_recipe_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"keep_float_scopes": ["backbone.blocks.11"], "keep_float_ops": ["softmax"]}))
    r = resolve_recipe("vitpose", str(path))
    assert r.name == "mine" and r.keep_float_scopes == ("backbone.blocks.11",)
    path.write_text(json.dumps({"keep_float": ["x"]}))
    with pytest.raises(Exception, match="unknown keys"):
        resolve_recipe("vitpose", str(path))


def test_typos_are_errors(tmp_path, loaded_models):
    path = tmp_path / "bad_kind.json"
    path.write_text(json.dumps({"keep_float_ops": ["softmaxx"]}))
    with pytest.raises(SpecError, match="Unknown op kind"):
        resolve_recipe("hmr2", str(path))
    r = resolve_recipe("hmr2", keep_float=("smpl_head.decpos",))  # not an op kind, so a scope: must match
    with pytest.raises(SpecError, match="Did you mean 'smpl_head.decpose'"):
        check_scopes(r, loaded_models("test-hmr2").module)


def test_recipe_flags_only_for_int8():
    with pytest.raises(SpecError, match="apply to int8"):
        resolve_spec("test-hmr2", "onnx", "fp16", keep_float=("smpl_head",))
