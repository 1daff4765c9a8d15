"""Shared fixtures: models, bundles and artifacts are built once per session (ONNX export is the slow step)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.models import load_model
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec

SAMPLES = 6
CALIBRATION_SAMPLES = 32

# Property tests see the same generated cases on every run (a CI failure reproduces), keep no example database
# in the checkout, and have no per-example deadline (a model load is slower on a busy CI machine).
settings.register_profile("edgehmr", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("edgehmr")


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Calibration crops are cached by content hash; tests keep theirs out of the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEHMR_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own temporary folder: commands that write to ./runs (the default --out) write there,
    and nothing a test does can see another run's files."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("edgehmr")


@pytest.fixture(scope="session")
def loaded_models():
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_model(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def bundle(workdir, loaded_models):
    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = make_bundle(loaded_models(name), open_source("synthetic", SAMPLES), workdir / f"ref-{name}",
                                      source="synthetic")
        return cache[name]

    return get


@pytest.fixture(scope="session")
def artifact(workdir, loaded_models):
    cache = {}

    def get(name: str, precision: str = "fp32", with_mesh: bool = False, target: str = "onnx") -> Path:
        key = (name, precision, with_mesh, target)
        if key not in cache:
            calib = "synthetic" if precision == "int8" else None
            spec = resolve_spec(name, target, precision, with_mesh=with_mesh, out_dir=str(workdir / "artifacts"),
                                calib=calib, calib_count=CALIBRATION_SAMPLES)
            cache[key] = convert(spec, loaded_models(name))
        return cache[key]

    def release(*names: str) -> None:
        """Delete these models' artifacts: a module whose large artifacts nobody else uses frees the disk (CI
        machines can be short of it) instead of holding them until the session ends."""
        for key in [k for k in cache if k[0] in names]:
            shutil.rmtree(cache.pop(key), ignore_errors=True)

    get.release = release
    return get


@pytest.fixture(scope="session")
def run_wide(tmp_path_factory):
    """``run_wide(key, make)``: ``make(folder) -> Path`` runs once per test run, whichever worker asks first.

    For conversions several test files need (ExecuTorch lowerings take minutes): xdist workers share a folder
    beside their own temporary folders, and a lock makes a second worker wait for the first one's result instead of
    converting again. Nothing here is deleted before the run ends; another worker may still be reading it.
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "run-wide"
    root.mkdir(exist_ok=True)

    def get(key: str, make) -> Path:
        folder = root / key
        done = root / f"{key}.path"
        with FileLock(str(root / f"{key}.lock")):
            if not done.exists():
                path = Path(make(folder))
                done.write_text(str(path))
            return Path(done.read_text())

    return get
