"""SAT-HMR reference bundles: frames on the canvas and the dynamic-shape reference's outputs and token selection.

Same folder layout and ``bundle.json`` as :mod:`edgehmr.reference` (``family: sat-hmr``)::

    inputs.npz    image [N, 3, H, W] float32 (canvas), scale [N], resized_hw [N, 2]
    outputs.npz   global_orient, body_pose, betas, transl, boxes, confidence [N, 50, ...];
                  small / low_res [N, H/28, W/28] and background [N, H/56, W/56]: the reference's token selection
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgehmr.calibration.sources import Sample
from edgehmr.errors import SpecError
from edgehmr.models import LoadedModel
from edgehmr.models.sat_hmr import STAGE2_OUTPUTS
from edgehmr.models.sat_reference import reference_forward
from edgehmr.reference import save_bundle, strict_fp32
from edgehmr.sat.frame import Canvas, prepare_frame, preprocessing_json

SELECTION_KEYS = ("small", "low_res", "background")


def unique_frames(samples: list[Sample]) -> list[Sample]:
    """Sources list one sample per person box; SAT-HMR takes each frame once."""
    seen, frames = set(), []
    for s in samples:
        key = s.name.split("#")[0]
        if key not in seen:
            seen.add(key)
            frames.append(s)
    return frames


def run_sat_reference(loaded: LoadedModel, images: np.ndarray, device: str = "cpu",
                      progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError("--device cuda was asked for but no CUDA GPU is visible to PyTorch here.")
    model = loaded.module.to(device)
    rows: list[dict[str, np.ndarray]] = []
    with strict_fp32():
        for image in images:
            outputs, sel = reference_forward(model, torch.from_numpy(image[None]).to(device))
            row = {n: o[0].float().cpu().numpy() for n, o in zip(STAGE2_OUTPUTS, outputs)}
            rows.append(row | {k: getattr(sel, k).cpu().numpy() for k in SELECTION_KEYS})
            if progress:
                progress(1)
    loaded.module.to("cpu")
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def make_sat_bundle(loaded: LoadedModel, samples: list[Sample], canvas: Canvas, out: Path, device: str = "cpu",
                    source: str = "", progress: Callable[[int], None] | None = None) -> Path:
    frames = [prepare_frame(s.image, canvas) for s in unique_frames(samples)]
    inputs = {"image": np.stack([f.image for f in frames]),
              "scale": np.array([f.scale for f in frames], np.float32),
              "resized_hw": np.array([f.resized_hw for f in frames], np.int64)}
    outputs = run_sat_reference(loaded, inputs["image"], device, progress)
    return save_bundle(out, loaded, inputs, outputs, preprocessing_json(canvas), source,
                       [s.name.split("#")[0] for s in unique_frames(samples)], device,
                       {"reference": "dynamic-shape SAT-HMR (boolean token selection, unpadded sequences)"})
