"""The fields of ``metadata.json`` beyond the part records that each task's readers use (validate, profile,
report, the Predictor; the C++ runtime reads a subset): :func:`check_fields` refuses a missing or mistyped one
with one line, so no reader meets a KeyError or a division by zero in a damaged file."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from edgehmr.errors import InputError
from edgehmr.tasks import CROPS, FRAMES, KEYPOINTS, MESH, artifact_task

METADATA = "metadata.json"
# The part of a crop model's artifact (it has one; SAT-HMR's are stage1 and stage2).
CROP_PART = "model"


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


Check = tuple[Callable[[object], bool], str]
_STR: Check = (lambda v: isinstance(v, str) and bool(v), "a non-empty string")
_BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
_COUNT: Check = (_count, "a whole number >= 1")
_NUMBER: Check = (_number, "a finite number")
_POSITIVE: Check = (lambda v: _number(v) and v > 0, "a positive number")
_LIST: Check = (lambda v: isinstance(v, list) and bool(v), "a non-empty list")
_SHAPE: Check = (lambda v: isinstance(v, list) and bool(v) and all(_count(d) for d in v), "a list of sizes >= 1")
_PAIR: Check = (lambda v: isinstance(v, list) and len(v) == 2 and all(_count(d) for d in v), "two sizes >= 1")
_MEAN: Check = (lambda v: isinstance(v, list) and len(v) == 3 and all(_number(x) for x in v), "3 numbers")
_STD: Check = (lambda v: isinstance(v, list) and len(v) == 3 and all(_number(x) and x > 0 for x in v),
               "3 positive numbers")


def _names(*needed: str) -> Check:
    return (lambda v: isinstance(v, list) and set(needed) <= {n for n in v if isinstance(n, str)},
            f"a list naming {', '.join(needed)}")

# What the readers (validate, profile, report, the Predictor; the C++ runtime a subset) take from metadata.json
# beyond the parts, by (task input, task output); None matches any. "*" is every item of a list.
FIELDS: tuple[tuple[str | None, str | None, dict[str, Check]], ...] = (
    (None, None, {"model.model": _STR, "model.weights": _STR, "target": _STR, "precision": _STR}),
    (CROPS, None, {"inputs": _LIST, "inputs.0.name": _STR, "inputs.0.shape": _SHAPE, "outputs": _LIST,
                   "outputs.*.name": _STR, "preprocessing.name": _STR, "preprocessing.padding": _POSITIVE,
                   "preprocessing.udp": _BOOL, "preprocessing.antialias": _BOOL, "preprocessing.input_hw": _PAIR,
                   "preprocessing.mean": _MEAN, "preprocessing.std": _STD}),
    (CROPS, MESH, {"postprocessing.camera.focal_length_px": _POSITIVE,
                   "postprocessing.camera.crop_size_px": _POSITIVE,
                   f"parts.{CROP_PART}.output_names": _names("global_orient", "body_pose", "betas", "pred_cam")}),
    (CROPS, KEYPOINTS, {f"parts.{CROP_PART}.output_names": _names("heatmaps")}),
    (FRAMES, None, {"canvas.width": _COUNT, "canvas.height": _COUNT, "preprocessing.canvas": _PAIR,
                    "buckets.grid": _PAIR, "buckets.buckets": _LIST, "buckets.buckets.*.hr_cells": _COUNT,
                    "buckets.buckets.*.other": _COUNT, "buckets.selection.confidence_gt": _NUMBER,
                    "buckets.selection.scale_lt": _NUMBER,
                    "parts.stage1.output_names": _names("scale_map", "low_res_tokens", "cls"),
                    "parts.stage2.output_names": _names("global_orient", "body_pose", "betas", "boxes", "confidence",
                                                        "transl")}),
)


def _values(data: object, path: list[str]) -> list[object]:
    """The values at a dotted path ("*" fans out over a list); a missing step yields one ``_MISSING``."""
    if not path:
        return [data]
    step, rest = path[0], path[1:]
    if step == "*":
        return [v for item in data for v in _values(item, rest)] if isinstance(data, list) else [_MISSING]
    if isinstance(data, dict):
        return _values(data[step], rest) if step in data else [_MISSING]
    if isinstance(data, list) and step.isdigit():
        return _values(data[int(step)], rest) if int(step) < len(data) else [_MISSING]
    return [_MISSING]


_MISSING = object()


def check_fields(meta: dict) -> None:
    """One line for the first field of :data:`FIELDS` that is missing or not what its readers expect."""
    task = artifact_task(meta)
    for needs_input, needs_output, fields in FIELDS:
        if needs_input not in (None, task.input) or needs_output not in (None, task.output):
            continue
        for path, (test, kind) in fields.items():
            for value in _values(meta, path.split(".")):
                if value is _MISSING or not test(value):
                    got = "missing" if value is _MISSING else f"{json.dumps(value)[:40]}"
                    raise InputError(f"{METADATA}: {path} must be {kind} (got {got}); re-run 'edgehmr convert'.")
