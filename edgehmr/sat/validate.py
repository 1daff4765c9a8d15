"""``edgehmr validate`` of the frames task (SAT-HMR): every frame through the two-stage artifact, drift per bucket
against the dynamic-shape reference (its own token selection, unpadded sequences).

The reference bundle also stores the reference's token selection. A frame whose selection on the target differs
(a scale-map value on the other side of a threshold, e.g. at fp16) or that overflowed the largest bucket is
counted and reported: its tokens differ from the reference's, so its drift is not only numerics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgehmr import tolerances
from edgehmr.errors import InputError
from edgehmr.metrics import error_stats, mpjpe_mm
from edgehmr.models.smpl import SMPLLayer, load_smpl
from edgehmr.reference import Bundle
from edgehmr.sat.bundle import SELECTION_KEYS
from edgehmr.sat.runner import SatPipeline
from edgehmr.sat.tables import demotion_note
from edgehmr.validate import Check, ValidationReport, compared_outputs

KEEP_CONFIDENCE = 0.3


@dataclass
class SatValidationReport(ValidationReport):
    buckets: dict[str, dict] = field(default_factory=dict)  # bucket -> frames, demoted, selection changes, drift

    @property
    def passed(self) -> bool:
        return super().passed and all(b["ok"] for b in self.buckets.values())


def _joints(smpl: SMPLLayer, out: dict[str, np.ndarray]) -> np.ndarray:
    rot = np.concatenate((out["global_orient"], out["body_pose"]), axis=-3)  # [N, Q, 24, 3, 3]
    n, q = rot.shape[:2]
    with torch.no_grad():
        _, joints = smpl(torch.from_numpy(rot.reshape(n * q, 24, 3, 3).astype(np.float64)),
                         torch.from_numpy(out["betas"].reshape(n * q, -1).astype(np.float64)))
    return joints.numpy().reshape(n, q, -1, 3)


def validate_frames(artifact_dir: Path, meta: dict, bundle: Bundle, smpl_path: str | None, threads: int | None,
                    progress: Callable[[int], None] | None) -> SatValidationReport:
    """SAT-HMR (:func:`edgehmr.validate.validate` calls it for the frames task): every frame through the
    two-stage artifact, drift per output, per bucket and in MPJPE."""
    if bundle.meta["preprocessing"].get("canvas") != meta["preprocessing"]["canvas"]:
        raise InputError(f"Reference bundle {bundle.path} was made on canvas "
                         f"{bundle.meta['preprocessing'].get('canvas')}, the artifact expects "
                         f"{meta['preprocessing']['canvas']}; make the bundle with the same --canvas.")
    pipeline = SatPipeline(artifact_dir, threads)
    precision = meta["precision"]
    tol = tolerances.output_tolerance(precision)
    report = SatValidationReport(str(artifact_dir), str(bundle.path), meta["model"]["model"], meta["model"]["weights"],
                                 meta["target"], precision, bundle.count, pipeline.execution,
                                 bundle.describe_reference())
    images = bundle.inputs["image"]
    if tuple(images.shape[1:]) != pipeline.input_shape[1:]:
        raise InputError(f"Reference bundle {bundle.path} holds frames of shape {list(images.shape[1:])}, the "
                         f"artifact's canvas needs {list(pipeline.input_shape[1:])}.")
    # An external bundle may leave the token selection out: then only the outputs are compared.
    has_selection = all(k in bundle.outputs for k in SELECTION_KEYS)
    outputs: dict[str, list[np.ndarray]] = defaultdict(list)
    per_bucket: dict[str, list[int]] = defaultdict(list)
    changed, demoted = [], {}
    for i, image in enumerate(images):
        result = pipeline.run(image[None])
        for name, value in result.outputs.items():
            outputs[name].append(value[0])
        per_bucket[result.bucket].append(i)
        sel = result.selection
        if has_selection and any(not np.array_equal(getattr(sel, k), bundle.outputs[k][i]) for k in SELECTION_KEYS):
            changed.append(i)
        if result.demoted:
            demoted[i] = result.demoted
        if progress:
            progress(1)
    out = {k: np.stack(v).astype(np.float32) for k, v in outputs.items()}
    names = compared_outputs(out, bundle.outputs, bundle, report.notes)
    missing = [k for k in ("global_orient", "body_pose", "betas", "confidence") if k not in names]
    if missing:
        raise InputError(f"Reference bundle {bundle.path} lacks {', '.join(missing)} in outputs.npz: the SAT-HMR task "
                         f"drift needs them.")
    out = {k: out[k] for k in names}
    ref = {k: bundle.outputs[k] for k in names}
    for name in out:
        stats = error_stats(out[name], ref[name])
        report.outputs[name] = stats | {"tolerance_rel_l2": tol, "ok": Check(stats["rel_l2"], tol).ok}
    for bucket, frames in sorted(per_bucket.items()):
        drift = {name: error_stats(out[name][frames], ref[name][frames]) for name in out}
        worst = max(d["rel_l2"] for d in drift.values())
        report.buckets[bucket] = {
            "frames": len(frames), "selection_changed": sum(i in changed for i in frames),
            "demoted_cells": sum(demoted.get(i, 0) for i in frames),
            "max_abs": max(d["max_abs"] for d in drift.values()), "worst_rel_l2": worst,
            "tolerance_rel_l2": tol, "ok": Check(worst, tol).ok,
        }
    smpl = SMPLLayer(load_smpl(smpl_path), dtype=torch.float64)
    joints, ref_joints = _joints(smpl, out), _joints(smpl, ref)
    kept = ref["confidence"] > KEEP_CONFIDENCE
    chosen = kept if kept.any() else np.ones_like(kept)
    value = float(mpjpe_mm(joints[chosen], ref_joints[chosen]).mean())
    t = tolerances.task_tolerance(precision, "mpjpe_mm")
    report.task["mpjpe_mm"] = {"value": value, "tolerance": t, "unit": "mm", "ok": Check(value, t).ok}
    if not kept.any():
        report.notes.append("no reference query above confidence 0.3 (seeded weights): MPJPE over all 50 queries")
    if smpl.source == "synthetic":
        report.notes.append("task drift measured through the synthetic SMPL stand-in; pass --smpl for real mm")
    if not has_selection:
        report.notes.append("the reference holds no token selection (small, low_res, background): selection "
                            "changes are not counted")
    if changed:
        report.notes.append(f"{len(changed)} frame(s) selected other tokens than the reference (scale-map values "
                            f"across a threshold); their drift includes that change")
    report.notes += demotion_note(meta["buckets"])
    if demoted:
        report.notes.append(f"{len(demoted)} frame(s) overflowed the largest bucket: {sum(demoted.values())} small "
                            f"cells seen at low resolution (convert without --allow-demotion, or widen --buckets)")
    return report
