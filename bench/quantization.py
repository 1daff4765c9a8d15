"""Quantization benchmark: every contender measured in one run on this CPU, with ratios to PyTorch eager FP32.

Contenders per model: PyTorch eager fp32, ONNX Runtime fp32 / int8, OpenVINO fp32 / fp16 / int8. Each artifact is
converted with the project's own converters, validated against one FP32 reference bundle (task drift in mm), and
timed (median and p90 after warm-up). An INT8 GEMM of transformer shape, quantized the same way (NNCF, OpenVINO),
gives the CPU's achievable INT8 throughput, so the model's INT8 GMAC/s can be read as a fraction of it.

Run it alone (no builds, no tests, no helpers): contention distorts the ratios.

    python bench/quantization.py --models hmr2-vit-b hmr2-vit-s --runs 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgehmr.calibration.dataset import build_calibration
from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.models import load_model, model_cost
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.targets.base import open_artifact_runner
from edgehmr.validate import validate

CONTENDERS = [("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8")]
GEMM_SHAPE = (768, 1024, 4096)  # M tokens x K x N: a ViT-B MLP layer over 4 crops' tokens


def time_it(fn: Callable[[], object], warmup: int, runs: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[min(len(samples) - 1, int(0.9 * len(samples)))] * 1e3


def int8_gemm_peak(warmup: int, runs: int) -> float:
    """GMAC/s of one large INT8 matmul through NNCF + OpenVINO (the same kernels the INT8 models use)."""
    import nncf
    import openvino as ov

    m, k, n = GEMM_SHAPE
    linear = torch.nn.Linear(k, n).eval()
    example = torch.randn(1, m, k)
    model = ov.convert_model(torch.export.export(linear, (example,)))
    data = nncf.Dataset([np.random.default_rng(i).standard_normal((1, m, k)).astype(np.float32) for i in range(4)])
    quantized = nncf.quantize(model, data, subset_size=4)
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                          "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    x = example.numpy()
    median, _ = time_it(lambda: request.infer([x]), warmup, runs)
    return m * k * n / 1e9 / (median / 1e3)


def artifact_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "validation.json") / 1e6


def bench_model(name: str, args, work: Path, peak: float) -> list[dict]:
    loaded = load_model(name)
    _, gmacs = model_cost(name)
    calibration = build_calibration(args.calib, loaded.info.crop, args.calib_count)
    bundle = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000), work / f"ref-{name}")
    image = torch.from_numpy(np.load(bundle / "inputs.npz")["image"][:1])
    rows = []
    with torch.no_grad():
        median, p90 = time_it(lambda: loaded.module(image), args.warmup, args.runs)
    rows.append({"model": name, "runtime": "PyTorch eager", "precision": "fp32", "median_ms": median, "p90_ms": p90,
                 "gmacs": gmacs, "size_mb": sum(p.numel() * 4 for p in loaded.module.parameters()) / 1e6,
                 "mpjpe_mm": 0.0, "worst_rel_l2": 0.0})
    for target, precision in CONTENDERS:
        spec = resolve_spec(name, target, precision, out_dir=str(work), calib=args.calib,
                            calib_count=args.calib_count)
        path = convert(spec, loaded, calibration if precision == "int8" else None)
        report = validate(path, bundle)
        meta = json.loads((path / "metadata.json").read_text())
        runner = open_artifact_runner(path, meta)
        feed = {meta["inputs"][0]["name"]: image.numpy()}
        median, p90 = time_it(lambda: runner.run(runner.default_entry, feed), args.warmup, args.runs)
        rows.append({"model": name, "runtime": meta["runtime"], "precision": precision, "median_ms": median,
                     "p90_ms": p90, "gmacs": gmacs, "size_mb": artifact_size_mb(path),
                     "mpjpe_mm": report.task["mpjpe_mm"]["value"],
                     "worst_rel_l2": max(o["rel_l2"] for o in report.outputs.values())})
        print(f"  measured {name} {target} {precision}: {median:.1f} ms", flush=True)
    eager = rows[0]["median_ms"]
    for r in rows:
        r["speedup_vs_eager"] = eager / r["median_ms"]
        r["gmac_per_s"] = r["gmacs"] / (r["median_ms"] / 1e3)
        r["pct_int8_peak"] = 100 * r["gmac_per_s"] / peak if r["precision"] == "int8" else None
    return rows


def print_table(rows: list[dict], peak: float) -> None:
    print(f"\nINT8 GEMM peak on this CPU ({'x'.join(map(str, GEMM_SHAPE))}, OpenVINO): {peak:.1f} GMAC/s\n")
    print("| model | runtime | precision | median ms | p90 ms | speedup vs eager | GMAC/s | % INT8 peak | MB | "
          "MPJPE drift mm | worst rel L2 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        pct = f"{r['pct_int8_peak']:.0f}%" if r["pct_int8_peak"] is not None else "-"
        print(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
              f"{r['speedup_vs_eager']:.2f}x | {r['gmac_per_s']:.1f} | {pct} | {r['size_mb']:.0f} | "
              f"{r['mpjpe_mm']:.3f} | {r['worst_rel_l2']:.1e} |")


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
    peak = int8_gemm_peak(args.warmup, args.runs)
    rows = [r for name in args.models for r in bench_model(name, args, work, peak)]
    print_table(rows, peak)
    if args.json:
        args.json.write_text(json.dumps({"int8_gemm_peak_gmac_s": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
