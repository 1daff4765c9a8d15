"""``edgehmr validate``: run an artifact on a reference bundle's inputs and measure drift against its outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgehmr import tolerances
from edgehmr.artifact import VALIDATION_FILE, read_metadata, write_json
from edgehmr.errors import InputError
from edgehmr.metrics import M_TO_MM, error_stats, mpjpe_mm, pa_mpjpe_mm, point_error, pve_mm, root_aligned
from edgehmr.models.geometry import project_to_crop_pixels
from edgehmr.models.keypoints import COCO_KEYPOINT_NAMES, decode_heatmaps
from edgehmr.models.smpl import SMPL_JOINT_NAMES, SMPLLayer, load_smpl
from edgehmr.preprocess import INPUT_HW
from edgehmr.reference import Bundle, load_bundle
from edgehmr.targets.base import Runner, open_artifact_runner
from edgehmr.tasks import CROPS, FRAMES, KEYPOINTS, MESH, artifact_task


# Reference outputs each task's drift reads, by the task's output (a hand-written bundle must hold them).
TASK_DRIFT_OUTPUTS = {MESH: ("global_orient", "body_pose", "betas", "pred_cam_t"), KEYPOINTS: ("heatmaps",)}
# The task metrics each task's drift reports (report.task keys), in report order.
TASK_METRICS = {MESH: ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "kp2d_px", "cam_t_mm"), KEYPOINTS: ("kp2d_px",)}


@dataclass
class Check:
    value: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.value) and self.value <= self.tolerance)


@dataclass
class ValidationReport:
    artifact: str
    bundle: str
    model: str
    weights: str
    target: str
    precision: str
    samples: int
    execution: str  # what produced the numbers: the runtime itself, or a simulation of it
    reference: str  # what produced the reference outputs: edgehmr's own model or the user's code
    outputs: dict[str, dict] = field(default_factory=dict)  # name -> error_stats + tolerance + ok
    task: dict[str, dict] = field(default_factory=dict)  # metric -> value, tolerance, ok, unit
    notes: list[str] = field(default_factory=list)
    # Where the drift sits on the body: {"metric", "unit", "names", "mean", "max"} per joint over the samples.
    per_joint: dict | None = None

    @property
    def passed(self) -> bool:
        return all(o["ok"] for o in self.outputs.values()) and all(t["ok"] for t in self.task.values())

    def to_json(self) -> dict:
        return asdict(self) | {"passed": self.passed}


def check_bundle_matches(meta: dict, bundle: Bundle) -> None:
    """Refuse a bundle made from another model or other weights: its outputs would be a different function.

    An edgehmr bundle names the weights by the hash of our loaded tensors; an external one (the user's own code)
    by the sha256 of the checkpoint file, which the artifact records when it was converted from a checkpoint."""
    a, b = meta["model"], bundle.meta["model"]
    if bundle.external:
        if a["model"] != b["model"] or a.get("checkpoint_sha256") != b["checkpoint_sha256"]:
            have = (f"checkpoint {a['checkpoint_sha256'][:12]}" if a.get("checkpoint_sha256")
                    else "seeded weights, no checkpoint")
            raise InputError(
                f"External reference {bundle.path} is for {b['model']} with checkpoint {b['checkpoint_sha256'][:12]}, "
                f"but the artifact is {a['model']} ({have}); convert with --model {b['model']} --checkpoint <the "
                f"file whose sha256 the bundle records>.")
    elif a["model"] != b["model"] or a["weights_sha256"] != b["weights_sha256"]:
        raise InputError(
            f"Reference bundle {bundle.path} was made from {b['model']} (weights {b['weights_sha256'][:12]}), "
            f"but the artifact is {a['model']} (weights {a['weights_sha256'][:12]}); make a bundle with "
            f"'edgehmr reference --model {a['model']}' and the same --checkpoint.")
    if meta["preprocessing"]["name"] != bundle.meta["preprocessing"]["name"]:
        raise InputError(f"Reference bundle {bundle.path} used the '{bundle.meta['preprocessing']['name']}' "
                         f"preprocessing, the artifact expects '{meta['preprocessing']['name']}'.")


def compared_outputs(out: dict[str, np.ndarray], ref: dict[str, np.ndarray], bundle: Bundle,
                     notes: list[str]) -> list[str]:
    """Names of the artifact outputs that the bundle holds, shapes checked; a note for each it lacks."""
    names = []
    for name in out:
        if name not in ref:
            notes.append(f"output '{name}' has no reference; not compared")
            continue
        if ref[name].shape != out[name].shape:
            raise InputError(f"Reference bundle {bundle.path}: output '{name}' has shape {list(ref[name].shape)}, "
                             f"the artifact gives {list(out[name].shape)}.")
        names.append(name)
    if not names:
        raise InputError(f"Reference bundle {bundle.path} holds none of the artifact's outputs "
                         f"({', '.join(out)}); name its arrays in outputs.npz after them.")
    return names


def check_input_shape(shape: list, bundle: Bundle) -> None:
    """The bundle's network inputs must have the artifact's input shape (any count)."""
    if list(bundle.inputs["image"].shape[1:]) != list(shape[1:]):
        raise InputError(f"Reference bundle {bundle.path} holds inputs of shape {list(bundle.inputs['image'].shape[1:])}"
                         f" per sample, the artifact takes {list(shape[1:])}.")


def run_artifact(runner: Runner, images: np.ndarray,
                 progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Run every crop through a static-batch artifact, padding the last batch."""
    entry = runner.default_entry
    name = runner.input_names[0]
    batch = int(runner.part["entries"][entry][name][0])
    chunks: list[dict[str, np.ndarray]] = []
    for i in range(0, len(images), batch):
        part = images[i:i + batch]
        feed = np.zeros((batch, *images.shape[1:]), np.float32)
        feed[:len(part)] = part
        out = runner.run(entry, {name: feed})
        chunks.append({k: v[:len(part)] for k, v in out.items()})
        if progress:
            progress(len(part))
    return {k: np.concatenate([c[k] for c in chunks]).astype(np.float32) for k in chunks[0]}


def _smpl_forward(smpl: SMPLLayer, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rot = np.concatenate((outputs["global_orient"], outputs["body_pose"]), axis=1)
    with torch.no_grad():
        v, j = smpl(torch.from_numpy(rot.astype(np.float64)), torch.from_numpy(outputs["betas"].astype(np.float64)))
    return v.numpy(), j.numpy()


def per_joint_errors(errors: np.ndarray, names: tuple[str, ...], metric: str, unit: str) -> dict:
    """``errors [N, J]`` -> mean and max per joint over the samples."""
    return {"metric": metric, "unit": unit, "names": list(names), "mean": errors.mean(0).tolist(),
            "max": errors.max(0).tolist()}


def hmr2_task_drift(out: dict, ref: dict, smpl: SMPLLayer) -> tuple[dict[str, tuple[float, str]], dict]:
    """Task metrics and the per-joint drift (root-aligned 3D error per SMPL joint, the terms of MPJPE), from one
    SMPL pass per side."""
    verts, joints = _smpl_forward(smpl, out)
    ref_verts, ref_joints = _smpl_forward(smpl, ref)
    # 2D drift in model-input (crop) pixels: comparable across images whatever the person's size in the frame.
    kp = project_to_crop_pixels(joints, out["pred_cam_t"].astype(np.float64))
    ref_kp = project_to_crop_pixels(ref_joints, ref["pred_cam_t"].astype(np.float64))
    per_joint = np.linalg.norm(root_aligned(joints) - root_aligned(ref_joints), axis=-1) * M_TO_MM
    return {
        "mpjpe_mm": (float(mpjpe_mm(joints, ref_joints).mean()), "mm"),
        "pa_mpjpe_mm": (float(pa_mpjpe_mm(joints, ref_joints).mean()), "mm"),
        "pve_mm": (float(pve_mm(verts, ref_verts, joints[:, 0], ref_joints[:, 0]).mean()), "mm"),
        "kp2d_px": (float(point_error(kp, ref_kp).mean()), "crop px"),
        "cam_t_mm": (float(np.linalg.norm(out["pred_cam_t"] - ref["pred_cam_t"], axis=-1).mean() * 1000), "mm"),
    }, per_joint_errors(per_joint, SMPL_JOINT_NAMES, "joint_3d_mm", "mm")


def vitpose_task_drift(out: dict, ref: dict) -> tuple[dict[str, tuple[float, str]], dict]:
    """2D keypoint drift and its per-keypoint terms, decoding each side once."""
    errors = np.linalg.norm(_decoded_keypoints(out) - _decoded_keypoints(ref), axis=-1)
    return ({"kp2d_px": (float(errors.mean()), "crop px")},
            per_joint_errors(errors, COCO_KEYPOINT_NAMES, "kp2d_px", "crop px"))


def _decoded_keypoints(out: dict) -> np.ndarray:
    """Keypoints decoded as apps do (DARK-UDP), in model-input pixels (heatmap px x 191/47, 255/63)."""
    n = out["heatmaps"].shape[0]
    hm_h, hm_w = out["heatmaps"].shape[-2:]
    # An ROI of exactly (hm_w - 1, hm_h - 1) centred on the heatmap maps heatmap px to themselves.
    center = np.tile([(hm_w - 1) / 2.0, (hm_h - 1) / 2.0], (n, 1))
    scale = np.tile([(hm_w - 1) / 200.0, (hm_h - 1) / 200.0], (n, 1))
    to_input = np.array([(INPUT_HW[1] - 1) / (hm_w - 1), (INPUT_HW[0] - 1) / (hm_h - 1)])
    # reason: guarded steps (max_step=1). On flat maps (untrained or badly quantized heads) the unguarded Newton
    # step turns float noise into jumps of many pixels, which would measure the step's instability rather than the
    # artifact's drift; on the sharp peaks of a trained head the two decodings agree.
    return decode_heatmaps(out["heatmaps"], center, scale, max_step=1.0)[..., :2] * to_input


def mesh_references(meta: dict, ref: dict, smpl_path: str | None) -> tuple[dict[str, np.ndarray], SMPLLayer]:
    """Reference vertices/joints for a mesh-baked artifact, through the SMPL model it was baked with."""
    source = (meta.get("smpl") or {}).get("source", "synthetic")
    smpl = SMPLLayer(load_smpl(smpl_path or source), dtype=torch.float64)
    verts, joints = _smpl_forward(smpl, ref)
    return {"vertices": verts, "joints": joints}, smpl


def validate(artifact_dir: str | Path, bundle_dir: str | Path, smpl_path: str | None = None,
             threads: int | None = None, progress: Callable[[int], None] | None = None) -> ValidationReport:
    """Run the artifact on the bundle's inputs and measure its drift from the bundle's outputs, per output and in
    the task's own terms; the report is also written to the artifact's ``validation.json``. ``progress`` is
    called with the number of samples done after each step."""
    from edgehmr.sat.validate import validate_frames

    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    bundle = load_bundle(bundle_dir)
    check_bundle_matches(meta, bundle)
    by_input = {CROPS: validate_crops, FRAMES: validate_frames}
    report = by_input[artifact_task(meta).input](artifact_dir, meta, bundle, smpl_path, threads, progress)
    if meta["model"]["weights"] == "untrained":
        report.notes.append("untrained (seeded) weights: drift is real, accuracy is not meaningful")
    write_json(artifact_dir / VALIDATION_FILE, report.to_json())
    return report


def validate_crops(artifact_dir: Path, meta: dict, bundle: Bundle, smpl_path: str | None, threads: int | None,
                   progress: Callable[[int], None] | None) -> ValidationReport:
    """A crop model: every crop through the static-batch artifact, drift per output and in the task's terms."""
    precision = meta["precision"]
    check_input_shape(meta["inputs"][0]["shape"], bundle)
    task = artifact_task(meta)
    missing = [name for name in TASK_DRIFT_OUTPUTS[task.output] if name not in bundle.outputs]
    if missing:
        raise InputError(f"Reference bundle {bundle.path} lacks {', '.join(missing)} in outputs.npz: the {task.output} "
                         f"task drift needs them.")
    runner = open_artifact_runner(artifact_dir, meta, threads=threads)
    out = run_artifact(runner, bundle.inputs["image"], progress)
    ref = dict(bundle.outputs)
    report = ValidationReport(str(artifact_dir), str(bundle.path), meta["model"]["model"], meta["model"]["weights"],
                              meta["target"], precision, bundle.count, runner.execution, bundle.describe_reference())
    smpl = None
    if meta.get("with_mesh"):
        mesh_ref, smpl = mesh_references(meta, ref, smpl_path)
        ref.update(mesh_ref)
    tol = tolerances.output_tolerance(precision)
    for name in compared_outputs(out, ref, bundle, report.notes):
        stats = error_stats(out[name], ref[name])
        report.outputs[name] = stats | {"tolerance_rel_l2": tol, "ok": Check(stats["rel_l2"], tol).ok}
    if task.output == MESH:
        if smpl is None:
            smpl = SMPLLayer(load_smpl(smpl_path), dtype=torch.float64)
        if smpl.source == "synthetic":
            report.notes.append("task drift measured through the synthetic SMPL stand-in; pass --smpl for real mm")
        task, report.per_joint = hmr2_task_drift(out, ref, smpl)
    else:
        task, report.per_joint = vitpose_task_drift(out, ref)
    for metric, (value, unit) in task.items():
        t = tolerances.task_tolerance(precision, metric)
        report.task[metric] = {"value": value, "tolerance": t, "unit": unit, "ok": Check(value, t).ok}
    return report
