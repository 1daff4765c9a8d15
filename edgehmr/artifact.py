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
    except BaseException as e:
        full = _out_of_disk(stage)
        shutil.rmtree(stage, ignore_errors=True)
        if full and not isinstance(e, KeyboardInterrupt):
            # Vendor writers report a full disk in their own words (OpenVINO: "basic_ios::clear: iostream error",
            # protobuf: "Wire format was corrupt" on the read-back); say what happened instead.
            raise InputError(f"the disk holding {final.parent} ran out of space while writing {final.name} "
                             f"({type(e).__name__}: {e}); free some space or pass another --out-dir.") from e
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{stage.name.rsplit('-', 1)[-1]}")
        final.rename(old)
    stage.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# Below this much free space at the moment a write failed, the failure is taken to be a full disk.
_FULL_DISK_BYTES = 64 << 20


def _out_of_disk(path: Path) -> bool:
    try:
        return shutil.disk_usage(path).free < _FULL_DISK_BYTES
    except OSError:
        return False


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
