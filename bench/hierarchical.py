"""Truncated hierarchical encoders: S2/S3/S4 of Swin, GroupMixFormer and VMamba against HMR2.0 on ViT-S/B.

Every contender is converted for one target and precision (default: OpenVINO INT8, calibrated on synthetic
crops), validated against its own FP32 PyTorch reference (drift), then all compiled models are timed in
alternation in one process (machine-speed drift hits them alike). Prints params, GMACs, p50/p90 latency, the
S4/Sx speed ratio per family (goals: S3 >= 1.3x, S2 >= 2x faster than S4) and drift. Run it with nothing else
running:

    python bench/hierarchical.py                       # T size, OpenVINO INT8, all three families
    python bench/hierarchical.py --precision fp32 --families swin
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.models import load_model, model_cost
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.targets.base import open_artifact_runner
from edgehmr.validate import validate

from _timing import time_alternating  # bench/ is on sys.path when a script here runs

GOALS = {3: 1.3, 2: 2.0}  # S4 latency / Sx latency


def prepare(name: str, args, work: Path) -> dict:
    loaded = load_model(name)
    params, gmacs = model_cost(name)
    bundle = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000), work / f"ref-{name}",
                         source="synthetic")
    calib = "synthetic" if args.precision == "int8" else None
    spec = resolve_spec(name, args.target, args.precision, out_dir=str(work / "artifacts"), calib=calib,
                        calib_count=args.calib_count)
    start = time.perf_counter()
    path = convert(spec, loaded)
    convert_s = time.perf_counter() - start
    report = validate(path, bundle)
    metric = "mpjpe_mm" if "mpjpe_mm" in report.task else "kp2d_px"
    meta = json.loads((path / "metadata.json").read_text())
    image = np.load(bundle / "inputs.npz")["image"][:1]
    print(f"  {name}: converted in {convert_s:.0f} s, {metric} drift {report.task[metric]['value']:.3f}", flush=True)
    return {"name": name, "params_m": params / 1e6, "gmacs": gmacs, "runner": open_artifact_runner(path, meta),
            "feed": {"image": image}, "drift": report.task[metric]["value"], "metric": metric,
            "worst_rel_l2": max(o["rel_l2"] for o in report.outputs.values()), "passed": report.passed,
            "convert_s": convert_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["swin", "gmf", "vmamba"])
    parser.add_argument("--size", default="t")
    parser.add_argument("--baselines", nargs="*", default=["hmr2-vit-s", "hmr2-vit-b"])
    parser.add_argument("--target", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--eval-count", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    names = [f"hmr2-{f}-{args.size}-s{n}" for f in args.families for n in (2, 3, 4)] + args.baselines
    with tempfile.TemporaryDirectory() as tmp:
        rows = [prepare(n, args, Path(tmp)) for n in names]
        time_alternating(rows, args.warmup, args.runs)
    by_name = {r["name"]: r for r in rows}
    print(f"\n{args.target} {args.precision}, {args.runs} alternating runs, batch 1, seeded weights "
          f"({args.calib_count} synthetic calibration crops, {args.eval_count} evaluation crops)\n")
    print("| model | params M | GMACs | p50 ms | p90 ms | speed vs S4 | MPJPE drift mm | worst rel L2 | validate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        s4 = by_name.get(r["name"][:-1] + "4") if r["name"][-3:-1] == "-s" else None
        ratio = f"{s4['p50_ms'] / r['p50_ms']:.2f}x" if s4 else "-"
        print(f"| {r['name']} | {r['params_m']:.1f} | {r['gmacs']:.2f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
              f"{ratio} | {r['drift']:.2f} | {r['worst_rel_l2']:.1e} | {'pass' if r['passed'] else 'FAIL'} |")
    print()
    for f in args.families:
        s4 = by_name[f"hmr2-{f}-{args.size}-s4"]["p50_ms"]
        verdicts = []
        for n, goal in GOALS.items():
            ratio = s4 / by_name[f"hmr2-{f}-{args.size}-s{n}"]["p50_ms"]
            verdicts.append(f"S{n} {ratio:.2f}x (goal {goal}x: {'met' if ratio >= goal else 'NOT met'})")
        print(f"{f}: " + ", ".join(verdicts))


if __name__ == "__main__":
    main()
