"""``edgehmr profile``: how fast, how much memory and how big an artifact is on the machine it runs on.

Measured with the same runners ``validate`` uses: load time (runner construction: reading, compiling), the first
inference (lazy initialisation, kernel selection), then ``runs`` timed inferences after ``warmup`` untimed ones:
p50/p90/p99 and mean ± std after clipping outliers (beyond 3 scaled median absolute deviations, e.g. a
scheduler hiccup; from 10 runs on), peak resident memory of the process and its growth over loading and running,
and the artifact's size on disk. Per bucket (and stage 1) for SAT-HMR. Simulated runs (Core ML off macOS, TensorRT
without an engine) are refused: their timings would describe the simulation, not the device.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgehmr.artifact import PROFILE_FILE, artifact_mb, parts, read_metadata, write_json
from edgehmr.environment import environment
from edgehmr.errors import InputError, TargetUnavailableError
from edgehmr.tasks import FRAMES, artifact_task

MAD_CLIP = 3.0  # outliers: further than this many scaled MADs from the median
MIN_RUNS_TO_CLIP = 10


@dataclass
class LatencyStats:
    runs: int | None
    p50_ms: float | None
    p90_ms: float | None  # None: imported from a tool that reports only a median/average (benchmark_app)
    p99_ms: float | None
    mean_ms: float | None  # after clipping outliers
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    clipped: int  # runs left out of mean/std as outliers

    @classmethod
    def of(cls, samples_ms: list[float]) -> LatencyStats:
        a = np.asarray(samples_ms, np.float64)
        median = float(np.median(a))
        mad = 1.4826 * float(np.median(np.abs(a - median)))
        # Too few runs to tell an outlier from the spread: nothing is clipped below MIN_RUNS_TO_CLIP.
        clip = mad > 0 and len(a) >= MIN_RUNS_TO_CLIP
        kept = a[np.abs(a - median) <= MAD_CLIP * mad] if clip else a
        p50, p90, p99 = (float(np.percentile(a, q)) for q in (50, 90, 99))
        return cls(len(a), p50, p90, p99, float(kept.mean()), float(kept.std()), float(a.min()), float(a.max()),
                   int(len(a) - len(kept)))

    @classmethod
    def of_summary(cls, summary: dict[str, float], runs: int | None) -> LatencyStats:
        """A tool's own summary (no samples): what it did not report stays None rather than being guessed."""
        return cls(runs, summary.get("p50_ms"), summary.get("p90_ms"), summary.get("p99_ms"), summary.get("mean_ms"),
                   None, summary.get("min_ms"), summary.get("max_ms"), 0)


@dataclass
class ProfileReport:
    artifact: str
    model: str
    target: str
    precision: str
    execution: str
    device: dict
    size_mb: float
    load_s: float | None
    first_inference_ms: float | None
    latency: LatencyStats | None  # one whole inference (SAT-HMR: a frame through both stages; stages: per_entry)
    peak_rss_mb: float | None  # of this process, at the end (None: imported, the tool does not report it)
    rss_growth_mb: float | None  # peak resident memory added by loading and running the artifact
    threads: int | None
    per_entry: dict[str, dict] = field(default_factory=dict)  # SAT-HMR: stage 1 and every bucket
    notes: list[str] = field(default_factory=list)
    source: str = "edgehmr profile"  # or the native tool whose output was imported
    layers: list[dict] = field(default_factory=list)  # imported per-layer times, slowest first

    def to_json(self) -> dict:
        return asdict(self)


def device_info() -> dict:
    """What the numbers were measured on: CPU, cores, OS, accelerator hints, Jetson power mode where readable."""
    info = {"cpu": environment()["device_name"], "cores": os.cpu_count(), "os": platform.platform(),
            "machine": platform.machine()}
    nvpmodel = Path("/etc/nvpmodel.conf")
    if nvpmodel.exists():  # Jetson: the power mode changes latency by 2-3x, so it belongs to every number
        info["jetson_power_mode"] = _read_first(Path("/var/lib/nvpmodel/status")) or "unknown"
    if sys.platform == "darwin":
        info["apple_silicon"] = platform.machine() == "arm64"
    return info


