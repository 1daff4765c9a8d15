"""Static-shape bucketing benchmark (SAT-HMR stage 2 on OpenVINO CPU): bucketed vs exact-count oracle vs all-high-res.

Stage 2 (high-res branch, 9 shared blocks, DAB-DETR decoder) is where SAT-HMR's token count matters. Every
contender is an entry of ONE OpenVINO multi-shape artifact (the same IR reshaped and compiled per static shape,
exactly as ``edgehmr convert --model sat-hmr -t openvino`` ships it), timed in the same run:
- oracle: a graph compiled for the scene's exact token count (what a dynamic-shape runtime would run; a scene
  without small people gets one padded high-res cell, since a zero-length axis has no static graph);
- bucketed: the bucket the host picks from the table (padding masked with -1e4);
- all high-res: a static graph that gives every cell high-resolution tokens (no scale map needed).
The table is fitted to calibration scenes; test scenes are drawn separately from the same distribution (a few
far people as 2x2-cell rectangles of small scale, 0-2 near people as 6x6 rectangles). It also prints the
per-bucket latency curve and how often each bucket is hit on the calibration scenes.

Seeded published-size weights (ViT-B encoder, 6-layer decoder) and synthetic scale maps; the ratios, not the
milliseconds, are the result (oracle and bucketed graphs of a scene are timed in alternation). Run it alone (nothing else on the machine).

    python bench/bucketing.py --canvas 672 --runs 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgehmr.bucketing import Bucket, Selection, buckets_from_counts, classify, pack_into
from edgehmr.converters.base import ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.convert import convert_part, part_metadata
from edgehmr.models.sat_hmr import LOW_RES_CELL, STAGE2_INPUTS, STAGE2_OUTPUTS, SatHmr, Stage2Graph, init_sat_hmr
from edgehmr.targets.base import open_part_runner

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_it  # noqa: E402


def scene(grid: int, rng: np.random.Generator, small: int, large: int) -> Selection:
    """Scale map with ``small`` far people (2x2 cells, scale 0.2) and ``large`` near ones (6x6 cells, 0.8)."""
    conf = rng.uniform(0.0, 0.2, (grid, grid)).astype(np.float32)
    scale = np.ones((grid, grid), np.float32)
    for size, s, count in ((2, 0.2, small), (6, 0.8, large)):
        for _ in range(count):
            y, x = rng.integers(0, grid - size, 2) // 2 * 2
            conf[y:y + size, x:x + size] = rng.uniform(0.5, 1.0)
            scale[y:y + size, x:x + size] = s
    return classify(conf, scale)


def random_scene(grid: int, rng: np.random.Generator) -> Selection:
    return scene(grid, rng, int(rng.integers(0, 6)), int(rng.integers(0, 3)))


def all_high_res(grid: int) -> Selection:
    return classify(np.ones((grid, grid), np.float32), np.zeros((grid, grid), np.float32))


def exact_bucket(selection: Selection) -> Bucket:
    return Bucket.of(max(selection.hr_cells, 1), selection.other_tokens)


def paired(runner, contenders: list[tuple[str, dict]], warmup: int, runs: int) -> list[float]:
    """Median ms of each contender, timed in alternation so that drift in machine speed hits them alike."""
    times: list[list[float]] = [[] for _ in contenders]
    for i in range(warmup + runs):
        for k, (name, feed) in enumerate(contenders):
            start = time.perf_counter()
            runner.run(name, feed)
            if i >= warmup:
                times[k].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canvas", type=int, default=672, help="Square canvas side (multiple of 56).")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--calib-scenes", type=int, default=64)
    ap.add_argument("--test-scenes", type=int, default=8)
    ap.add_argument("--buckets", type=int, default=8)
    ap.add_argument("--hr-step", type=int, default=4, help="Bucket capacities are multiples of these steps.")
    ap.add_argument("--other-step", type=int, default=8)
    args = ap.parse_args()
    grid = args.canvas // LOW_RES_CELL
    torch.manual_seed(0)
    model = SatHmr().eval()
    init_sat_hmr(model)
    image = torch.randn(1, 3, args.canvas, args.canvas)
    with torch.no_grad():
        _, tokens, cls = model.stage1(image)

    rng = np.random.default_rng(0)
    calib = [random_scene(grid, rng) for _ in range(args.calib_scenes)]
    table = buckets_from_counts(calib, (grid, grid), count=args.buckets, hr_step=args.hr_step,
                                other_step=args.other_step)
    hits = Counter(table.choose(s)[0].name for s in calib)
    tests = [random_scene(grid, np.random.default_rng(100 + i)) for i in range(args.test_scenes)]
    dense = all_high_res(grid)

    entries: dict[str, tuple[Selection, Bucket]] = {}
    for b in table.buckets:
        entries[b.name] = (Selection.empty((grid, grid)), b)
    for s in tests:
        entries.setdefault(f"exact-{exact_bucket(s).name}", (s, exact_bucket(s)))
    entries["all-high-res"] = (dense, exact_bucket(dense))

    def feeds(selection: Selection, bucket: Bucket) -> dict[str, np.ndarray]:
        packed = pack_into(selection, bucket, (grid, grid))
        return {"image": image.numpy(), "low_res_tokens": tokens.numpy(), "cls": cls.numpy()} | packed.feeds()

    examples = {name: tuple(torch.from_numpy(v) for v in feeds(*e).values()) for name, e in entries.items()}
    job = ExportJob(Stage2Graph(model).eval(), examples, STAGE2_INPUTS, STAGE2_OUTPUTS, Precision.fp32,
                    "sat-hmr stage 2")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"converting stage 2 to one OpenVINO IR with {len(entries)} entries ...", file=sys.stderr)
        result = convert_part("openvino", job, Path(tmp))
        runner = open_part_runner(Path(tmp), part_metadata("openvino", job, result))

        def run(name: str, selection: Selection, bucket: Bucket) -> float:
            f = feeds(selection, bucket)
            return time_it(lambda: runner.run(name, f), args.warmup, args.runs)[0]

        print(f"canvas {args.canvas} (grid {grid}x{grid}, {grid * grid} cells); seeded SAT-HMR stage 2 (ViT-B, 6-layer "
              f"decoder), OpenVINO {result.details.get('openvino', '')} CPU fp32, {torch.get_num_threads()} threads; "
              f"median of {args.runs} runs\n")
        print("| bucket (hr cells x other) | memory tokens | median ms | calibration hits |")
        print("|---|---:|---:|---:|")
        for bucket in table.buckets:
            print(f"| {bucket.name} | {bucket.memory} | {run(bucket.name, *entries[bucket.name]):.1f} | "
                  f"{hits.get(bucket.name, 0)} |")

        dense_ms = run("all-high-res", *entries["all-high-res"])
        print(f"\nall high-res: {dense.memory_tokens} tokens, {dense_ms:.1f} ms\n")
        print("| scene | small cells | tokens | bucket | oracle ms | bucketed ms | bucketed/oracle | "
              "all-high-res/bucketed |")
        print("|---|---:|---:|---|---:|---:|---:|---:|")
        ratios, speedups = [], []
        for i, s in enumerate(tests):
            bucket, fitted, _ = table.choose(s)
            oracle_ms, bucket_ms = paired(runner, [(f"exact-{exact_bucket(s).name}", feeds(s, exact_bucket(s))),
                                                   (bucket.name, feeds(fitted, bucket))], args.warmup, args.runs)
            ratios.append(bucket_ms / oracle_ms)
            speedups.append(dense_ms / bucket_ms)
            print(f"| {i} | {s.hr_cells} | {s.memory_tokens} | {bucket.name} | {oracle_ms:.1f} | {bucket_ms:.1f} | "
                  f"{ratios[-1]:.2f} | {speedups[-1]:.1f}x |")
        print(f"\nbucketed/oracle: median {np.median(ratios):.2f}, worst {max(ratios):.2f} (goal <= 1.15); "
              f"all-high-res/bucketed: at least {min(speedups):.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
