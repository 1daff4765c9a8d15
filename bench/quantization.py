"""Quantization benchmark: every contender measured in one run on this CPU, timed in alternation, and read
against the best throughput any installed CPU target reaches at each precision in the same run.

Contenders per model: PyTorch eager fp32, ONNX Runtime fp32 / int8, OpenVINO fp32 / fp16 / int8. Each artifact is
converted with the project's own converters, validated against one FP32 reference bundle (task drift in mm), then
all are timed together: every round runs each contender once, after a pause that lets the previous runtime's
worker threads stop spinning, so changes in machine speed hit all alike. The host probe (``edgehmr.host_probe``:
a ViT-B MLP block, two GEMMs and what sits between them, through every installed CPU target's converter and
quantizer) gives the best FP32 and INT8 throughput reached here; each model's GMAC/s is printed as a fraction of
the best one of its precision.

Run it alone (no builds, no tests, no helpers): contention distorts the ratios.

    python bench/quantization.py --models hmr2-vit-b hmr2-vit-s --runs 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from _timing import time_alternating  # bench/ is on sys.path when a script here runs

from edgehmr import host_probe
from edgehmr.calibration.dataset import build_calibration
from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.models import load_model, model_cost
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.targets.base import open_artifact_runner
from edgehmr.validate import validate

CONTENDERS = [("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8")]


class EagerRunner:
    """PyTorch eager in the timing loop's runner shape."""

    default_entry = "main"

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def run(self, entry: str, feeds: dict) -> object:
        with torch.no_grad():
            return self.module(*(torch.from_numpy(v) for v in feeds.values()))


def artifact_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "validation.json") / 1e6


def model_rows(name: str, args, work: Path) -> list[dict]:
    """Convert and validate every contender of ``name``; the rows carry a runner and a feed for the timing."""
    loaded = load_model(name)
    _, gmacs = model_cost(name)
    calibration = build_calibration(args.calib, loaded.info.crop, args.calib_count)
    bundle = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000), work / f"ref-{name}")
    image = np.load(bundle / "inputs.npz")["image"][:1]
    rows = [{"model": name, "runtime": "PyTorch eager", "precision": "fp32", "gmacs": gmacs,
             "size_mb": sum(p.numel() * 4 for p in loaded.module.parameters()) / 1e6, "mpjpe_mm": 0.0,
             "worst_rel_l2": 0.0, "runner": EagerRunner(loaded.module), "feed": {"image": image}}]
    for target, precision in CONTENDERS:
        spec = resolve_spec(name, target, precision, out_dir=str(work), calib=args.calib,
                            calib_count=args.calib_count)
        path = convert(spec, loaded, calibration if precision == "int8" else None)
        report = validate(path, bundle)
        meta = json.loads((path / "metadata.json").read_text())
        runner = open_artifact_runner(path, meta)
        rows.append({"model": name, "runtime": meta["runtime"], "target": target, "precision": precision,
                     "gmacs": gmacs,
                     "size_mb": artifact_size_mb(path), "mpjpe_mm": report.task["mpjpe_mm"]["value"],
                     "worst_rel_l2": max(o["rel_l2"] for o in report.outputs.values()),
                     "passed": report.passed, "runner": runner, "feed": {meta["inputs"][0]["name"]: image}})
        print(f"  converted and validated {name} {target} {precision}", flush=True)
    return rows


def derive(rows: list[dict], ceiling: dict[str, float]) -> None:
    eager = rows[0]["p50_ms"]
    ort_fp32 = next(r["p50_ms"] for r in rows if r.get("target") == "onnx" and r["precision"] == "fp32")
    for r in rows:
        r["speedup_vs_eager"] = eager / r["p50_ms"]
        r["speedup_vs_ort_fp32"] = ort_fp32 / r["p50_ms"]
        r["gmac_per_s"] = r["gmacs"] / (r["p50_ms"] / 1e3)
        best = ceiling[r["precision"]]
        r["pct_best_probe"] = 100 * r["gmac_per_s"] / best


def print_tables(rows: list[dict], probes: list[host_probe.Probe], features: dict) -> None:
    print(f"\nCeiling on this CPU ({features['cpu']}, {features['cores']} cores, INT8 flags: "
          f"{', '.join(features['int8_flags']) or 'none'}): a ViT-B MLP block over {host_probe.TOKENS} tokens "
          f"through each CPU target, timed in alternation\n")
    print("| runtime | precision | GMAC/s |\n|---|---|---:|")
    for p in probes:
        print(f"| {p.runtime} | {p.precision} | {p.gmac_s:.1f} |")
    print(f"\n{host_probe.verdict(probes, features)}\n")
    print("| model | runtime | precision | p50 ms | p90 ms | vs eager | vs ORT fp32 | GMAC/s | % of the probe's best "
          "at its precision | MB | MPJPE drift mm | worst rel L2 | validate |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        verdict = "-" if "passed" not in r else ("PASS" if r["passed"] else "FAIL")
        print(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
              f"{r['speedup_vs_eager']:.2f}x | {r['speedup_vs_ort_fp32']:.2f}x | {r['gmac_per_s']:.1f} | "
              f"{r['pct_best_probe']:.0f}% | {r['size_mb']:.0f} | {r['mpjpe_mm']:.3f} | {r['worst_rel_l2']:.1e} | "
              f"{verdict} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["hmr2-vit-b", "hmr2-vit-s"])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--calib", default="synthetic")
    ap.add_argument("--calib-count", type=int, default=128)
    ap.add_argument("--eval-count", type=int, default=16)
    ap.add_argument("--json", type=Path, help="Also write the rows here.")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-bench-"))
    print(f"CPU threads: {torch.get_num_threads()}; artifacts in {work}", flush=True)
    all_rows = []
    for name in args.models:
        rows = model_rows(name, args, work)
        time_alternating(rows, args.warmup, args.runs)
        all_rows += rows
    # the ceiling right after the models, in the same run and machine state
    features, probes = host_probe.cpu_features(), host_probe.probe(runs=max(args.runs, 20))
    probes = [p for p in probes if p.target]  # the eager reference is a model row already
    ceiling = {precision: max(p.gmac_s for p in probes if p.precision == precision) for precision in ("fp32", "int8")}
    ceiling["fp16"] = ceiling["fp32"]  # OpenVINO's fp16 computes in fp32 on CPUs without native fp16
    for name in args.models:
        derive([r for r in all_rows if r["model"] == name], ceiling)
    print_tables(all_rows, probes, features)
    if args.json:
        keep = [{k: v for k, v in r.items() if k not in ("runner", "feed")} for r in all_rows]
        args.json.write_text(json.dumps({"cpu": features, "probe": [p.__dict__ for p in probes], "rows": keep},
                                        indent=1))


if __name__ == "__main__":
    main()