def _read_first(path: Path) -> str | None:
    try:
        return path.read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return None


def _rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _timed(fn: Callable[[], object], warmup: int, runs: int, progress: Callable[[int], None] | None) -> list[float]:
    for _ in range(warmup):
        fn()
        if progress:
            progress(1)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
        if progress:
            progress(1)
    return samples


ON_THE_DEVICE = ("profiling measures the device, so run 'edgehmr profile' on it (or import its native tool's output "
                 "with 'edgehmr profile ARTIFACT --import FILE')")


def _refuse_simulation(execution: str) -> None:
    if execution.startswith("simulated"):
        raise TargetUnavailableError(f"This artifact cannot run natively here ({execution}); {ON_THE_DEVICE}.")


@contextlib.contextmanager
def _device_only():
    """Runtimes that cannot run here refuse before anything is built or timed; profile says where to run it."""
    try:
        yield
    except TargetUnavailableError as e:
        raise TargetUnavailableError(f"{str(e).rstrip('.')}; {ON_THE_DEVICE}.") from None


def progress_steps(meta: dict, warmup: int, runs: int) -> int:
    """Progress-bar length: every entry of every part, and the whole frame where there are several parts."""
    every = parts(meta).values()
    timed = sum(len(part["entries"]) for part in every) + (len(every) > 1)
    return timed * (warmup + runs)


def profile(artifact_dir: str | Path, runs: int = 50, warmup: int = 5, threads: int | None = None,
            progress: Callable[[int], None] | None = None) -> ProfileReport:
    if runs < 1 or warmup < 0:
        raise InputError(f"--runs must be at least 1 and --warmup at least 0 (got {runs}, {warmup}).")
    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    rss_before = _rss_mb()
    if artifact_task(meta).input == FRAMES:
        return _profile_sat(artifact_dir, meta, runs, warmup, threads, progress, rss_before)
    from edgehmr.targets.base import open_artifact_runner

    start = time.perf_counter()
    with _device_only():
        runner = open_artifact_runner(artifact_dir, meta, threads=threads, simulate=False)
    load_s = time.perf_counter() - start
    _refuse_simulation(runner.execution)
    rng = np.random.default_rng(0)
    entry = runner.default_entry
    shapes = runner.part["entries"][entry]
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    start = time.perf_counter()
    runner.run(entry, feeds)
    first_ms = (time.perf_counter() - start) * 1e3
    samples = _timed(lambda: runner.run(entry, feeds), warmup, runs, progress)
    return ProfileReport(str(artifact_dir), meta["model"]["model"], meta["target"], meta["precision"],
                         runner.execution, device_info(), round(artifact_mb(artifact_dir), 2), load_s, first_ms,
                         LatencyStats.of(samples), _rss_mb(), _rss_mb() - rss_before, threads,
                         notes=_notes(meta))


