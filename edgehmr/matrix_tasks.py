"""The three task functions of ``edgehmr bench`` and how their folders travel between machines.

Every executor (in-process, a process pool, a Ray cluster) runs these same functions:

- :func:`reference_task` makes a model's FP32 bundle (the ``reference`` node: the user's CUDA host);
- :func:`convert_task` converts one model x target x precision (any ``build`` host);
- :func:`device_task` validates, checks and profiles an artifact on the device it is for (``device:<name>``).

A task never raises for a problem of the cell (a refused op, a corrupt input, a crash inside a vendor tool): it
returns a :class:`Failed` with the one line to report, so a deterministic failure is reported once and never
retried; only a lost worker or node makes the executor run the task again.

Folders move as :class:`Packed`: a path under a store every machine sees (``--share``, or this machine's own
folder when everything runs here), or the folder's bytes (a tar) through Ray's object store. A task that finds its
output already in the store returns it without recomputing, so a rerun of an interrupted matrix resumes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgehmr.artifact import staged_dir
from edgehmr.errors import EdgeHMRError, InputError

PARITY_REL_L2 = 1e-4  # an FP32 artifact computes the same function: every output this close to PyTorch FP32
HEAVY_OPS = ("linear", "convolution", "addmm", "bmm")  # ops that must not run outside the ExecuTorch delegate


@dataclass(frozen=True)
class Settings:
    """What every cell of one matrix shares; part of each cell's key."""
    inputs: str = "synthetic"  # reference crops and INT8 calibration: 'synthetic', an image folder or a video
    count: int = 8  # reference samples per model
    seed: int = 0  # of the synthetic reference crops
    calib_count: int = 32
    runs: int = 20
    warmup: int = 3
    threads: int | None = None


@dataclass(frozen=True)
class Cell:
    """One model x target x precision (x conversion options) validated and profiled on one device."""
    model: str
    target: str
    precision: str
    name: str = ""  # the matrix's name for the cell (a config's table name); default target-precision
    device: str = "local"  # the device:<name> resource its validate/profile task needs
    max_drift: str | None = None  # INT8 through 'convert --max-drift' ('default': the tolerance table)
    search_steps: int = 4
    checks: tuple[str, ...] = ()  # names in CHECKS
    validate: bool = True
    profile: bool = True

    @property
    def label(self) -> str:
        return self.name or f"{self.target}-{self.precision}"

    def conversion(self) -> dict:
        """What the artifact depends on (not the device, nor what is done with it)."""
        return {"model": self.model, "target": self.target, "precision": self.precision,
                "max_drift": self.max_drift, "search_steps": self.search_steps if self.max_drift else None}


@dataclass(frozen=True)
class Packed:
    """A folder made on one machine: ``path`` in a store the reader sees, or ``data`` (its tar) in transit."""
    kind: str  # references | artifacts
    key: str
    name: str
    path: str | None = None
    data: bytes | None = None


@dataclass
class Failed:
    stage: str
    error: str
    node: str = ""


@dataclass
class DeviceResult:
    status: str  # pass | fail
    detail: str
    validation: dict | None = None
    profile: dict | None = None
    ran_on: dict = field(default_factory=dict)
    seconds: float = 0.0


def ran_on(device: str) -> dict:
    """Which device resource and which machine a task ran on (Ray's node id where there is one)."""
    where = {"device": device, "node": socket.gethostname()}
    try:
        import ray

        if ray.is_initialized():
            where["ray_node"] = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return where


# ---- folders in transit -------------------------------------------------------------------------------------

def store_folder(store: str | None, kind: str, key: str) -> Path | None:
    return None if store is None else Path(store) / kind / key


def pack(folder: Path, kind: str, key: str, store: str | None) -> Packed:
    """``folder`` already lies in the store (tasks write there directly) or is sent as bytes."""
    if store is not None:
        return Packed(kind, key, folder.name, path=str(folder))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    return Packed(kind, key, folder.name, data=buf.getvalue())


def materialize(packed: Packed, root: Path) -> Path:
    """The packed folder as a local path: its store path, or its bytes unpacked (once) under ``root``."""
    if packed.path is not None:
        path = Path(packed.path)
        if not path.is_dir():
            raise InputError(f"{path} is not on this machine: give every node the same --share folder (a shared "
                             f"file system mounted at the same path).")
        return path
    final = root / packed.kind / packed.key / packed.name
    if final.exists():
        return final
    with staged_dir(final.parent) as stage, tarfile.open(fileobj=io.BytesIO(packed.data)) as tar:
        tar.extractall(stage, filter="data")  # 'data': no absolute paths, links out or devices from a bad sender
    return final


