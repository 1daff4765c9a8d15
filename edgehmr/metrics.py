"""Numeric drift between an artifact's outputs and the FP32 reference, and task metrics in mm / px."""

from __future__ import annotations

import numpy as np

M_TO_MM = 1000.0


def error_stats(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Per-output drift. ``rel_l2`` = ||out - ref|| / ||ref|| is what tolerances gate on."""
    a = np.asarray(out, np.float64).ravel()
    r = np.asarray(ref, np.float64).ravel()
    d = a - r
    ref_norm, out_norm = np.linalg.norm(r), np.linalg.norm(a)
    tiny = 1e-30
    return {
        "max_abs": float(np.abs(d).max()) if d.size else 0.0,
        "mean_abs": float(np.abs(d).mean()) if d.size else 0.0,
        "rel_l2": float(np.linalg.norm(d) / max(ref_norm, tiny)),
        "rel_max": float(np.abs(d).max() / max(np.abs(r).max(), tiny)) if d.size else 0.0,
        "cosine": float(a @ r / max(ref_norm * out_norm, tiny)),
    }


def root_aligned(points: np.ndarray, root: int = 0) -> np.ndarray:
    return points - points[:, root:root + 1]


def mpjpe_mm(pred: np.ndarray, ref: np.ndarray, root: int = 0) -> np.ndarray:
    """Per-sample mean joint error after aligning the root (pelvis) joints, mm. ``[N, J, 3]`` -> ``[N]``."""
    return np.linalg.norm(root_aligned(pred, root) - root_aligned(ref, root), axis=-1).mean(-1) * M_TO_MM


def procrustes_align(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Similarity transform (scale, rotation, translation) of each ``pred [J, 3]`` onto ``ref``, batched."""
    mu_p, mu_r = pred.mean(1, keepdims=True), ref.mean(1, keepdims=True)
    p, r = pred - mu_p, ref - mu_r
    u, s, vt = np.linalg.svd(np.swapaxes(p, 1, 2) @ r)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(s)
    fix[:, -1] = d
    rot = (u * fix[:, None, :]) @ vt
    var = (p**2).sum((1, 2))
    scale = (s * fix).sum(1) / np.maximum(var, 1e-30)
    return scale[:, None, None] * (p @ rot) + mu_r


def pa_mpjpe_mm(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-sample error after Procrustes alignment, mm; NaN for samples with non-finite joints (an artifact that
    overflowed must fail validation, not stop it: the SVD does not converge on them)."""
    out = np.full(pred.shape[0], np.nan)
    finite = np.isfinite(pred).all((1, 2)) & np.isfinite(ref).all((1, 2))
    if finite.any():
        aligned = procrustes_align(pred[finite], ref[finite])
        out[finite] = np.linalg.norm(aligned - ref[finite], axis=-1).mean(-1) * M_TO_MM
    return out


def pve_mm(pred_verts: np.ndarray, ref_verts: np.ndarray, pred_root: np.ndarray, ref_root: np.ndarray) -> np.ndarray:
    """Per-vertex error after aligning each mesh by its root joint ``[N, 3]``, mm."""
    diff = (pred_verts - pred_root[:, None]) - (ref_verts - ref_root[:, None])
    return np.linalg.norm(diff, axis=-1).mean(-1) * M_TO_MM


def point_error(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-sample mean Euclidean distance over points ``[N, K, D]`` -> ``[N]`` (units of the input)."""
    return np.linalg.norm(pred - ref, axis=-1).mean(-1)
