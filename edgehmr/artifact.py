"""Artifact folders: ``<out>/<model>-<target>-<precision>/`` with model file(s) and ``metadata.json``.

Written into a hidden staging folder beside the destination and renamed into place only when complete, so an
interrupted or failed conversion never leaves a half-written artifact. A staging folder names the process that
writes it; one whose process is gone (killed with SIGKILL, a power cut) is removed by the next write beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgehmr.errors import InputError
from edgehmr.jsonfile import read_json_object
from edgehmr.metadata_fields import CROP_PART, METADATA, check_fields  # noqa: F401 - CROP_PART: part of the API

# 2: every artifact lists its parts (a crop model's one, SAT-HMR's two) in the same record shape.
SCHEMA_VERSION = 2
# The entry of a part with one fixed shape (Core ML's default function name).
DEFAULT_ENTRY = "main"


def artifact_name(model: str, target: str, precision: str, with_mesh: bool = False) -> str:
    return f"{model}{'-mesh' if with_mesh else ''}-{target}-{precision}"


@contextlib.contextmanager
def staged_dir(final: Path):
    """Yield an empty staging folder; on success it replaces ``final`` atomically, on error it is removed."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"cannot write {final.name} into {final.parent}: a file is in the way of that folder; "
                         f"pass another --out.") from None
    remove_abandoned(final)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    try:
        yield stage
    except BaseException as e:
        full = _out_of_disk(stage)
        shutil.rmtree(stage, ignore_errors=True)
        if full and not isinstance(e, KeyboardInterrupt):
            # Vendor writers report a full disk in their own words (OpenVINO: "basic_ios::clear: iostream error",
            # protobuf: "Wire format was corrupt" on the read-back); say what happened instead.
            raise InputError(f"the disk holding {final.parent} ran out of space while writing {final.name} "
                             f"({type(e).__name__}: {e}); free some space or pass another --out.") from e
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{stage.name.split('.partial-', 1)[1]}")
        final.rename(old)
    stage.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _writer_alive(hidden: Path) -> bool:
    """Whether the process named in a staging folder's name (``.<name>.partial-<pid>-<random>``) still runs."""
    try:
        pid = int(hidden.name.rsplit("-", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_abandoned(final: Path) -> list[Path]:
    """Remove the staging and replaced folders of ``final`` whose writer is gone; returns what was removed. Live
    ones (a conversion into the same folder running now) are kept."""
    prefixes = tuple(f".{final.name}.{kind}-" for kind in ("partial", "old"))
    removed = [p for p in final.parent.iterdir() if p.name.startswith(prefixes) and p.is_dir() and not _writer_alive(p)]
    for hidden in removed:
        shutil.rmtree(hidden, ignore_errors=True)
    return removed


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# resolved path -> (size, mtime_ns, inode, sha256): every command re-reads the metadata of an artifact it has
# already verified (the CLI, then the validator, then the runner); an unchanged file is not hashed twice.
_VERIFIED: dict[Path, tuple[int, int, int, str]] = {}


def _sha256_cached(path: Path) -> str:
    stat = path.stat()
    key, signature = path.resolve(), (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    known = _VERIFIED.get(key)
    if known is None or known[:3] != signature:
        known = (*signature, _sha256(path))
        _VERIFIED[key] = known
    return known[3]


def file_hashes(artifact_dir: Path) -> dict[str, str]:
    """sha256 of every file of a finished artifact folder but its metadata (``files_sha256`` in metadata.json):
    apps check them before loading, so a truncated copy or a model file from another artifact is refused."""
    return {p.relative_to(artifact_dir).as_posix(): _sha256(p)
            for p in sorted(artifact_dir.rglob("*")) if p.is_file() and p.name != METADATA}


# What validate and profile write into an artifact folder: results, not part of what ships.
VALIDATION_FILE, PROFILE_FILE = "validation.json", "profile.json"
RESULT_FILES = (VALIDATION_FILE, PROFILE_FILE)


def artifact_mb(artifact_dir: Path) -> float:
    """Size of what ships (model files, weights, scripts, metadata.json), without the results written beside them."""
    return sum(p.stat().st_size for p in artifact_dir.rglob("*")
               if p.is_file() and p.relative_to(artifact_dir).as_posix() not in RESULT_FILES) / 1e6


def inside(artifact_dir: Path, name: object, what: str) -> Path:
    """``artifact_dir / name`` when ``name`` is a relative path that stays inside the folder, links resolved;
    InputError otherwise. The C++ runtime applies the same rule (``targets/cpp/src/metadata.cpp``)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in name:
        raise InputError(f"{artifact_dir / METADATA}: {what} must be a path inside the artifact folder, not "
                         f"{name!r}; re-run 'edgehmr convert'.")
    path = artifact_dir / name
    root = artifact_dir.resolve()
    if not path.resolve().is_relative_to(root):
        raise InputError(f"{artifact_dir / METADATA}: {what} '{name}' leads outside the artifact folder (a link to "
                         f"{path.resolve()}); copy the file into the folder or re-run 'edgehmr convert'.")
    return path


def named_files(meta: dict) -> dict[str, object]:
    """What the metadata names as a file -> where it names it: each part's model file and every hashed file."""
    named: dict[str, object] = {f"parts.{name}.file": part.get("file") for name, part in parts(meta).items()}
    named |= {f"files_sha256 entry '{k}'": k for k in (meta.get("files_sha256") or {})}
    return named


def verify_file_hashes(artifact_dir: str | Path, meta: dict) -> None:
    """Raise InputError when a recorded file is missing or differs from its hash in metadata.json (artifacts
    that record none pass; files added later, such as an engine built on the device, are not covered)."""
    artifact_dir = Path(artifact_dir)
    for name, want in (meta.get("files_sha256") or {}).items():
        path = inside(artifact_dir, name, "files_sha256")
        if not path.is_file():
            raise InputError(f"{artifact_dir}: metadata.json records a hash for {name}, which is missing; "
                             f"re-run 'edgehmr convert'.")
        got = _sha256_cached(path)
        if not isinstance(want, str) or got != want.lower():
            raise InputError(f"{path} does not match metadata.json (sha256 {got[:12]}..., recorded {str(want)[:12]}"
                             f"...): the artifact was modified or mixed up; re-run 'edgehmr convert'.")


def read_metadata(artifact_dir: str | Path, verify: bool = True) -> dict:
    """The one reader of ``metadata.json``: refuses a missing, corrupt or other-version file and any file name
    that leads outside the folder; with ``verify`` (the default) also any file whose sha256 differs from the one
    recorded."""
    artifact_dir = Path(artifact_dir)
    meta = artifact_dir / METADATA
    if not meta.is_file():
        raise InputError(f"{artifact_dir} is not an edgehmr artifact (no {METADATA}); "
                         f"create one with 'edgehmr convert'.")
    data = read_json_object(meta, "an artifact's metadata", "re-run 'edgehmr convert'.")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{meta} has schema version {data.get('schema_version')}, this edgehmr reads "
                         f"{SCHEMA_VERSION}; re-run 'edgehmr convert'.")
    check_parts(data)
    check_fields(data)
    if not isinstance(data.get("files_sha256") or {}, dict):
        raise InputError(f"{meta}: files_sha256 must map file names to sha256 hashes; re-run 'edgehmr convert'.")
    for where, name in named_files(data).items():
        inside(artifact_dir, name, where)
    if verify:
        verify_file_hashes(artifact_dir, data)
    return data


def parts(meta: dict) -> dict[str, dict]:
    """Every part of an artifact (a crop model's one, SAT-HMR's stage1 and stage2), each as
    :func:`edgehmr.converters.convert.part_metadata` wrote it: target, file, input/output names, precision,
    entries (entry -> input -> shape), input dtypes, recipe, details. The records are the metadata's own dicts,
    so what a caller records in ``details`` (an engine built on the device) is saved with the metadata."""
    found = meta.get("parts")
    if not isinstance(found, dict) or not found:
        raise InputError(f"{METADATA} lists no parts (model files); re-run 'edgehmr convert'.")
    return found


def check_parts(meta: dict) -> None:
    """One line for the first part record that is not what the runners read (the C++ reader checks the fields it
    reads: file, names, dtypes, entries, details)."""
    for name, part in parts(meta).items():
        where = f"{METADATA}: parts.{name}"
        if not isinstance(part, dict):
            raise InputError(f"{where} is not an object; re-run 'edgehmr convert'.")
        for key, kind in (("target", str), ("file", str), ("precision", str), ("input_names", list),
                          ("output_names", list), ("entries", dict), ("details", dict)):
            if not isinstance(part.get(key), kind):
                raise InputError(f"{where}.{key} is missing or not a {kind.__name__}; re-run 'edgehmr convert'.")
        names = part["input_names"]
        for key in ("input_names", "output_names"):
            listed = part[key]
            if not listed or not all(isinstance(n, str) and n for n in listed) or len(set(listed)) != len(listed):
                raise InputError(f"{where}.{key} must list distinct non-empty names; re-run 'edgehmr convert'.")
        if not part["entries"]:
            raise InputError(f"{where} has no entries; re-run 'edgehmr convert'.")
        for entry, shapes in part["entries"].items():
            for input_name in names:
                shape = shapes.get(input_name) if isinstance(shapes, dict) else None
                if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                    raise InputError(f"{where}: entry '{entry}' has no valid shape for input '{input_name}'; re-run "
                                     f"'edgehmr convert'.")

