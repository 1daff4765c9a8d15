"""DeformableHMR: what each JBU upsampling factor (x1, x2, x4, x8) costs per target, and the two deformable-attention
samplers (``grid_sample`` vs the bilinear ``gather``) where both run.

Every contender is converted, validated against its own FP32 PyTorch reference (drift), and all compiled models
of one target are timed in alternation in one process (machine-speed drift hits them alike). Prints params,
GMACs, p50/p90 latency, the latency ratio against x1 (no upsampling) and drift. Run it with nothing else running:

    python bench/deformable.py                                   # ViT-S, ONNX Runtime + OpenVINO, fp32
    python bench/deformable.py --targets openvino --precision int8
    python bench/deformable.py --factors 1 4 --samplers grid_sample gather
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
from edgehmr.models.deformable_hmr import DEFAULT_FACTOR
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.targets.base import open_artifact_runner
from edgehmr.validate import validate

from _timing import time_alternating  # bench/ is on sys.path when a script here runs


def model_name(size: str, factor: int) -> str:
    return f"deformable-hmr-vit-{size}" + ("" if factor == DEFAULT_FACTOR else f"-x{factor}")


def prepare(name: str, sampler: str, target: str, args, work: Path, bundles: dict) -> dict:
    loaded = load_model(name)
    if name not in bundles:  # the reference is the model itself (grid_sample); both samplers are checked against it
        bundles[name] = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000),
                                    work / f"ref-{name}", source="synthetic")
    loaded.module.head.set_sampler(sampler)
    calib = "synthetic" if args.precision == "int8" else None
    out = work / f"{target}-{sampler}"
    spec = resolve_spec(name, target, args.precision, out_dir=str(out), calib=calib, calib_count=args.calib_count)
    start = time.perf_counter()
    path = convert(spec, loaded)
    convert_s = time.perf_counter() - start
    report = validate(path, bundles[name])
    meta = json.loads((path / "metadata.json").read_text())
    image = np.load(bundles[name] / "inputs.npz")["image"][:1]
    params, gmacs = model_cost(name)
    print(f"  {target} {name} ({sampler}): converted in {convert_s:.0f} s, "
          f"MPJPE drift {report.task['mpjpe_mm']['value']:.3f} mm", flush=True)
    return {"name": name, "sampler": sampler, "target": target, "params_m": params / 1e6, "gmacs": gmacs,
            "runner": open_artifact_runner(path, meta), "feed": {"image": image},
            "drift": report.task["mpjpe_mm"]["value"], "passed": report.passed,
            "worst_rel_l2": max(o["rel_l2"] for o in report.outputs.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="s")
    parser.add_argument("--factors", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--samplers", nargs="+", default=["grid_sample", "gather"])
    parser.add_argument("--targets", nargs="+", default=["onnx", "openvino"])
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--eval-count", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"{args.precision}, {args.runs} alternating runs per target, batch 1, seeded weights\n")
    print("| target | model | sampler | params M | GMACs | p50 ms | p90 ms | vs x1 | MPJPE drift mm | worst rel L2 "
          "| validate |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        bundles: dict = {}
        for target in args.targets:
            rows = [prepare(model_name(args.size, f), s, target, args, Path(tmp), bundles)
                    for s in args.samplers for f in args.factors]
            time_alternating(rows, args.warmup, args.runs)
            for r in rows:
                base = next((b for b in rows if b["sampler"] == r["sampler"]
                             and b["name"] == model_name(args.size, 1)), None)
                ratio = f"{r['p50_ms'] / base['p50_ms']:.2f}x" if base else "-"
                print(f"| {target} | {r['name']} | {r['sampler']} | {r['params_m']:.1f} | {r['gmacs']:.2f} | "
                      f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {ratio} | {r['drift']:.3f} | "
                      f"{r['worst_rel_l2']:.1e} | {'pass' if r['passed'] else 'FAIL'} |", flush=True)
            if len(args.samplers) > 1:
                for f in args.factors:
                    name = model_name(args.size, f)
                    p50 = {r["sampler"]: r["p50_ms"] for r in rows if r["name"] == name}
                    first = args.samplers[0]
                    print(f"{target} {name}: " + ", ".join(f"{s} {p50[s] / p50[first]:.2f}x of {first}"
                                                        for s in args.samplers[1:]), flush=True)
            for r in rows:
                r.pop("runner")


if __name__ == "__main__":
    main()
