"""Artifact folders: ``<out>/<model>-<target>-<precision>/`` with model file(s) and ``metadata.json``.

Written into a hidden staging folder beside the destination and renamed into place only when complete, so an
interrupted or failed conversion never leaves a half-written artifact.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from edgehmr.errors import InputError

METADATA = "metadata.json"
SCHEMA_VERSION = 1


def artifact_name(model: str, target: str, precision: str, with_mesh: bool = False) -> str:
    return f"{model}{'-mesh' if with_mesh else ''}-{target}-{precision}"


@contextlib.contextmanager
def staged_dir(final: Path):
    """Yield an empty staging folder; on success it replaces ``final`` atomically, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{stage.name.rsplit('-', 1)[-1]}")
        final.rename(old)
    stage.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def read_metadata(artifact_dir: str | Path) -> dict:
    artifact_dir = Path(artifact_dir)
    meta = artifact_dir / METADATA
    if not meta.is_file():
        raise InputError(f"{artifact_dir} is not an edgehmr artifact (no {METADATA}); "
                         f"create one with 'edgehmr convert'.")
    try:
        data = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{meta} is corrupt ({e}).") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{meta} has schema version {data.get('schema_version')}, this edgehmr reads "
                         f"{SCHEMA_VERSION}; re-run 'edgehmr convert'.")
    return data
