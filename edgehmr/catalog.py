"""The model catalog ``edgehmr models`` prints: every registered model with its family, description, parameters
and GMACs.

Counting GMACs builds each of the ~90 models on the meta device and traces a forward (about a minute in all), so
the catalog is precomputed into ``catalog.json`` beside this file, keyed by the SHA-256 of the model code
(``edgehmr/models/*.py``). It is used only when that key matches the installed code; otherwise the catalog is
counted once and kept in the user's cache (``$EDGEHMR_CACHE``, default ``~/.cache/edgehmr``) under the new key.
This module imports neither torch nor the models unless it has to count.

``python -m edgehmr.catalog`` rewrites catalog.json; tests/test_catalog.py fails when it is stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from edgehmr.cache import cache_root
from edgehmr.progress import reporting, step

MODEL_CODE = Path(__file__).resolve().parent / "models"
CATALOG = Path(__file__).resolve().with_name("catalog.json")
COMMAND = "python -m edgehmr.catalog"


def code_key() -> str:
    """SHA-256 over the model code's file names and bytes: any edit of an architecture or the registry changes it."""
    digest = hashlib.sha256()
    for path in sorted(MODEL_CODE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def user_cache() -> Path:
    return cache_root() / "catalog"


def count_catalog() -> dict:
    """Build every registered model (test ones too) on the meta device and count it: ``{"code_sha256", "models"}``.
    Says each model through :mod:`edgehmr.progress`."""
    from edgehmr.models import get_model_info, list_models, model_cost

    names = list_models(include_test=True)
    rows = []
    for i, name in enumerate(names):
        step(f"{i + 1}/{len(names)}: {name}")
        info = get_model_info(name)
        params, gmacs = model_cost(name)
        rows.append({"model": name, "family": info.family, "params_m": round(params / 1e6, 2),
                     "gmacs": round(gmacs, 2), "description": info.description, "test_only": info.test_only})
    return {"code_sha256": code_key(), "models": rows}


def _read(path: Path, key: str) -> list[dict] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("code_sha256") != key or not isinstance(data.get("models"), list):
        return None
    return data["models"]


def cached_catalog() -> list[dict] | None:
    """The catalog rows for the installed model code from catalog.json or the user's cache; None if neither holds
    them (then :func:`count_and_cache`)."""
    key = code_key()
    for path in (CATALOG, _cache_file(key)):
        rows = _read(path, key)
        if rows is not None:
            return rows
    return None


def count_and_cache() -> list[dict]:
    """Count the catalog now and keep it in the user's cache (a cache that cannot be written is skipped)."""
    data = count_catalog()
    cached = _cache_file(data["code_sha256"])
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")
        partial.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        partial.replace(cached)
    except OSError:
        pass
    return data["models"]


def _cache_file(key: str) -> Path:
    return user_cache() / f"catalog-{key[:16]}.json"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=COMMAND, description="Rewrite edgehmr/catalog.json from the model code.")
    parser.add_argument("--check", action="store_true",
                        help="Say only whether catalog.json is current (exit 1 if not).")
    args = parser.parse_args(argv)
    if args.check:
        current = _read(CATALOG, code_key()) is not None
        print(f"{CATALOG.name} is {'current' if current else f'stale: run {COMMAND}'}")
        return 0 if current else 1
    with reporting(lambda text: print(text, file=sys.stderr)):
        data = count_catalog()
    CATALOG.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {CATALOG} ({len(data['models'])} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
