"""The conversion spec: every option resolved and checked once, then passed to every stage unchanged."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from edgehmr.calibration.dataset import DEFAULT_COUNT
from edgehmr.calibration.recipes import QuantRecipe, check_scopes, resolve_recipe
from edgehmr.converters.capabilities import (DEFAULT_TARGET, Precision, check_available, get_target,
                                             parse_precision)
from edgehmr.errors import InputError, SpecError
from edgehmr.models import get_model_info
from edgehmr.tasks import FRAMES, MESH


@dataclass(frozen=True)
class ConvertSpec:
    model: str
    target: str
    precision: Precision
    checkpoint: str | None
    trust_checkpoint: bool
    with_mesh: bool
    smpl: str  # "synthetic" or a path; used only with_mesh
    batch: int
    out_dir: str
    seed: int
    calib: str | None = None  # calibration source; required when the precision needs one
    calib_count: int = DEFAULT_COUNT
    calib_boxes: str | None = None
    recipe: QuantRecipe | None = None  # resolved for INT8 schemes only
    canvas: str | None = None  # full-frame models (SAT-HMR): WxH, multiples of 56
    buckets: str | None = None  # SAT-HMR: explicit bucket table "HRxOTHER,..."; else fitted to --calib frames
    bucket_count: int = 8  # SAT-HMR: buckets fitted to the calibration frames
    # SAT-HMR: leave out the full-coverage buckets, so crowded frames may see small people at low resolution
    allow_demotion: bool = False
    sampler: str | None = None  # deformable-attention models: grid_sample | gather; None: the model's default

    def to_dict(self) -> dict:
        """The resolved spec as JSON types (what metadata.json records under ``spec``)."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        d = asdict(self)
        d["precision"] = self.precision.value
        return json.dumps(d, indent=2)


def resolve_spec(model: str, target: str = DEFAULT_TARGET, precision: str | None = None, checkpoint: str | None = None,
                 trust_checkpoint: bool = False, with_mesh: bool = False, smpl: str = "synthetic", batch: int = 1,
                 out_dir: str = "runs", seed: int = 0, calib: str | None = None, calib_count: int = DEFAULT_COUNT,
                 calib_boxes: str | None = None, recipe: str = "default", keep_float: tuple[str, ...] = (),
                 quantize: tuple[str, ...] = (), canvas: str | None = None, buckets: str | None = None,
                 bucket_count: int = 8, sampler: str | None = None, allow_demotion: bool = False) -> ConvertSpec:
    info = get_model_info(model)
    if sampler is not None and sampler not in info.samplers:
        if not info.samplers:
            raise SpecError(f"--sampler applies to deformable-attention models (deformable-hmr-*), not {model}.")
        raise SpecError(f"Unknown sampler '{sampler}'; {model} exports {', '.join(info.samplers)}.")
    if info.task.input == FRAMES:
        if keep_float or quantize or recipe != "default":
            raise SpecError("--recipe/--keep-float/--quantize are not available for sat-hmr yet: its INT8 keeps "
                            "softmax and LayerNorm float and quantizes every linear, conv and matmul.")
        return _resolve_sat_spec(model, target, precision, checkpoint, trust_checkpoint, with_mesh, batch, out_dir,
                                 seed, calib, calib_count, calib_boxes, canvas, buckets, bucket_count, allow_demotion)
    if canvas or buckets or allow_demotion:
        raise SpecError(f"--canvas/--buckets/--allow-demotion apply to full-frame SAT-HMR, not {model} (person "
                        f"crops).")
    caps = get_target(target)
    if caps.id in info.unsupported_targets:
        raise SpecError(f"{model} cannot run on {caps.id}: {info.unsupported_targets[caps.id]}")
    prec = caps.precisions[0] if precision is None else parse_precision(precision, caps)
    if f"{caps.id}/{prec.value}" in info.unsupported_targets:
        raise SpecError(f"{model} cannot be converted to {caps.id} {prec.value}: "
                        f"{info.unsupported_targets[f'{caps.id}/{prec.value}']}")
    check_available(caps)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"Checkpoint not found: {checkpoint}")
    if with_mesh and info.task.output != MESH:
        raise SpecError(f"--with-mesh needs an HMR model; {model} predicts 2D keypoints only.")
    if with_mesh and smpl != "synthetic" and not Path(smpl).is_file():
        raise InputError(f"SMPL model file not found: {smpl}. Pass SMPL_NEUTRAL.pkl (or its .npz) with --smpl.")
    if batch < 1:
        raise SpecError(f"--batch must be at least 1 (got {batch}).")
    if prec in caps.calibrated and not calib:
        raise SpecError(f"{prec.value} on {caps.id} needs calibration data: pass --calib with an image folder, a "
                        f"video, a reference bundle, or 'synthetic' for a demo.")
    if calib and prec not in caps.calibrated:
        calib = None  # nothing to calibrate: ignored rather than read for nothing
    if calib and calib != "synthetic" and not Path(calib).exists():
        raise InputError(f"Calibration source not found: {calib}. Give an image folder, a video file, a reference "
                         f"bundle, or 'synthetic'.")
    if calib_count < 1:
        raise SpecError(f"--calib-count must be at least 1 (got {calib_count}).")
    quant = None
    if prec in (Precision.int8, Precision.int8_weights):
        quant = resolve_recipe(info.recipe or info.family, recipe, tuple(keep_float), tuple(quantize))
        with torch.device("meta"):  # module names only: no memory, no time
            check_scopes(quant, info.build())
    elif keep_float or quantize or recipe != "default":
        raise SpecError(f"--recipe/--keep-float/--quantize apply to int8 schemes, not {prec.value}.")
    return ConvertSpec(model, caps.id, prec, checkpoint, trust_checkpoint, with_mesh, smpl, batch, out_dir, seed,
                       calib, calib_count, calib_boxes, quant, sampler=sampler or next(iter(info.samplers), None))


