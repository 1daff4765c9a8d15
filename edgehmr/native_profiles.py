"""Readers for the timing files the vendors' own tools write on devices that have no Python.

Each reader turns one file into a :class:`NativeTiming` (latency, per-layer times, load/first-inference times,
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

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgehmr.errors import InputError, TargetUnavailableError

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
        return [_read_etdump(path)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    if text.lstrip()[:1] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if path.suffix.lower() == ".json":
                raise InputError(f"{path} does not parse as JSON ({e}).") from None
            return []  # a log that starts with "[" (benchmark_app's stdout), not a report
        reader = _json_reader(data)
        return [reader(data, path)] if reader else []
    if "layerName;" in text.splitlines()[0]:
        return [_openvino_counters_csv(text, path)]
    if "Execution results" in text and ";" in text:
        return [_openvino_report_csv(text, path)]
    return []


def _json_reader(data) -> Callable[[object, Path], NativeTiming] | None:
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if "count" in data[0] and any("averageMs" in d for d in data[1:]):
            return _trtexec_profile
        if any("latencyMs" in d or "computeMs" in d for d in data):
            return _trtexec_times
    if isinstance(data, dict):
        if "execution_results" in data:
            return _openvino_report_json
        if data.get("report_type") in ("average", "detailed"):
            return _openvino_counters_json
        if data.get("format") == COREML_FORMAT:
            return _coreml_timings
    return None


# --- TensorRT ---------------------------------------------------------------------------------------------------

def _trtexec_times(data: list[dict], path: Path) -> NativeTiming:
    rows = [d for d in data if "latencyMs" in d or "computeMs" in d]
    # latencyMs = H2D + compute + D2H of one inference (what an app waits for); computeMs = GPU time alone.
    latency = [float(d["latencyMs"]) if "latencyMs" in d else float(d["computeMs"]) for d in rows]
    timing = NativeTiming("trtexec --exportTimes", "tensorrt", samples_ms=latency)
    compute = [float(d["computeMs"]) for d in rows if "computeMs" in d]
    if compute and "latencyMs" in rows[0]:
        compute.sort()
        timing.notes.append(f"GPU compute alone: median {compute[len(compute) // 2]:.3f} ms (latency adds the "
                            f"host-device copies)")
    return timing


def _trtexec_profile(data: list[dict], path: Path) -> NativeTiming:
    layers = [{"name": d["name"], "type": "", "ms": float(d["averageMs"])} for d in data[1:] if "averageMs" in d]
    timing = NativeTiming("trtexec --exportProfile", "tensorrt", layers=_ranked(layers))
    timing.notes.append(f"per-layer averages over {data[0]['count']} profiled runs (per-layer profiling adds "
                        f"synchronisation, so their sum exceeds the end-to-end latency)")
    return timing


# --- OpenVINO benchmark_app -------------------------------------------------------------------------------------

def _openvino_report(cmd: dict, config: dict, results: dict) -> NativeTiming:
    def num(key: str) -> float | None:
        value = results.get(key)
        return float(value) if value not in (None, "") else None

    percentile = int(cmd.get("-latency_percentile") or 50)
    summary = {"mean_ms": num("avg latency"), "min_ms": num("min latency"), "max_ms": num("max latency")}
    summary[f"p{percentile}_ms"] = num("latency (ms)")
    timing = NativeTiming("OpenVINO benchmark_app", "openvino",
                          summary_ms={k: v for k, v in summary.items() if v is not None})
    read_ms, compile_ms = num("read model time (ms)"), num("compile model time (ms)")
    if compile_ms is not None:
        timing.load_s = ((read_ms or 0.0) + compile_ms) / 1e3
    timing.first_inference_ms = num("first inference time (ms)")
    timing.device = {"device": config.get("target device") or cmd.get("-d", "")}
    iterations, requests = results.get("total number of iterations"), config.get("number of parallel infer requests")
    timing.runs = int(iterations) if iterations else None
    timing.notes.append(f"benchmark_app: {iterations} iterations, {requests} infer request(s), API "
                        f"{config.get('API', '?')}; only median/percentile, average, min and max are reported")
    if requests not in (None, "1"):
        timing.notes.append("more than one parallel request: latency includes queueing (use -hint latency)")
    return timing


def _openvino_report_json(data: dict, path: Path) -> NativeTiming:
    return _openvino_report(data.get("cmd_options", {}), data.get("configuration_setup", {}),
                            data["execution_results"])


def _openvino_report_csv(text: str, path: Path) -> NativeTiming:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for row in csv.reader(io.StringIO(text), delimiter=";"):
        if len(row) == 1 and row[0].strip():
            current = sections.setdefault(row[0].strip(), {})
        elif len(row) >= 2 and current is not None:
            current[row[0].strip()] = row[1].strip()
    if "Execution results" not in sections:
        raise InputError(f"{path}: benchmark_app report without an 'Execution results' section.")
    return _openvino_report(sections.get("Command line parameters", {}), sections.get("Configuration setup", {}),
                            sections["Execution results"])


def _openvino_counters_csv(text: str, path: Path) -> NativeTiming:
    # detailed_counters repeats the table per infer request; average the executed layers over the tables.
    totals: dict[str, list] = {}
    for row in csv.DictReader(io.StringIO(text), delimiter=";"):
        name = (row.get("layerName") or "").strip()
        if not name or (row.get("execStatus") or "").strip() != "Status.EXECUTED":
            continue
        entry = totals.setdefault(name, [row.get("layerType", ""), 0.0, 0])
        entry[1] += float(row["realTime (ms)"])
        entry[2] += 1
    return _openvino_layers(totals, path)


def _openvino_counters_json(data: dict, path: Path) -> NativeTiming:
    blocks = [data["avg_performance"]] if data["report_type"] == "average" else data["detailed_performance"]
    totals: dict[str, list] = {}
    for block in blocks:
        for node in block.get("nodes", []):
            if node.get("status") != "Status.EXECUTED":
                continue
            entry = totals.setdefault(node["name"], [node.get("node_type", ""), 0.0, 0])
            entry[1] += float(node["real_time"])
            entry[2] += 1
    return _openvino_layers(totals, path)


def _openvino_layers(totals: dict[str, list], path: Path) -> NativeTiming:
    layers = [{"name": n, "type": t, "ms": ms / count} for n, (t, ms, count) in totals.items()]
    timing = NativeTiming("OpenVINO benchmark_app counters", "openvino", layers=_ranked(layers))
    if not totals:  # seen with -json_stats -report_type average_counters: one NOT_RUN node; the CSV is complete
        timing.notes.append(f"{path.name} lists no executed layer (benchmark_app's average-counters JSON can be "
                            f"incomplete: use the CSV report)")
    return timing


# --- ExecuTorch ETDump ------------------------------------------------------------------------------------------

def _read_etdump(path: Path) -> NativeTiming:
    try:
        from executorch.devtools import Inspector
    except ImportError:
        raise TargetUnavailableError("Reading an ETDump needs ExecuTorch's devtools: pip install "
                                     "'edgehmr[executorch]'.") from None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor debug data, timings only
            inspector = Inspector(etdump_path=str(path))
    except Exception as e:  # the Inspector raises bare Exceptions on foreign bytes
        raise InputError(f"{path} is not a readable ETDump ({str(e).splitlines()[0][:120]}).") from None
    samples, layers, load_ms = [], [], None
    for block in inspector.event_blocks:
        for event in block.events:
            raw = list(event.perf_data.raw) if event.perf_data else []
            if not raw:
                continue
            if event.name == "Method::execute":
                samples = [float(x) for x in raw]
            elif event.name == "Program::load_method":  # includes Method::init (delegate compilation)
                load_ms = float(raw[0])
            elif block.name != "Default" and event.name not in ("DELEGATE_CALL", "OPERATOR_CALL"):
                kind = "delegated" if event.is_delegated_op else "portable"
                layers.append({"name": event.name, "type": kind, "ms": sum(raw) / len(raw)})
    timing = NativeTiming("ExecuTorch ETDump", "executorch", samples_ms=samples or None, layers=_ranked(layers),
                          load_s=load_ms / 1e3 if load_ms is not None else None)
    if not samples:
        timing.notes.append("the ETDump has no Method::execute events: per-operator times only")
    return timing


# --- Core ML ----------------------------------------------------------------------------------------------------

def _coreml_timings(data: dict, path: Path) -> NativeTiming:
    predictions = data.get("prediction_ms")
    if not isinstance(predictions, list) or not predictions:
        raise InputError(f"{path}: {COREML_FORMAT} needs a non-empty 'prediction_ms' list.")
    ops = [{"name": o.get("name", "?"), "type": o.get("type", ""), "ms": None,
            "estimated_cost": float(o.get("estimated_cost", 0.0)), "device": o.get("device", "")}
           for o in data.get("ops", [])]
    ops.sort(key=lambda o: -o["estimated_cost"])
    timing = NativeTiming("Core ML app timings", "coreml", samples_ms=[float(x) for x in predictions], layers=ops[:TOP_LAYERS])
    timing.load_s = float(data["load_ms"]) / 1e3 if "load_ms" in data else None
    timing.first_inference_ms = float(data["first_prediction_ms"]) if "first_prediction_ms" in data else None
    timing.device = {k: data[k] for k in ("device", "os", "compute_units") if k in data}
    if ops:
        timing.notes.append("Core ML ops: MLComputePlan's estimated cost (relative), not measured times")
    return timing


def _ranked(layers: list[dict]) -> list[dict]:
    total = sum(layer["ms"] for layer in layers) or 1.0
    for layer in layers:
        layer["share"] = layer["ms"] / total
    return sorted(layers, key=lambda layer: -layer["ms"])[:TOP_LAYERS]
