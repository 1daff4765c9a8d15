"""Drift table: every target x precision in the capability table, validated against one FP32 reference bundle.

    python bench/drift.py --models hmr2-vit-s vitpose-s --calib synthetic

Prints a Markdown table (the "measured" table of docs/profiling.md comes from here). Accuracy only: no timing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgehmr.calibration.dataset import build_calibration
from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.converters.capabilities import TARGETS
from edgehmr.models import load_model
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.validate import validate

METRICS = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "kp2d_px", "cam_t_mm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["hmr2-vit-s", "vitpose-s"])
    ap.add_argument("--calib", default="synthetic")
    ap.add_argument("--calib-count", type=int, default=128)
    ap.add_argument("--eval-count", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-drift-"))
    print("| model | target | precision | worst output rel L2 | MPJPE mm | PA-MPJPE mm | PVE mm | 2D crop px | "
          "cam t mm | verdict |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name in args.models:
        loaded = load_model(name)
        calibration = build_calibration(args.calib, loaded.info.crop, args.calib_count)
        bundle = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000), work / f"ref-{name}")
        for caps in TARGETS.values():
            for precision in caps.precisions:
                calib = args.calib if precision in caps.calibrated else None
                spec = resolve_spec(name, caps.id, precision.value, out_dir=str(work), calib=calib,
                                    calib_count=args.calib_count)
                report = validate(convert(spec, loaded, calibration if calib else None), bundle)
                worst = max(o["rel_l2"] for o in report.outputs.values())
                cells = [f"{report.task[m]['value']:.3f}" if m in report.task else "-" for m in METRICS]
                verdict = "pass" if report.passed else "FAIL"
                print(f"| {name} | {caps.id} | {precision.value} | {worst:.1e} | {' | '.join(cells)} | {verdict} |",
                      flush=True)


if __name__ == "__main__":
    main()