def _resolve_sat_spec(model, target, precision, checkpoint, trust_checkpoint, with_mesh, batch, out_dir, seed, calib,
                      calib_count, calib_boxes, canvas, buckets, bucket_count, allow_demotion) -> ConvertSpec:
    """SAT-HMR: one frame per inference, a canvas, a bucket table; calibration frames size the buckets."""
    from edgehmr.converters.shapes import multishape_targets
    from edgehmr.sat.frame import Canvas
    from edgehmr.sat.tables import parse_buckets

    caps = get_target(target)
    prec = caps.precisions[0] if precision is None else parse_precision(precision, caps)
    check_available(caps)
    supported = caps.multishape
    if not supported:
        raise SpecError(f"sat-hmr needs multi-bucket artifacts, which target {caps.id} cannot hold; targets that "
                        f"can: {', '.join(multishape_targets())}.")
    if prec not in supported:
        raise SpecError(f"sat-hmr on {caps.id} converts at {', '.join(p.value for p in supported)}; not "
                        f"{prec.value}.")
    if prec in caps.calibrated and not calib:
        raise SpecError(f"{prec.value} sat-hmr on {caps.id} needs calibration frames (every bucket is calibrated on "
                        f"the frames it holds): pass --calib with an image folder or a video.")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"Checkpoint not found: {checkpoint}")
    if with_mesh:
        raise SpecError("--with-mesh is not available for sat-hmr (50 queries per frame); run SMPL on the kept "
                        "people in the app.")
    if batch != 1:
        raise SpecError("sat-hmr artifacts take one frame per inference (--batch 1).")
    canvas_obj = Canvas.parse(canvas or "1288x1288")
    if buckets:
        parse_buckets(buckets, canvas_obj.grid)  # fail now rather than after loading the model
    if calib and calib != "synthetic" and not Path(calib).exists():
        raise InputError(f"Calibration source not found: {calib}. Give an image folder, a video file or 'synthetic'.")
    if bucket_count < 1:
        raise SpecError(f"--bucket-count must be at least 1 (got {bucket_count}).")
    return ConvertSpec(model, caps.id, prec, checkpoint, trust_checkpoint, False, "synthetic", 1, out_dir, seed,
                       calib, calib_count, calib_boxes, None, str(canvas_obj), buckets, bucket_count,
                       allow_demotion=allow_demotion)
