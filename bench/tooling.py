"""Conversion cost: ``edgehmr convert`` per target next to the plain exporters for the same module, wall time and
peak memory (resident set) of each in a fresh process, in one run.

The plain contenders export exactly the module ``convert`` exports (seeded weights, batch 1): ``torch.export``
alone, the TorchScript ONNX exporter (``dynamo=False``), and the torch.export-based ONNX exporter with its default
optimisation (``dynamo=True``), which ``convert -t onnx`` uses. Each contender runs in its own Python process
(imports included, as a user's command pays them), one after another; ``--rounds N`` repeats the whole list and
keeps each contender's median.

Run it alone (no builds, no tests, no helpers):

    python bench/tooling.py                               # hmr2-vit-s: onnx, openvino, executorch, coreml fp32
    python bench/tooling.py --model hmr2-vit-s --targets onnx --precisions fp32 int8
    python bench/tooling.py --model sat-hmr --targets onnx \
        --convert-args="--canvas 672x448 --buckets 32x384,96x384 --allow-demotion"
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPORT_SNIPPET = """
import sys, torch, warnings
from edgehmr.models import load_model
from edgehmr.spec import resolve_spec
from edgehmr.convert import build_export_module
name, how, out = sys.argv[1:4]
loaded = load_model(name)
module, outputs, _ = build_export_module(loaded, resolve_spec(name, "onnx", "fp32", out_dir=out))
example = tuple(torch.randn(1, *t.shape[1:]) for t in loaded.info.inputs)
warnings.simplefilter("ignore")
with torch.no_grad():
    if how == "torch.export":
        torch.export.export(module, example, strict=False)
    else:
        torch.onnx.export(module, example, out + "/plain.onnx", dynamo=how == "dynamo", opset_version=18,
                          input_names=[t.name for t in loaded.info.inputs], output_names=outputs)
"""
PLAIN = {"torch.export.export": "torch.export",
         "torch.onnx.export (TorchScript exporter)": "torchscript",
         "torch.onnx.export (dynamo=True, optimize)": "dynamo"}


def run_measured(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(seconds, peak RSS in GB, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        print(f"  failed ({code}): {' '.join(argv[-8:])}\n{proc.stderr.read().decode()[-2000:]}", flush=True)
    proc.stderr.close()
    return seconds, usage.ru_maxrss / 1024 ** 2, code  # ru_maxrss is in KiB on Linux


def contenders(args, work: Path) -> list[tuple[str, list[str]]]:
    edgehmr = [sys.executable, "-m", "edgehmr"]
    rows = []
    if args.model != "sat-hmr":  # the plain exporters take a crop model
        rows += [(label, [sys.executable, "-c", EXPORT_SNIPPET, args.model, how, str(work)])
                 for label, how in PLAIN.items()]
    for target in args.targets:
        for precision in args.precisions:
            argv = edgehmr + ["convert", "-m", args.model, "-t", target, "-p", precision, "-o", str(work), "--quiet"]
            if precision == "int8":
                argv += ["--calib", "synthetic", "--calib-count", str(args.calib_count)]
            argv += shlex.split(args.convert_args)
            rows.append((f"edgehmr convert -t {target} -p {precision}", argv))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hmr2-vit-s")
    ap.add_argument("--targets", nargs="+", default=["onnx", "openvino", "executorch", "coreml"])
    ap.add_argument("--precisions", nargs="+", default=["fp32"])
    ap.add_argument("--convert-args", default="", help="More options for every edgehmr convert (e.g. SAT-HMR's "
                                                         "--buckets and --allow-demotion).")
    ap.add_argument("--calib-count", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-tooling-"))
    env = os.environ | {"EDGEHMR_CACHE": str(work / "cache")}
    rows = contenders(args, work)
    # warm the calibration cache and the page cache so the first contender pays no one-off cost the others skip
    subprocess.run([sys.executable, "-c", "import torch, onnx, edgehmr.models"], env=env, check=True)
    measured: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _ in rows}
    for r in range(args.rounds):
        for label, argv in rows:
            measured[label].append(run_measured(argv, env))
            for child in work.iterdir():  # each convert writes a fresh artifact
                if child.is_dir() and child.name != "cache":
                    shutil.rmtree(child)
            print(f"  round {r + 1}: {label}: {measured[label][-1][0]:.1f} s", flush=True)
    plain = {label: statistics.median(s for s, _, _ in measured[label]) for label in PLAIN if label in measured}
    reference = plain.get("torch.onnx.export (TorchScript exporter)")
    print(f"\n{args.model}, {os.cpu_count()} cores; each contender a fresh process (imports included), median of "
          f"{args.rounds} round(s)\n")
    print("| contender | seconds | vs TorchScript exporter | peak RSS GB |\n|---|---:|---:|---:|")
    for label, samples in measured.items():
        seconds = statistics.median(s for s, _, _ in samples)
        peak = max(m for _, m, _ in samples)
        ratio = f"{seconds / reference:.1f}x" if reference else "-"
        failed = " (failed)" if any(c for _, _, c in samples) else ""
        print(f"| {label}{failed} | {seconds:.1f} | {ratio} | {peak:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
