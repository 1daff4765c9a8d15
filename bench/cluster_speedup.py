"""Does ``edgehmr bench`` finish the tiny-model matrix sooner spread over this machine's cores?

Times the same matrix (every tiny test model x onnx, openvino x fp32, int8, validated and profiled) three ways,
each in a fresh output folder and in alternation, and prints the ratios to in-process:

- in-process (the default),
- ``--jobs N`` (a local process pool, N = the machine's cores),
- ``--cluster auto`` (a Ray cluster started on this machine for the run, start-up included).

Run it alone on the machine. Each way runs in its own ``edgehmr`` process, as a user would run it, so imports and
Ray's start count:

    python bench/cluster_speedup.py              # 2 rounds
    python bench/cluster_speedup.py --rounds 3 --models test-hmr2 test-vitpose
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EDGEHMR = [sys.executable, "-m", "edgehmr"]


def run(way: list[str], models: list[str], out: Path) -> float:
    cmd = [*EDGEHMR, "bench", "--models", ",".join(models), "--targets", "onnx,openvino", "--precisions",
           "fp32,int8", "--count", "4", "--runs", "10", "--warmup", "2", "-o", str(out), *way]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["test-hmr2", "test-vitpose", "test-deformable-hmr"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    ways = {"in-process": [], f"--jobs {cores}": ["--jobs", str(cores)], "--cluster auto": ["--cluster", "auto"]}
    times: dict[str, list[float]] = {w: [] for w in ways}
    print(f"{len(args.models)} models x onnx, openvino x fp32, int8 = {len(args.models) * 4} cells, {cores} cores")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, way in ways.items():
                out = Path(tmp) / f"{r}-{name.replace(' ', '_')}"
                times[name].append(run(way, args.models, out))
                shutil.rmtree(out, ignore_errors=True)
                print(f"round {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
    base = statistics.median(times["in-process"])
    print("\n| way | median s | speed-up vs in-process |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.1f} | {base / statistics.median(t):.2f}x |")


if __name__ == "__main__":
    main()
