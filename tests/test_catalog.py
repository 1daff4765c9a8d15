"""``edgehmr models`` answers from edgehmr/catalog.json, which must be what the model code counts today; a checkout
whose model code changed counts once and reads its own cache after."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgehmr import catalog
from edgehmr.models import get_model_info, list_models, model_cost


def test_catalog_json_was_made_from_this_model_code():
    stored = json.loads(catalog.CATALOG.read_text())
    assert stored["code_sha256"] == catalog.code_key(), (
        f"edgehmr/models changed since catalog.json was made: run '{catalog.COMMAND}' and commit the result")
    assert [r["model"] for r in stored["models"]] == list_models(include_test=True)


# Recounted here: the tiny models (every family) and one published model per family at its smallest size.
RECOUNT = [n for n in list_models(include_test=True) if get_model_info(n).test_only] + [
    "hmr2-vit-s", "vitpose-s", "deformable-hmr-vit-s-x1"]


@pytest.mark.parametrize("name", RECOUNT)
def test_catalog_rows_equal_a_fresh_count(name):
    row = {r["model"]: r for r in catalog.cached_catalog()}[name]
    info = get_model_info(name)
    params, gmacs = model_cost(name)
    assert row == {"model": name, "family": info.family, "params_m": round(params / 1e6, 2),
                   "gmacs": round(gmacs, 2), "description": info.description, "test_only": info.test_only}


def test_changed_model_code_is_counted_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEHMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(catalog, "CATALOG", tmp_path / "stale.json")
    (tmp_path / "stale.json").write_text(json.dumps({"code_sha256": "0" * 64, "models": []}))
    assert catalog.cached_catalog() is None  # another key: not used
    counted = []
    monkeypatch.setattr(catalog, "count_catalog", lambda: counted.append(1) or {
        "code_sha256": catalog.code_key(), "models": [{"model": "m", "test_only": False}]})
    assert catalog.count_and_cache() == [{"model": "m", "test_only": False}]
    assert catalog.cached_catalog() == [{"model": "m", "test_only": False}] and counted == [1]  # from the cache
    assert list((tmp_path / "cache" / "catalog").glob("catalog-*.json"))


def test_models_and_targets_answer_at_once():
    """A fresh process each: the listings import neither torch nor a model (a cold start here is about 0.5 s).
    The check is what gets imported, not a time."""
    for command in ("models", "targets"):
        probe = (f"import sys; from edgehmr.cli import main; code = main([{command!r}]); "
                 f"assert code == 0, code; print(sorted(m for m in ('torch', 'edgehmr.models') if m in sys.modules))")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == "[]", (command, result.stdout[-300:])
