"""ExecuTorch XNNPACK INT8 benchmark: eager PyTorch vs ExecuTorch fp32 / int8, one run, same CPU, with ratios.

Goal: hmr2-vit-b INT8 at least 3x faster than PyTorch eager FP32, with the drift in mm. Besides the models, it
measures one transformer-shaped GEMM (ViT-B MLP: 192 tokens x 768 -> 3072) in each runtime, so the model speedup
can be read against what this CPU's INT8 kernels can give at all, and it prints where the INT8 program spends
its time (ExecuTorch's per-op event trace).

Contenders:
- ExecuTorch int8 (default recipe): the decoder's single-query linears, regression heads and patch embedding stay
  float (the recipe shared with ONNX Runtime and OpenVINO).
- ExecuTorch int8 (heads float): only the regression heads and patch embedding stay float. Dynamic activations
  are quantized per row, so the one-token linears do not suffer the per-tensor problem the default recipe avoids.

Run it alone (no builds, no tests, no helpers): contention distorts the ratios.

    python bench/executorch_int8.py --model hmr2-vit-b --runs 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.converters.base import ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.executorch import lower_methods, quantize_int8_dynamic
from edgehmr.models import load_model, model_cost
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.targets.base import open_artifact_runner, open_part_runner
from edgehmr.targets.executorch import op_time_profile
from edgehmr.validate import validate
from _timing import time_it
from quantization import artifact_size_mb

GEMM = (192, 768, 3072)  # tokens x in x out: one ViT-B MLP expansion
_LAYERS = "smpl_head.transformer.transformer.layers.*"
DECODER_SINGLE_QUERY = (f"{_LAYERS}.0", f"{_LAYERS}.1.fn.to_q", f"{_LAYERS}.1.fn.to_out", f"{_LAYERS}.2")
CONTENDERS = [("fp32", "fp32", ()), ("int8 (default recipe)", "int8", ()),
              ("int8 (heads float)", "int8", DECODER_SINGLE_QUERY)]


def gemm_rates(args, work: Path) -> dict[str, float]:
    """GMAC/s of one GEMM: eager fp32, ExecuTorch XNNPACK fp32 and dynamic INT8."""
    tokens, k, n = GEMM
    linear = torch.nn.Linear(k, n).eval()
    x = torch.randn(1, tokens, k)
    macs = tokens * k * n / 1e9
    with torch.no_grad():
        eager, _ = time_it(lambda: linear(x), args.warmup, args.runs * 5)
    rates = {"PyTorch eager fp32": macs / (eager / 1e3)}
    for label, precision in (("ExecuTorch fp32", Precision.fp32), ("ExecuTorch int8", Precision.int8)):
        job = ExportJob.single(linear, (x,), ["x"], ["y"], precision, "gemm")
        module = quantize_int8_dynamic(job) if precision == Precision.int8 else linear
        buffer, _ = lower_methods({"forward": (module, (x,))}, "xnnpack", precision, "gemm")
        path = work / f"gemm-{precision.value}.pte"
        path.write_bytes(buffer)
        runner = open_part_runner(work, {"target": "executorch", "file": path.name, "input_names": ["x"],
                                         "output_names": ["y"], "precision": precision.value,
                                         "entries": {"main": {"x": list(x.shape)}}, "details": {}})
        ms, _ = time_it(lambda: runner.run("main", {"x": x.numpy()}), args.warmup, args.runs * 5)
        rates[label] = macs / (ms / 1e3)
    return rates


def bench(args, work: Path) -> tuple[list[dict], dict]:
    loaded = load_model(args.model)
    _, gmacs = model_cost(args.model)
    bundle = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000), work / "reference")
    image = np.load(bundle / "inputs.npz")["image"][:1]
    with torch.no_grad():
        median, p90 = time_it(lambda: loaded.module(torch.from_numpy(image)), args.warmup, args.runs)
    rows = [{"runtime": "PyTorch eager", "variant": "fp32", "median_ms": median, "p90_ms": p90,
             "size_mb": sum(p.numel() * 4 for p in loaded.module.parameters()) / 1e6, "mpjpe_mm": 0.0,
             "worst_rel_l2": 0.0}]
    profiles = {}
    for label, precision, quantize in CONTENDERS:
        spec = resolve_spec(args.model, "executorch", precision, out_dir=str(work / label.replace(" ", "_")),
                            quantize=quantize)
        path = convert(spec, loaded)
        report = validate(path, bundle)
        meta = json.loads((path / "metadata.json").read_text())
        runner = open_artifact_runner(path, meta)
        median, p90 = time_it(lambda: runner.run(runner.default_entry, {"image": image}), args.warmup, args.runs)
        rows.append({"runtime": "ExecuTorch XNNPACK", "variant": label, "median_ms": median, "p90_ms": p90,
                     "size_mb": artifact_size_mb(path), "mpjpe_mm": report.task["mpjpe_mm"]["value"],
                     "worst_rel_l2": max(o["rel_l2"] for o in report.outputs.values()),
                     "non_delegated": meta["parts"]["model"]["details"]["non_delegated"]})
        if precision == "int8":
            profiles[label] = op_time_profile(path / "model.pte", [image], runs=args.profile_runs)
        print(f"  measured {label}: {median:.1f} ms", flush=True)
    for r in rows:
        r["speedup_vs_eager"] = rows[0]["median_ms"] / r["median_ms"]
        r["gmac_per_s"] = gmacs / (r["median_ms"] / 1e3)
    return rows, profiles


def print_results(model: str, rows: list[dict], rates: dict, profiles: dict, top: int) -> None:
    tokens, k, n = GEMM
    print(f"\nGEMM {tokens}x{k}->{n} (one ViT-B MLP layer), GMAC/s: " +
          ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items()) +
          f"  -> INT8/fp32 kernel ratio {rates['ExecuTorch int8'] / rates['ExecuTorch fp32']:.2f}x, "
          f"INT8 vs eager {rates['ExecuTorch int8'] / rates['PyTorch eager fp32']:.2f}x\n")
    print(f"| {model} | variant | median ms | p90 ms | speedup vs eager | GMAC/s | MB | MPJPE drift mm | "
          "worst rel L2 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['runtime']} | {r['variant']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
              f"{r['speedup_vs_eager']:.2f}x | {r['gmac_per_s']:.1f} | {r['size_mb']:.0f} | {r['mpjpe_mm']:.3f} | "
              f"{r['worst_rel_l2']:.1e} |")
    for label, prof in profiles.items():
        total = prof["total_ms"]
        print(f"\nwhere {label} spends its time (ETDump, median of runs, {total:.1f} ms per run):")
        for kind, ms in list(prof["ops"].items())[:top]:
            print(f"  {ms:7.2f} ms  {100 * ms / total:5.1f}%  {kind}")
        rest = total - sum(prof["ops"].values())
        print(f"  {rest:7.2f} ms  {100 * rest / total:5.1f}%  (runtime overhead between ops)")
    for r in rows[1:]:
        if r["non_delegated"]:
            print(f"\nnot delegated in {r['variant']}: " + ", ".join(f"{op} x{c}" for op, c in r["non_delegated"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hmr2-vit-b")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile-runs", type=int, default=5)
    ap.add_argument("--eval-count", type=int, default=16)
    ap.add_argument("--top", type=int, default=10, help="Op kinds to list in the time breakdown.")
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-bench-et-"))
    print(f"CPU threads: {torch.get_num_threads()}; artifacts in {work}", flush=True)
    rates = gemm_rates(args, work)
    rows, profiles = bench(args, work)
    print_results(args.model, rows, rates, profiles, args.top)
    if args.json:
        args.json.write_text(json.dumps({"gemm_gmac_s": rates, "rows": rows, "profiles": profiles}, indent=1))


if __name__ == "__main__":
    main()
