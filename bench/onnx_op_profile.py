"""Where an ONNX Runtime artifact spends its time, per operator type: ONNX Runtime's own profiler over the same
inputs for every artifact given, so an INT8 graph can be read against its FP32 twin.

For INT8 QDQ graphs it also splits DequantizeLinear by what it dequantizes (a stored weight, dequantized on every
run, or an activation) and by the operators it feeds: weights dequantized at run time and quantized ops slower
than their float versions (QLinearSoftmax here) are where INT8 loses what its GEMMs gain.

Run it alone on the machine (no builds, tests or helpers):

    python bench/onnx_op_profile.py runs/hmr2-vit-s-onnx-fp32 runs/hmr2-vit-s-onnx-int8 --runs 20
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgehmr.artifact import parts, read_metadata


def profile_artifact(folder: Path, runs: int, warmup: int, threads: int) -> tuple[float, dict, dict]:
    """(ms per run, op type -> (ms per run, nodes), node name -> ms per run) for the artifact's single ONNX part."""
    meta = read_metadata(folder)
    (part,) = parts(meta).values()
    path = folder / part["file"]
    entry = next(iter(part["entries"].values()))
    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32) for name, shape in entry.items()}
    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(warmup):
            session.run(None, feeds)
        start = time.perf_counter()
        for _ in range(runs):
            session.run(None, feeds)
        ms = (time.perf_counter() - start) / runs * 1e3
        events = json.loads(Path(session.end_profiling()).read_text())
    calls = runs + warmup  # the profiler records every run, warm-up included
    by_type: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    by_node: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            by_type[op][0] += event["dur"] / 1e3 / calls
            by_type[op][1] += 1
            by_node[event["name"].removesuffix("_kernel_time")] += event["dur"] / 1e3 / calls
    return ms, {op: (t, n // calls) for op, (t, n) in by_type.items()}, by_node


def dequantize_split(model_path: Path, by_node: dict[str, float]) -> dict[tuple[str, str], tuple[float, int]]:
    """(weight|activation, the op types it feeds) -> (ms per run, nodes) for every DequantizeLinear."""
    model = onnx.load(str(model_path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    feeds = collections.defaultdict(set)
    for node in model.graph.node:
        for name in node.input:
            feeds[name].add(node.op_type)
    split: dict[tuple[str, str], list] = collections.defaultdict(lambda: [0.0, 0])
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.name in by_node:
            key = ("weight" if node.input[0] in weights else "activation",
                   ",".join(sorted(feeds[node.output[0]])) or "graph output")
            split[key][0] += by_node[node.name]
            split[key][1] += 1
    return {k: (t, n) for k, (t, n) in split.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", type=Path, help="ONNX artifact folders (edgehmr convert -t onnx)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's choice)")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    # One after another, with the profiler on: read the per-operator shares, not the latencies (the profiler
    # costs time; bench/quantization.py times contenders in alternation).
    results = {}
    for folder in args.artifacts:
        results[folder] = profile_artifact(folder, args.runs, args.warmup, args.threads)
    base = results[args.artifacts[0]][0]
    for folder, (ms, by_type, by_node) in results.items():
        print(f"\n{folder.name}: {ms:.1f} ms per run ({base / ms:.2f}x the first)")
        total = sum(t for t, _ in by_type.values())
        for op, (t, n) in sorted(by_type.items(), key=lambda kv: -kv[1][0])[:args.top]:
            print(f"  {op:26s} {t:8.2f} ms  {t / total:6.1%}  {n:4d} nodes")
        model_file = folder / next(iter(parts(read_metadata(folder)).values()))["file"]
        split = dequantize_split(model_file, by_node)
        if split:
            print("  DequantizeLinear by what it dequantizes and what it feeds:")
            for (kind, fed), (t, n) in sorted(split.items(), key=lambda kv: -kv[1][0]):
                print(f"    {kind:10s} -> {fed:30s} {t:7.2f} ms  {n:4d} nodes")


if __name__ == "__main__":
    main()
