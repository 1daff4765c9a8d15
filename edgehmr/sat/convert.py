"""``edgehmr convert --model sat-hmr``: two static stages, stage 2 with one static shape per bucket.

Artifact folder::

    metadata.json   canvas, preprocessing, bucket table (capacities, names, selection/mask/overflow rules),
                    and per stage the target part (file, inputs, outputs, entries = static shapes)
    stage1/         one graph: image -> scale_map, low_res_tokens, cls
    stage2/         one artifact holding every bucket with shared weights (ONNX/TensorRT: dynamic token axes
                    pinned per bucket at run/build time; OpenVINO: one IR reshaped per bucket; ExecuTorch: one
                    method with dynamic token axes (INT8: one per bucket); Core ML: one function per bucket)
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgehmr.artifact import staged_dir
from edgehmr.bucketing import Bucket, BucketTable, Selection, buckets_from_counts, pack_into
from edgehmr.calibration.sources import open_source
from edgehmr.convert import write_metadata
from edgehmr.converters.base import ExportJob
from edgehmr.converters.capabilities import get_target
from edgehmr.converters.convert import convert_part, part_metadata
from edgehmr.progress import step
from edgehmr.models import LoadedModel, load_model
from edgehmr.models.sat_hmr import (CANVAS, FOCAL_PX, FOV_DEGREES, STAGE1_INPUTS, STAGE1_OUTPUTS, STAGE2_INPUTS,
                                    STAGE2_OUTPUTS, Stage1Graph, Stage2Graph)
from edgehmr.sat.bundle import unique_frames
from edgehmr.sat.frame import Canvas, prepare_frame, preprocessing_json
from edgehmr.sat.calibration import sat_calibration
from edgehmr.sat.runner import STAGE1_ENTRY
from edgehmr.sat.tables import (FIT_OTHER_STEP, HR_STEP, coverage_json, default_table, parse_buckets, selections_of,
                                table_json, with_full_coverage)
from edgehmr.spec import ConvertSpec


def calibration_frames(spec: ConvertSpec, canvas: Canvas) -> list[np.ndarray]:
    """The --calib source's frames on the canvas (sources list a frame once per person box: taken once)."""
    frames = unique_frames(open_source(spec.calib, spec.calib_count, spec.calib_boxes, spec.seed))
    return [prepare_frame(f.image, canvas).image for f in frames[:spec.calib_count]]


def resolve_table(spec: ConvertSpec, loaded: LoadedModel, canvas: Canvas,
                  images: list[np.ndarray] | None) -> tuple[BucketTable, dict, list[Selection]]:
    """``--buckets`` wins; else buckets fitted to the calibration frames; else the canvas default. The
    full-coverage buckets are added unless ``--allow-demotion``. Also returns the calibration frames' selections
    (empty without frames)."""
    grid = canvas.grid
    selections = selections_of(loaded.module, images) if images else []
    hits = None
    if spec.buckets:
        table, origin = parse_buckets(spec.buckets, grid), "--buckets"
    elif selections:
        table = buckets_from_counts(selections, grid, spec.bucket_count, HR_STEP, FIT_OTHER_STEP)
        origin = f"fitted to {len(images)} frames of {spec.calib}"
    else:
        table, origin = default_table(grid), "canvas default (not fitted to data: pass --calib or --buckets)"
    final = table if spec.allow_demotion else with_full_coverage(table)
    if selections:
        hits = dict(Counter(final.choose(s)[0].name for s in selections))
    return final, table_json(final, origin, hits, coverage_json(table, final, selections)), selections


def stage2_example(image: torch.Tensor, tokens: torch.Tensor, cls: torch.Tensor, bucket: Bucket,
                   grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Inputs of ``bucket``'s static shape (an empty selection: every slot padding; values do not matter)."""
    packed = pack_into(Selection.empty(grid), bucket, grid)
    return (image, tokens, cls, *(torch.from_numpy(v) for v in packed.feeds().values()))


def convert_sat(spec: ConvertSpec, loaded: LoadedModel | None = None) -> Path:
    caps = get_target(spec.target)
    loaded = loaded or load_model(spec.model, spec.checkpoint, trust_checkpoint=spec.trust_checkpoint, seed=spec.seed)
    canvas = Canvas.parse(spec.canvas)
    if spec.calib:
        step(f"reading {spec.calib_count} calibration frames from {spec.calib}")
    images = calibration_frames(spec, canvas) if spec.calib else None
    step("choosing the bucket table" + (f" from {len(images)} calibration frames" if images else ""))
    table, table_meta, selections = resolve_table(spec, loaded, canvas, images)
    model = loaded.module
    calib1 = calib2 = None
    if spec.precision in caps.calibrated:
        step(f"collecting calibration inputs of stage 1 and of {len(table.buckets)} buckets")
        calib1, calib2 = sat_calibration(model, images, selections, table)
        for entry in table_meta["buckets"]:  # 0: no calibration frame fits it; it uses the shared scales
            entry["calibration_samples"] = len(calib2.get(entry["name"], []))
    gen = torch.Generator().manual_seed(spec.seed)
    image = torch.randn(1, 3, canvas.height, canvas.width, generator=gen)
    with torch.no_grad():
        _, tokens, cls = model.stage1(image)
    jobs = {
        "stage1": ExportJob(Stage1Graph(model).eval(), {STAGE1_ENTRY: (image,)}, STAGE1_INPUTS, STAGE1_OUTPUTS,
                            spec.precision, f"{spec.model} stage 1", calib1),
        "stage2": ExportJob(Stage2Graph(model).eval(),
                            {b.name: stage2_example(image, tokens, cls, b, canvas.grid) for b in table.buckets},
                            STAGE2_INPUTS, STAGE2_OUTPUTS, spec.precision, f"{spec.model} stage 2", calib2),
    }
    final = Path(spec.out_dir) / f"{spec.model}-{caps.id}-{spec.precision.value}-{canvas}"
    start = time.perf_counter()
    with staged_dir(final) as stage:
        parts = {}
        for i, (name, job) in enumerate(jobs.items(), 1):
            step(f"part {i}/{len(jobs)} ({name}, {len(job.entries)} shape(s))")
            (stage / name).mkdir()
            result = convert_part(caps.id, job, stage / name)
            part = part_metadata(caps.id, job, result)
            part["file"] = f"{name}/{part['file']}"
            parts[name] = part
        write_metadata(stage, loaded, caps, spec, start, {
            "canvas": {"width": canvas.width, "height": canvas.height, "grid": list(canvas.grid)},
            "preprocessing": preprocessing_json(canvas),
            "buckets": table_meta,
            "parts": parts,
            "postprocessing": {
                "keep": "confidence > 0.3 (no NMS)",
                "boxes": {"format": "cxcywh", "normalised_by_px": CANVAS,
                          "meaning": "box * normalised_by_px = canvas pixels (the canvas is a part of the 1288 "
                                     "reference frame)"},
                "camera": {"fov_degrees": FOV_DEGREES, "focal_px_on_1288_canvas": FOCAL_PX,
                           "principal_point": "centre of the resized (unpadded) frame on the canvas",
                           "translation": "inside the graph: s = 2 sigmoid(c_s) + 1e-6, t = (c_x/s, c_y/s, 2f/(1288 s))"},
                "rotations": "rotation matrices; SAT-HMR's interleaved 6D convention applied inside the graph",
            },
        })
    return final