def _profile_sat(artifact_dir: Path, meta: dict, runs: int, warmup: int, threads: int | None,
                 progress: Callable[[int], None] | None, rss_before: float) -> ProfileReport:
    """The whole frame (stage 1, host bucketing, stage 2 in the bucket this frame picks), then stage 1 and every
    bucket of stage 2 on their own (fixed shapes: the timing does not depend on which slots are padding)."""
    from edgehmr.bucketing import Selection, pack_into
    from edgehmr.sat.runner import STAGE1_ENTRY, SatPipeline
    from edgehmr.sat.tables import demotion_note

    start = time.perf_counter()
    with _device_only():
        pipe = SatPipeline(artifact_dir, threads, simulate=False)
    load_s = time.perf_counter() - start
    _refuse_simulation(pipe.execution)
    image = np.random.default_rng(0).standard_normal(pipe.input_shape).astype(np.float32)
    start = time.perf_counter()
    chosen = pipe.run(image).bucket
    first_ms = (time.perf_counter() - start) * 1e3
    frame = LatencyStats.of(_timed(lambda: pipe.run(image), warmup, runs, progress))
    first = pipe.stage1.run(STAGE1_ENTRY, {"image": image})
    per_entry = {"stage1": asdict(LatencyStats.of(_timed(lambda: pipe.stage1.run(STAGE1_ENTRY, {"image": image}),
                                                         warmup, runs, progress)))}
    grid = pipe.table.grid
    nothing = Selection.empty(grid)
    for bucket in pipe.table.buckets:
        feeds = {"image": image, "low_res_tokens": first["low_res_tokens"], "cls": first["cls"]}
        feeds |= pack_into(nothing, bucket, grid).feeds()
        stats = LatencyStats.of(_timed(lambda: pipe.stage2.run(bucket.name, feeds), warmup, runs, progress))
        per_entry[bucket.name] = asdict(stats) | {"memory_tokens": bucket.memory}
    notes = _notes(meta) + demotion_note(meta["buckets"]) + [
        f"whole-frame latency: a random frame, which picked bucket {chosen}; stage 1 and every bucket alone are in "
        f"per_entry"]
    return ProfileReport(str(artifact_dir), meta["model"]["model"], meta["target"], meta["precision"], pipe.execution,
                         device_info(), round(artifact_mb(artifact_dir), 2), load_s, first_ms, frame, _rss_mb(),
                         _rss_mb() - rss_before, threads, per_entry, notes)


def _notes(meta: dict) -> list[str]:
    return ["untrained (seeded) weights: latency is real, accuracy is not"] if meta["model"]["weights"] == "untrained" \
        else []


def import_profile(artifact_dir: str | Path, files: list[Path], device: str | None = None) -> ProfileReport:
    """A profile from native tools' outputs (see :mod:`edgehmr.native_profiles`) for the artifact they timed.

    Several files combine: latency from one (samples beat a summary), per-layer times from another (trtexec
    ``--exportTimes`` + ``--exportProfile``, or benchmark_app's report folder). ``device`` labels the machine
    when the files do not say (trtexec and ETDump do not).
    """
    from edgehmr.native_profiles import read_native

    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    if artifact_task(meta).input == FRAMES:
        raise InputError("Importing native timings for two-stage SAT-HMR artifacts is not supported yet: run "
                         "'edgehmr profile' on the device.")
    timings = [t for f in files for t in read_native(Path(f))]
    for t in timings:
        if t.target != meta["target"]:
            raise InputError(f"{t.tool} timings describe a {t.target} artifact, but {artifact_dir} is "
                             f"{meta['target']}: import them for the artifact the tool ran.")
    with_latency = sorted((t for t in timings if t.has_latency), key=lambda t: t.samples_ms is None)
    if not with_latency and not any(t.layers for t in timings):
        raise InputError("The imported files hold neither latency nor per-layer times.")
    notes = _notes(meta) + [n for t in timings for n in t.notes]
    latency = None
    if with_latency:
        best = with_latency[0]
        latency = LatencyStats.of(best.samples_ms) if best.samples_ms else \
            LatencyStats.of_summary(best.summary_ms, best.runs)
        if len(with_latency) > 1:
            notes.append(f"latency from {best.tool}; the other files' latency was not used")
    else:
        notes.append("no end-to-end latency in the imported files (per-layer times only)")
    layers = next((t.layers for t in timings if t.layers), [])
    info = {"label": device} if device else {}
    for t in timings:
        info = t.device | info
    first = next((t.first_inference_ms for t in timings if t.first_inference_ms is not None), None)
    load = next((t.load_s for t in timings if t.load_s is not None), None)
    tools = " + ".join(dict.fromkeys(t.tool for t in timings))
    return ProfileReport(str(artifact_dir), meta["model"]["model"], meta["target"], meta["precision"],
                         "device (imported)", info, round(artifact_mb(artifact_dir), 2), load, first, latency, None,
                         None, None, notes=notes, source=f"imported: {tools}", layers=layers)


def save_profile(report: ProfileReport, out: Path | None = None) -> Path:
    path = out or Path(report.artifact) / PROFILE_FILE
    write_json(path, report.to_json())
    return path
