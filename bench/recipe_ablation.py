"""Which parts of a model must stay float under INT8? Quantize with several recipes, validate each against one FP32
reference, and print drift per variant (a script, not a test; it justifies the default recipes).

    python bench/recipe_ablation.py --model hmr2-vit-s --target openvino --calib synthetic --calib-count 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgehmr.calibration.dataset import build_calibration
from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.models import load_model
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.validate import validate

# (label, recipe, extra keep-float entries[, entries to quantize]); resolved exactly as the CLI would.
VARIANTS = {
    "hmr2": [
        ("no exclusions", "none", ()),
        ("heads only", "none", ("smpl_head.decpose", "smpl_head.decshape", "smpl_head.deccam")),
        ("heads + decoder feed-forward", "none", ("smpl_head.decpose", "smpl_head.decshape", "smpl_head.deccam",
                                                  "smpl_head.transformer.transformer.layers.*.2")),
        ("heads + decoder single-query linears", "default", (), ("backbone.patch_embed",)),
        ("default (+ patch embedding)", "default", ()),
        ("default + attention matmuls", "default", ("attention_matmul",)),
        ("default + whole SMPL decoder", "default", ("smpl_head",)),
    ],
    "vitpose": [
        ("no exclusions", "none", ()),
        ("final conv only", "default", (), ("backbone.patch_embed",)),
        ("default (final conv + patch embedding)", "default", ()),
        ("default + attention matmuls", "default", ("attention_matmul",)),
        ("default + heatmap head", "default", ("keypoint_head",)),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hmr2-vit-s")
    ap.add_argument("--target", default="openvino")
    ap.add_argument("--calib", default="synthetic")
    ap.add_argument("--calib-count", type=int, default=64)
    ap.add_argument("--eval-count", type=int, default=16)
    args = ap.parse_args()
    loaded = load_model(args.model)
    family = loaded.info.family
    calibration = build_calibration(args.calib, loaded.info.crop, args.calib_count)
    work = Path(tempfile.mkdtemp(prefix="edgehmr-ablation-"))
    # Evaluation crops differ from calibration crops (another seed).
    bundle = make_bundle(loaded, open_source("synthetic", args.eval_count, seed=1000), work / "ref")
    metric = "mpjpe_mm" if family == "hmr2" else "kp2d_px"
    print(f"{args.model} on {args.target}: INT8 drift by recipe ({len(calibration.images)} calibration crops from "
          f"{args.calib}, {args.eval_count} evaluation crops)\n")
    print(f"| variant | kept float | worst output rel L2 | {metric} | cam t mm | convert s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, recipe, keep, *drop in VARIANTS[family]:
        spec = resolve_spec(args.model, args.target, "int8", out_dir=str(work / label.replace(" ", "_")),
                            calib=args.calib, calib_count=args.calib_count, recipe=recipe, keep_float=keep,
                            quantize=drop[0] if drop else ())
        start = time.perf_counter()
        path = convert(spec, loaded, calibration)
        seconds = time.perf_counter() - start
        report = validate(path, bundle)
        kept = len(json.loads((path / "metadata.json").read_text())["parts"]["model"]["kept_fp32_ops"])
        worst = max(o["rel_l2"] for o in report.outputs.values())
        cam = report.task.get("cam_t_mm", {}).get("value", float("nan"))
        print(f"| {label} | {kept} | {worst:.2e} | {report.task[metric]['value']:.3f} | {cam:.1f} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
