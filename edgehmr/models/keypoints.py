"""ViTPose heatmap decoding (host side, numpy + OpenCV): flip averaging, argmax, DARK-UDP, back to image pixels.

Follows ViTPose's test config: ``use_udp=True``, ``post_process='default'`` (DARK-UDP with an 11x11 blur),
``shift_heatmap=False``. Apps reproduce this from ``metadata.json``.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgehmr.models.vitpose_head import COCO_FLIP_PAIRS

COCO_KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                       "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                       "right_knee", "left_ankle", "right_ankle")

DARK_KERNEL = 11


def flip_back(heatmaps_flipped: np.ndarray, pairs=COCO_FLIP_PAIRS) -> np.ndarray:
    """Heatmaps of the W-flipped image ``[B, K, H, W]`` -> heatmaps in the original frame (no 1 px shift)."""
    out = heatmaps_flipped.copy()
    for left, right in pairs:
        out[:, left], out[:, right] = heatmaps_flipped[:, right], heatmaps_flipped[:, left]
    return out[..., ::-1]


def argmax_peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[B, K, H, W]`` -> integer peak coords ``[B, K, 2]`` (x, y) as float and peak values ``[B, K]``."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1)
    idx = flat.argmax(axis=2)
    maxval = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack((idx % w, idx // w), axis=-1).astype(np.float64)
    coords[maxval <= 0] = -1.0
    return coords, maxval


def dark_udp_refine(coords: np.ndarray, heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> np.ndarray:
    """Sub-pixel refinement by a Newton step on the log of the blurred heatmap (ViTPose ``post_dark_udp``)."""
    b, k, h, w = heatmaps.shape
    hm = np.empty_like(heatmaps, dtype=np.float64)
    for i in range(b):
        for j in range(k):
            hm[i, j] = cv2.GaussianBlur(heatmaps[i, j].astype(np.float64), (kernel, kernel), 0)
    hm = np.log(np.clip(hm, 0.001, 50.0))
    hm = np.pad(hm, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    out = coords.copy()
    x = np.clip(coords[..., 0].astype(np.int64), 0, w - 1) + 1
    y = np.clip(coords[..., 1].astype(np.int64), 0, h - 1) + 1
    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")

    def at(dx: int, dy: int) -> np.ndarray:
        return hm[bi, ki, np.clip(y + dy, 0, h + 1), np.clip(x + dx, 0, w + 1)]

    i0 = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = at(1, 0) - 2 * i0 + at(-1, 0)
    dyy = at(0, 1) - 2 * i0 + at(0, -1)
    dxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + 2 * i0 - at(-1, 0) - at(0, -1) + at(-1, -1))
    hess = np.stack((np.stack((dxx, dxy), -1), np.stack((dxy, dyy), -1)), -2)
    hess = hess + np.finfo(np.float32).eps * np.eye(2)
    grad = np.stack((dx, dy), -1)[..., None]
    step = np.linalg.solve(hess, grad)[..., 0]
    # reason: where the log-heatmap is flat or not a maximum (clipped, low-confidence maps), the Newton step is
    # unbounded and amplifies tiny numeric differences into jumps of many pixels. A sampled peak lies within
    # half a pixel of its argmax, so steps beyond one pixel are rejected and the argmax is kept (ViTPose's
    # post_dark_udp has no such guard; on well-formed peaks the two agree).
    ok = (np.abs(step) <= 1.0).all(-1) & np.isfinite(step).all(-1)
    out -= np.where(ok[..., None], step, 0.0)
    return out


def heatmap_to_image(coords: np.ndarray, center: np.ndarray, scale: np.ndarray, heatmap_size=(64, 48)) -> np.ndarray:
    """UDP inverse transform: heatmap coords ``[B, K, 2]`` -> image pixels, with box ``center`` / ``scale`` ``[B, 2]``.

    ``scale`` is in mmpose units (box size / 200, already padded by 1.25).
    """
    hh, ww = heatmap_size
    size = scale * 200.0
    x = coords[..., 0] * size[:, None, 0] / (ww - 1) + center[:, None, 0] - size[:, None, 0] / 2.0
    y = coords[..., 1] * size[:, None, 1] / (hh - 1) + center[:, None, 1] - size[:, None, 1] / 2.0
    return np.stack((x, y), axis=-1)


def decode_heatmaps(heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray,
                    heatmaps_flipped: np.ndarray | None = None) -> np.ndarray:
    """Heatmaps ``[B, 17, 64, 48]`` -> keypoints ``[B, 17, 3]`` = (x, y, confidence) in image pixels."""
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if heatmaps_flipped is not None:
        heatmaps = 0.5 * (heatmaps + flip_back(np.asarray(heatmaps_flipped, dtype=np.float64)))
    coords, maxval = argmax_peaks(heatmaps)
    coords = dark_udp_refine(coords, heatmaps)
    xy = heatmap_to_image(coords, np.asarray(center, np.float64), np.asarray(scale, np.float64),
                          heatmaps.shape[-2:])
    return np.concatenate((xy, maxval[..., None]), axis=-1)