def copy_folder(src: Path, dst: Path, link: bool = False) -> None:
    """A copy of ``src``; with ``link``, hard links where the file system allows, for a copy whose files are only
    ever replaced whole (write_json), never written in place."""
    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link_or_copy if link else shutil.copy2)


# ---- the tasks -----------------------------------------------------------------------------------------------

_LOADED: dict[str, object] = {}


def _loaded(model: str):
    """The seeded (or registered) model, kept for the next task in this process: cells of one model follow."""
    from edgehmr.models import load_model

    if model not in _LOADED:
        _LOADED.clear()
        _LOADED[model] = load_model(model)
    return _LOADED[model]


def _guard(stage: str, fn, *args):
    try:
        return fn(*args)
    except EdgeHMRError as e:
        return Failed(stage, str(e), socket.gethostname())
    except Exception as e:  # a crash inside a vendor tool is this cell's result, not the matrix's end
        traceback.print_exc()
        return Failed(stage, f"{type(e).__name__}: {e}", socket.gethostname())


def reference_task(model: str, settings: Settings, key: str, store: str | None) -> Packed | Failed:
    return _guard("reference", _reference, model, settings, key, store)


def _reference(model: str, settings: Settings, key: str, store: str | None) -> Packed:
    from edgehmr.calibration.sources import open_source
    from edgehmr.reference import BUNDLE_JSON, make_bundle

    where = store_folder(store, "references", key)
    final = (where or Path(tempfile.mkdtemp(prefix="edgehmr-ref-"))) / f"reference-{model}"
    try:
        if not (final / BUNDLE_JSON).is_file():
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"  # the reference node: the user's CUDA host
            make_bundle(_loaded(model), open_source(settings.inputs, settings.count, seed=settings.seed), final,
                        device, source=settings.inputs)
        return pack(final, "references", key, store)
    finally:
        if where is None:
            shutil.rmtree(final.parent, ignore_errors=True)


def convert_task(cell: Cell, settings: Settings, key: str, store: str | None) -> tuple[Packed, float, str] | Failed:
    """(the artifact, seconds, what a search did) or the failure."""
    return _guard("convert", _convert, cell, settings, key, store)


def _convert(cell: Cell, settings: Settings, key: str, store: str | None) -> tuple[Packed, float, str]:
    from edgehmr.artifact import read_metadata
    from edgehmr.convert import artifact_path, convert
    from edgehmr.spec import resolve_spec

    where = store_folder(store, "artifacts", key)
    out = where or Path(tempfile.mkdtemp(prefix="edgehmr-convert-"))
    try:
        spec = resolve_spec(cell.model, cell.target, cell.precision, out_dir=str(out), calib=settings.inputs,
                            calib_count=settings.calib_count)  # calib is dropped where nothing is calibrated
        path, note, start = artifact_path(spec), "", time.perf_counter()
        if (path / "metadata.json").is_file():
            meta = read_metadata(path)  # a cached artifact is used only whole and with every hash right
            note = _cached_search(meta) if cell.max_drift else ""
        elif cell.max_drift:
            note = _search(spec, cell)
        else:
            convert(spec, _loaded(cell.model))
        return pack(path, "artifacts", key, store), round(time.perf_counter() - start, 1), note
    finally:
        if where is None:
            shutil.rmtree(out, ignore_errors=True)


def _search(spec, cell: Cell) -> str:
    """``convert --max-drift``, the closest step kept when the budget is not met; what the search did."""
    from edgehmr.convert import calibration_for
    from edgehmr.quant_search import BudgetNotMet, convert_searched, plan_search

    loaded = _loaded(cell.model)
    budget = None if cell.max_drift == "default" else cell.max_drift
    plan = plan_search(spec, loaded.info, budget, cell.search_steps, keep_best=True)
    try:
        _, result = convert_searched(spec, loaded, calibration_for(spec, loaded), plan)
    except BudgetNotMet as e:
        result = e.result
    return result.summary()


def _cached_search(meta: dict) -> str:
    """What the search behind a stored artifact did (its metadata's record), so a rerun reports it as the first
    run did."""
    from edgehmr.quant_search import SearchResult

    record = (meta.get("quantization") or {}).get("search")
    return SearchResult.from_json(record).summary() if record else ""


def device_task(cell: Cell, settings: Settings, artifact: Packed, bundle: Packed | None,
                scratch: str | None = None) -> DeviceResult | Failed:
    return _guard("validate/profile", _on_device, cell, settings, artifact, bundle, scratch)


