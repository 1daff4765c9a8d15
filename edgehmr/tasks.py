"""What a model does, as the pipeline sees it: the task chooses the steps, never the model family's name.

Two axes differ between the models edgehmr converts:

- **input**: ``crops`` (one person crop per inference, boxes from the app: HMR2.0, ViTPose, DeformableHMR, the
  hierarchical encoders) or ``frames`` (a whole frame, every person found by the model: SAT-HMR, a two-stage
  bucketed artifact). It chooses the reference bundle, conversion, validation, the TensorRT build and the demo.
- **output**: ``mesh`` (SMPL rotations, shape and camera; task drift in mm) or ``keypoints`` (COCO heatmaps
  decoded by DARK-UDP; task drift in pixels). It chooses output decoding and task metrics.

Steps that differ are tables keyed by these values (see the CLI and :mod:`edgehmr.validate`). Artifacts record
their task in ``metadata.json``; those converted before it was recorded are read by their family.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgehmr.errors import InputError

CROPS, FRAMES = "crops", "frames"
MESH, KEYPOINTS = "mesh", "keypoints"


@dataclass(frozen=True)
class Task:
    name: str
    input: str  # CROPS | FRAMES
    output: str  # MESH | KEYPOINTS
    summary: str


TASKS = {t.name: t for t in (
    Task("crop-mesh", CROPS, MESH, "person crop -> SMPL mesh"),
    Task("crop-keypoints", CROPS, KEYPOINTS, "person crop -> 2D keypoints"),
    Task("frame-mesh", FRAMES, MESH, "whole frame -> SMPL mesh of every person"),
)}

# The one place a family name selects behaviour: the family's task.
FAMILY_TASKS = {"hmr2": "crop-mesh", "vitpose": "crop-keypoints", "sat-hmr": "frame-mesh"}


def family_task(family: object) -> Task:
    if not isinstance(family, str) or family not in FAMILY_TASKS:
        raise InputError(f"unknown model family {family!r}; this edgehmr knows {', '.join(FAMILY_TASKS)}.")
    return TASKS[FAMILY_TASKS[family]]


def artifact_task(meta: dict) -> Task:
    """The task an artifact's metadata records (or, for artifacts converted before it was recorded, its
    family's)."""
    name = meta.get("task")
    if name is None:
        model = meta.get("model")
        return family_task(model.get("family") if isinstance(model, dict) else None)
    if not isinstance(name, str) or name not in TASKS:
        raise InputError(f"metadata.json names task {name!r}; this edgehmr knows {', '.join(TASKS)}. Update edgehmr "
                         f"or re-run 'edgehmr convert'.")
    return TASKS[name]
