"""Where one ``--max-drift`` search step spends its time, and what reusing calibration statistics saves.

    python bench/search_step_cost.py --model hmr2-vit-s --target onnx --calib-count 32 --rounds 2

A step is one conversion, one validation on the held-out crops and one drift probe. Each round runs, in turn: a
conversion that calibrates, one that loads the ranges the first saved (what steps 1, 2, ... do where the target
keeps statistics: onnx, tensorrt), the validation and the probe (timed in alternation, seeded weights, synthetic
crops). Prints the median seconds of each and the saving per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from edgehmr.artifact import CROP_PART, read_metadata
from edgehmr.convert import calibration_for, convert
from edgehmr.drift import debug_drift
from edgehmr.host_probe import time_in_alternation
from edgehmr.models import load_model
from edgehmr.quant_search import held_out_bundle, held_out_count
from edgehmr.spec import resolve_spec
from edgehmr.validate import validate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hmr2-vit-s")
    ap.add_argument("--target", default="onnx")
    ap.add_argument("--calib-count", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-step-"))
    spec = resolve_spec(args.model, args.target, "int8", out_dir=str(work / "out"), calib="synthetic",
                        calib_count=args.calib_count)
    loaded = load_model(args.model)
    calibration = calibration_for(spec, loaded)
    held = held_out_count(len(calibration.images), spec.batch)
    tune = dataclasses.replace(calibration, images=calibration.images[:-held])
    bundle = held_out_bundle(loaded, calibration.images[-held:], work / "held-out")
    statistics_dir = work / "statistics"
    statistics_dir.mkdir()
    artifact = convert(spec, loaded, tune, statistics_dir)  # saves the ranges the "reused" contender loads

    def fresh():
        convert(dataclasses.replace(spec, out_dir=str(work / "fresh")), loaded, tune)

    def reused():
        path = convert(dataclasses.replace(spec, out_dir=str(work / "reused")), loaded, tune, statistics_dir)
        if read_metadata(path)["parts"][CROP_PART]["details"].get("calibration_statistics") != "reused":
            sys.exit(f"{args.target} did not reuse the saved ranges: nothing to compare")

    calls = {"convert, calibrating": fresh, "convert, ranges reused": reused,
             "validate (held-out crops)": lambda: validate(artifact, bundle),
             "drift probe (held-out crops)": lambda: debug_drift(artifact, bundle, samples=held, strict=False)}
    medians = {label: statistics.median(s)
               for label, s in zip(calls, time_in_alternation(list(calls.values()), 0, args.rounds))}
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.model}, {args.target} INT8, {len(tune.images)} calibration + {held} held-out crops, "
          f"batch {spec.batch}, median of {args.rounds} rounds\n")
    print("| part of a step | seconds |")
    print("|---|---:|")
    for label, seconds in medians.items():
        print(f"| {label} | {seconds:.1f} |")
    step = medians["convert, calibrating"] + medians["validate (held-out crops)"] + medians[
        "drift probe (held-out crops)"]
    saved = medians["convert, calibrating"] - medians["convert, ranges reused"]
    print(f"\nreuse saves {saved:.1f} s of a {step:.1f} s step ({100 * saved / step:.0f}%)")


if __name__ == "__main__":
    main()
