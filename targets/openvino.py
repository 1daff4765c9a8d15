"""OpenVINO runner (CPU plugin), compiled with the runtime settings the artifact recorded at conversion
(see ``edgehmr.converters.openvino.runtime_config``).

The IR of a part with several entries has dynamic axes; each entry gets its own CompiledModel of a copy reshaped
to the entry's static shapes, so every entry runs with static-shape kernels (or, with ``shared_weights``, one
CompiledModel of the bounded-dynamic IR with an infer request per entry: weights held once).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from edgehmr.doctor import pip_install
from edgehmr.errors import InputError, TargetUnavailableError
from edgehmr.progress import step
from edgehmr.native_profiles import NativeTiming, ranked
from edgehmr.targets.base import RunOptions, Runner


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise TargetUnavailableError("Running OpenVINO artifacts needs OpenVINO: "
                                     f"{pip_install('openvino')}.") from None
    return ov


def compile_config(runtime_config: dict | None, threads: int | None) -> dict:
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"} | (runtime_config or {})
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class OpenVINORunner(Runner):
    """One static CompiledModel per entry, all compiled at load so no entry pays compilation on first use; or,
    with ``shared_weights``, one CompiledModel for every entry (each infer request keeps its entry's shapes)."""

    def __init__(self, model_path: Path, part: dict, threads: int | None = None, device: str = "CPU",
                 shared_weights: bool = False):
        super().__init__(part)
        ov = _openvino()
        core = ov.Core()
        model = core.read_model(str(model_path))
        config = compile_config(part.get("details", {}).get("runtime_config"), threads)
        self._compiled = {}
        shared = core.compile_model(model, device, config) if shared_weights else None
        static = not model.is_dynamic()
        for i, (entry, shapes) in enumerate(part["entries"].items(), 1):
            if len(part["entries"]) > 1:
                step(f"OpenVINO compiling {entry} ({i}/{len(part['entries'])})")
            if shared is not None:
                compiled = shared
            elif static:  # one fixed shape (a crop model): the IR is already the entry's graph
                compiled = core.compile_model(model, device, config)
            else:
                reshaped = model.clone()
                reshaped.reshape({name: ov.PartialShape(shape) for name, shape in shapes.items()})
                compiled = core.compile_model(reshaped, device, config)
            self._compiled[entry] = (compiled, compiled.create_infer_request())

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled, request = self._compiled[entry]
        result = request.infer(feeds)
        # reason: the result views the request's output buffers, which the next infer() overwrites.
        return {p.get_any_name(): np.array(result[p], copy=True) for p in compiled.outputs}

    def model_names(self) -> tuple[set[str], set[str]]:
        compiled = next(iter(self._compiled.values()))[0]
        return ({n for p in compiled.inputs for n in p.get_names()},
                {n for p in compiled.outputs for n in p.get_names()})


def open_runner(artifact_dir: Path, part: dict, options: RunOptions = RunOptions()) -> OpenVINORunner:
    return OpenVINORunner(artifact_dir / part["file"], part, options.threads, shared_weights=options.shared_weights)


# Native timings: benchmark_app's report and counters (see edgehmr.native_profiles)

def _benchmark_app_report(cmd: dict, config: dict, results: dict) -> NativeTiming:
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


def benchmark_app_report_json(data: dict, path: Path) -> NativeTiming:
    return _benchmark_app_report(data.get("cmd_options", {}), data.get("configuration_setup", {}),
                            data["execution_results"])


def benchmark_app_report_csv(text: str, path: Path) -> NativeTiming:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for row in csv.reader(io.StringIO(text), delimiter=";"):
        if len(row) == 1 and row[0].strip():
            current = sections.setdefault(row[0].strip(), {})
        elif len(row) >= 2 and current is not None:
            current[row[0].strip()] = row[1].strip()
    if "Execution results" not in sections:
        raise InputError(f"{path}: benchmark_app report without an 'Execution results' section.")
    return _benchmark_app_report(sections.get("Command line parameters", {}), sections.get("Configuration setup", {}),
                            sections["Execution results"])


def benchmark_app_counters_csv(text: str, path: Path) -> NativeTiming:
    # detailed_counters repeats the table per infer request; average the executed layers over the tables.
    totals: dict[str, list] = {}
    for row in csv.DictReader(io.StringIO(text), delimiter=";"):
        name = (row.get("layerName") or "").strip()
        if not name or (row.get("execStatus") or "").strip() != "Status.EXECUTED":
            continue
        entry = totals.setdefault(name, [row.get("layerType", ""), 0.0, 0])
        entry[1] += float(row["realTime (ms)"])
        entry[2] += 1
    return _benchmark_app_layers(totals, path)


def benchmark_app_counters_json(data: dict, path: Path) -> NativeTiming:
    blocks = [data["avg_performance"]] if data["report_type"] == "average" else data["detailed_performance"]
    totals: dict[str, list] = {}
    for block in blocks:
        for node in block.get("nodes", []):
            if node.get("status") != "Status.EXECUTED":
                continue
            entry = totals.setdefault(node["name"], [node.get("node_type", ""), 0.0, 0])
            entry[1] += float(node["real_time"])
            entry[2] += 1
    return _benchmark_app_layers(totals, path)


def _benchmark_app_layers(totals: dict[str, list], path: Path) -> NativeTiming:
    layers = [{"name": n, "type": t, "ms": ms / count} for n, (t, ms, count) in totals.items()]
    timing = NativeTiming("OpenVINO benchmark_app counters", "openvino", layers=ranked(layers))
    if not totals:  # seen with -json_stats -report_type average_counters: one NOT_RUN node; the CSV is complete
        timing.notes.append(f"{path.name} lists no executed layer (benchmark_app's average-counters JSON can be "
                            f"incomplete: use the CSV report)")
    return timing
