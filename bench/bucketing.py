"""Static-shape bucketing benchmark (SAT-HMR stage 2): bucketed vs exact-count oracle vs all-high-res.

Stage 2 (high-res branch, 9 shared blocks, DAB-DETR decoder) is where SAT-HMR's token count matters; it is timed on
fixed-size buffers exactly as a static-shape target runs them. Contenders, per scene:
- oracle: a graph for the exact token count of the image (what a dynamic-shape runtime would do);
- bucketed: the smallest bucket of the table that holds the image (padding masked with -1e4);
- all high-res: a static graph that gives every cell high-resolution tokens (no scale map needed).
It also prints the per-bucket latency curve and how often each bucket is hit on the calibration scenes.

Seeded weights and synthetic scale maps (people as rectangles of confidence/scale), PyTorch eager on this CPU;
the ratios, not the milliseconds, are the result. Run it alone.

    python bench/bucketing.py --canvas 672 --runs 5
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch

from edgehmr.bucketing import MASK_PAD, Bucket, Selection, buckets_from_counts, classify, pack_into
from edgehmr.models.sat_hmr import LOW_RES_CELL, SatHmr, init_sat_hmr
from quantization import time_it


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


def all_high_res(grid: int) -> Selection:
    return classify(np.ones((grid, grid), np.float32), np.zeros((grid, grid), np.float32))


def buffers(selection: Selection, bucket: Bucket | None, grid: int):
    """Packed inputs for ``bucket`` (None: exactly the selection's tokens, no padding)."""
    packed = pack_into(selection, bucket or Bucket.of(selection.hr_cells, selection.other_tokens), (grid, grid))
    return tuple(torch.from_numpy(v) for v in packed.feeds().values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canvas", type=int, default=672, help="Square canvas side (multiple of 56).")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--calib-scenes", type=int, default=64)
    ap.add_argument("--buckets", type=int, default=4)
    ap.add_argument("--hr-step", type=int, default=4, help="Bucket capacities are multiples of these steps.")
    ap.add_argument("--other-step", type=int, default=32)
    args = ap.parse_args()
    grid = args.canvas // LOW_RES_CELL
    torch.manual_seed(0)
    model = SatHmr().eval()
    init_sat_hmr(model)
    rng = np.random.default_rng(0)
    image = torch.randn(1, 3, args.canvas, args.canvas)
    with torch.no_grad():
        _, tokens, cls = model.stage1(image)

    calib = [scene(grid, rng, int(rng.integers(0, 5)), int(rng.integers(0, 3))) for _ in range(args.calib_scenes)]
    table = buckets_from_counts(calib, (grid, grid), count=args.buckets, hr_step=args.hr_step,
                                other_step=args.other_step)
    hits = Counter(table.choose(s)[0].name for s in calib)

    def run(inputs):
        with torch.no_grad():
            return time_it(lambda: model.stage2(image, tokens, cls, *inputs), args.warmup, args.runs)[0]

    print(f"canvas {args.canvas} (grid {grid}x{grid}); seeded SAT-HMR stage 2, PyTorch eager, "
          f"{torch.get_num_threads()} threads\n")
    print("| bucket (hr cells x other) | memory tokens | median ms | calibration hits |")
    print("|---|---:|---:|---:|")
    for bucket in table.buckets:
        full = Selection(np.zeros((grid, grid), bool), np.zeros((grid, grid), bool),
                         np.zeros((grid // 2, grid // 2), bool), np.zeros((grid, grid), np.float32))
        inputs = buffers(full, bucket, grid)
        print(f"| {bucket.name} | {bucket.memory} | {run(inputs):.1f} | {hits.get(bucket.name, 0)} |")

    print("\n| scene | tokens | bucket | oracle ms | bucketed ms | all-high-res ms | bucketed/oracle | "
          "all-high-res/bucketed |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    dense = buffers(all_high_res(grid), None, grid)
    dense_ms = run(dense)
    for label, small, large in (("empty", 0, 0), ("2 far people", 2, 0), ("2 far + 1 near", 2, 1),
                                ("4 far + 2 near", 4, 2)):
        selection = scene(grid, np.random.default_rng(7), small, large)
        bucket, fitted, _ = table.choose(selection)
        exact = buffers(fitted, None, grid)
        bucketed = buffers(fitted, bucket, grid)
        oracle_ms, bucket_ms = run(exact), run(bucketed)
        print(f"| {label} | {selection.memory_tokens} | {bucket.name} | {oracle_ms:.1f} | {bucket_ms:.1f} | "
              f"{dense_ms:.1f} | {bucket_ms / oracle_ms:.2f} | {dense_ms / bucket_ms:.1f}x |")
    print(f"\nmask value for padding: {MASK_PAD}")


if __name__ == "__main__":
    main()
