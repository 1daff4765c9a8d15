"""Readers for the timing files the vendors' own tools write on devices that have no Python.

Each reader (in its runtime's home, ``edgehmr.targets.<runtime>``) turns one file into a :class:`NativeTiming` (latency, per-layer times, load/first-inference times,
what the file says about the device). ``read_native`` recognises the format from the content, not the name:

- ``trtexec --exportTimes=F``: a JSON list, one object per inference (``latencyMs``, ``computeMs``, H2D/D2H
  times; TensorRT 8 and 10 key spellings). Every sample is there, so percentiles are exact.
- ``trtexec --exportProfile=F``: a JSON list, ``{"count": N}`` first, then one object per layer
  (``name``, ``timeMs``, ``averageMs``, ``medianMs``, ``percentage``).
- OpenVINO ``benchmark_app -report_type ... -report_folder D [-json_stats]``: ``benchmark_report.csv`` / ``.json``
  (median or ``-latency_percentile`` latency, average, min, max, read/compile/first-inference times) and
  ``benchmark_{average,detailed}_counters_report.csv`` / ``.json`` (per layer, real time).
- ExecuTorch ETDump (``executor_runner --etdump_path F``, or a Module loaded with ``enable_etdump``): read with
  the ExecuTorch Inspector; ``Method::execute`` gives one sample per inference, operator events the layers.
- Core ML: Xcode's performance report has no machine-readable export, so apps write a small JSON
  (format ``edgehmr-coreml-timings/1``; docs/profiling.md shows the Swift that writes it) with per-prediction times
  and, optionally, ``MLComputePlan``'s per-op device and estimated cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgehmr.errors import InputError
from edgehmr.jsonfile import parse_json

COREML_FORMAT = "edgehmr-coreml-timings/1"
ETDUMP_IDENTIFIER = b"ED00"  # flatbuffer file identifier after the size prefix and root offset
TOP_LAYERS = 25  # per-layer rows kept in profile.json (the slowest)


@dataclass
class NativeTiming:
    tool: str
    target: str  # the artifact target this tool runs
    samples_ms: list[float] | None = None  # one per inference, when the file has them
    runs: int | None = None  # inferences behind a summary
    summary_ms: dict[str, float] | None = None  # p50/mean/min/max (and the percentile) when it has only those
    layers: list[dict] = field(default_factory=list)  # {"name", "type", "ms", "share"}, slowest first
    load_s: float | None = None
    first_inference_ms: float | None = None
    device: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def has_latency(self) -> bool:
        return bool(self.samples_ms) or bool(self.summary_ms)


def read_native(path: Path) -> list[NativeTiming]:
    """One timing per recognised file; a folder yields every recognised file inside (benchmark_app's report
    folder holds two)."""
    path = Path(path)
    if path.is_dir():
        found = [t for p in sorted(path.iterdir()) if p.is_file() for t in _read_if_known(p)]
        if not found:
            raise InputError(f"{path} holds no timing file edgehmr can read ({_KNOWN}).")
        return found
    if not path.is_file():
        raise InputError(f"Timing file not found: {path}")
    timings = _read_if_known(path)
    if not timings:
        raise InputError(f"{path} is not a timing file edgehmr can read ({_KNOWN}).")
    return timings


_KNOWN = ("trtexec --exportTimes/--exportProfile JSON, OpenVINO benchmark_app report CSV/JSON, ExecuTorch ETDump, "
          f"Core ML {COREML_FORMAT} JSON")


def _read_if_known(path: Path) -> list[NativeTiming]:
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path} is empty.")
    if raw[8:12] == ETDUMP_IDENTIFIER:
        from edgehmr.targets.executorch import read_etdump

        return [read_etdump(path)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    if text.lstrip()[:1] in "[{":
        try:
            data = parse_json(text, str(path))
        except InputError:
            if path.suffix.lower() == ".json":
                raise
            return []  # a log that starts with "[" (benchmark_app's stdout), not a report
        reader = _json_reader(data)
        return [reader(data, path)] if reader else []
    if "layerName;" in text.splitlines()[0]:
        from edgehmr.targets.openvino import benchmark_app_counters_csv

        return [benchmark_app_counters_csv(text, path)]
    if "Execution results" in text and ";" in text:
        from edgehmr.targets.openvino import benchmark_app_report_csv

        return [benchmark_app_report_csv(text, path)]
    return []


def _json_reader(data) -> Callable[[object, Path], NativeTiming] | None:
    """The reader of a JSON timing file, told by its content; each reader lives in its runtime's home."""
    from edgehmr.targets import coreml, openvino, tensorrt

    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if "count" in data[0] and any("averageMs" in d for d in data[1:]):
            return tensorrt.trtexec_profile
        if any("latencyMs" in d or "computeMs" in d for d in data):
            return tensorrt.trtexec_times
    if isinstance(data, dict):
        if "execution_results" in data:
            return openvino.benchmark_app_report_json
        if data.get("report_type") in ("average", "detailed"):
            return openvino.benchmark_app_counters_json
        if data.get("format") == COREML_FORMAT:
            return coreml.coreml_app_timings
    return None


def ranked(layers: list[dict]) -> list[dict]:
    total = sum(layer["ms"] for layer in layers) or 1.0
    for layer in layers:
        layer["share"] = layer["ms"] / total
    return sorted(layers, key=lambda layer: -layer["ms"])[:TOP_LAYERS]