def _on_device(cell: Cell, settings: Settings, artifact: Packed, bundle: Packed | None,
               scratch: str | None) -> DeviceResult:
    """Validate, check and profile a private copy of the artifact (devices of one cell may share a store)."""
    from edgehmr.errors import TargetUnavailableError

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-device-", dir=scratch))
    try:
        local = work / artifact.name
        copy_folder(materialize(artifact, work / "in"), local)
        bundle_dir = materialize(bundle, work / "in") if bundle is not None else None
        validation = profile = None
        problems: list[str] = []
        notes: list[str] = [ON_DEVICE_FIRST[cell.target](local)] if cell.target in ON_DEVICE_FIRST else []
        if cell.validate:
            from edgehmr.validate import validate

            report = validate(local, bundle_dir, threads=settings.threads)
            validation = report.to_json() | {"device": ran_on(cell.device)}
            problems += failed_checks(report)
            notes.append(validation_summary(report))
        for check in cell.checks:
            bad, note = CHECKS[check](local, validation)
            problems += bad
            notes.append(note)
        if cell.profile:
            from edgehmr.profile import profile as run_profile

            try:
                prof = run_profile(local, settings.runs, settings.warmup, settings.threads)
                profile = prof.to_json()
                profile["device"] = profile["device"] | ran_on(cell.device)
                notes.append(f"p50 {prof.latency.p50_ms:.2f} ms" if prof.latency else "")
            except TargetUnavailableError as e:
                notes.append(f"validated, not timed: {e}")
        detail = "; ".join(problems + [n for n in notes if n])
        return DeviceResult("fail" if problems else "pass", detail, validation, profile, ran_on(cell.device),
                            round(time.perf_counter() - start, 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tensorrt_engine(artifact: Path) -> str:
    """An engine is built for the GPU it runs on: a device with TensorRT rebuilds the build host's (if any)."""
    from edgehmr.converters.tensorrt_engine import ENGINE_FILE, can_build_here

    if not can_build_here():
        return ""
    from edgehmr.converters.tensorrt import build_artifact_engine

    for engine in artifact.rglob(ENGINE_FILE):
        engine.unlink()
    build_artifact_engine(artifact)
    return "TensorRT engine built on the device"


ON_DEVICE_FIRST = {  # target -> what a device does to its copy before validating and timing it
    "tensorrt": _tensorrt_engine,
}


# ---- checks beyond validate's tolerances (a config's cells name them) ----------------------------------------

def failed_checks(report) -> list[str]:
    bad = [f"{n} rel L2 {o['rel_l2']:.1e}" for n, o in report.outputs.items() if not o["ok"]]
    return bad + [f"{m} {t['value']:.3g} {t['unit']} > {t['tolerance']:g}" for m, t in report.task.items()
                  if not t["ok"]]


def validation_summary(report) -> str:
    worst = max(o["rel_l2"] for o in report.outputs.values())
    return f"worst rel L2 {worst:.1e}; " + ", ".join(f"{m} {t['value']:.3g}" for m, t in report.task.items())


def _parity(path: Path, validation: dict | None) -> tuple[list[str], str]:
    if validation is None:
        return ["parity needs validate"], ""
    worst = max(o["rel_l2"] for o in validation["outputs"].values())
    bad = [f"worst rel L2 {worst:.1e} >= {PARITY_REL_L2:g}"] if worst >= PARITY_REL_L2 else []
    return bad, ""


def _delegated(path: Path, validation: dict | None) -> tuple[list[str], str]:
    details = json.loads((path / "metadata.json").read_text())["parts"]["model"]["details"]
    heavy = [op for op in details["non_delegated"] if any(k in op for k in HEAVY_OPS)]
    return ([f"not delegated to XNNPACK: {heavy}"] if heavy else []), ""


def _program(path: Path, validation: dict | None) -> tuple[list[str], str]:
    """Core ML off macOS: the saved ML program's structure (fp16 compute, no fp32 op, the metadata's shapes)."""
    from edgehmr.converters.coreml import program_summary

    summary = program_summary(path / "model.mlpackage")
    meta = json.loads((path / "metadata.json").read_text())
    dtypes = summary["compute_dtypes"]
    problems = []
    if dtypes.get("float16", 0) == 0 or "float32" in dtypes:
        problems.append(f"compute dtypes {dtypes}")
    shapes = [o["shape"] for o in summary["outputs"]]
    expected = [o["shape"] for o in meta["outputs"]]
    if shapes != expected:
        problems.append(f"output shapes {shapes} != {expected}")
    return problems, f"{sum(summary['ops'].values())} ops, fp16 compute {dtypes.get('float16', 0)}"


CHECKS = {
    "parity": _parity,  # FP32: every output within PARITY_REL_L2 of PyTorch FP32
    "delegated": _delegated,  # ExecuTorch: no linear/conv left outside XNNPACK
    "program": _program,  # Core ML: the ML program's structure (predictions need macOS)
}


def cell_json(cell: Cell) -> dict:
    """The cell as JSON types (what its key hashes)."""
    return asdict(cell) | {"checks": list(cell.checks)}
