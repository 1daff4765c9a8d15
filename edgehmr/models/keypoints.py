"""ViTPose heatmap decoding (host side, numpy + OpenCV): flip averaging, argmax, DARK-UDP, back to image pixels.

Follows ViTPose's test config: ``use_udp=True``, ``post_process='default'`` (DARK-UDP with an 11x11 blur),
``shift_heatmap=False``. Apps reproduce this from ``metadata.json``; ``targets/cpp/src/keypoints.cpp`` is the C++
twin and computes the same numbers bit for bit.

Parity with mmpose's ``keypoints_from_heatmaps`` (checked against the original's outputs in
tests/test_parity_vitpose.py), including what is easy to get wrong:

- The network's heatmaps are float32 and the original decodes them in float32: the 11x11 blur, the clip to
  [0.001, 50], the log and the finite differences. The Newton step divides by the log-heatmap's curvature, which is
  tiny away from a clean peak, so this float32 rounding is *amplified*: decoding the same maps in float64 moves the
  keypoints of an untrained network by ~4e-3 heatmap px. Everything up to the derivatives is therefore float32
  here, with the original's order of operations; the Hessian (plus float32 eps on its diagonal) is inverted in
  float64, as ``np.linalg.inv`` does there.
- The one deliberate difference: the log is the correctly rounded float32 log (float64 log, rounded), not numpy's
  float32 ``np.log``, whose last bit depends on the SIMD kernel numpy picks for the CPU (x86 AVX2/AVX-512: ~10% of
  values one ulp away). That keeps Python and C++ identical on every platform; against the original on the golden
  case it moves keypoints by at most 4e-4 heatmap px (the parity tolerance is 1e-3).
- No guard on the step: the original subtracts the raw Newton step even where it jumps many pixels (flat or
  non-maximal maps, peaks 1-3 px from the border). ``max_step`` opts in to rejecting such steps.
- A map whose maximum is <= 0 starts from heatmap coordinate (-1, -1). The original then reads the derivatives
  around padded pixel (0, 0) through a flat index into the whole batch, so the "left" and "up" neighbours are the
  bottom-row pixels of the *preceding* map (for the batch's first map, of its last map). That is reproduced as
  is; such keypoints have confidence <= 0 and no meaningful location either way.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgehmr.models.vitpose_head import COCO_FLIP_PAIRS

COCO_KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                       "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                       "right_knee", "left_ankle", "right_ankle")

DARK_KERNEL = 11
LOG_CLIP = (0.001, 50.0)  # blurred heatmap values are clipped to this range before the log
HESSIAN_EPS = float(np.finfo(np.float32).eps)  # added to the Hessian's diagonal before inverting it


def flip_back(heatmaps_flipped: np.ndarray, pairs=COCO_FLIP_PAIRS) -> np.ndarray:
    """Heatmaps of the W-flipped image ``[B, K, H, W]`` -> heatmaps in the original frame (no 1 px shift)."""
    out = heatmaps_flipped.copy()
    for left, right in pairs:
        out[:, left], out[:, right] = heatmaps_flipped[:, right], heatmaps_flipped[:, left]
    return out[..., ::-1]


def argmax_peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[B, K, H, W]`` -> integer peak coords ``[B, K, 2]`` (x, y) as float and peak values ``[B, K]``.

    The first maximum in row-major order; (-1, -1) for a map whose maximum is <= 0."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1)
    idx = flat.argmax(axis=2)
    maxval = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack((idx % w, idx // w), axis=-1).astype(np.float64)
    coords[maxval <= 0] = -1.0
    return coords, maxval


def log_blurred(heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> np.ndarray:
    """``[B, K, H, W]`` -> float32 log of each map blurred by ``cv2.GaussianBlur((kernel, kernel), 0)`` and
    clipped to :data:`LOG_CLIP` (all in float32)."""
    hm = np.array(heatmaps, dtype=np.float32)  # a copy, blurred map by map
    for i in range(hm.shape[0]):
        for j in range(hm.shape[1]):
            hm[i, j] = cv2.GaussianBlur(hm[i, j], (kernel, kernel), 0)  # sigma from the size: 2.0 for 11
    np.clip(hm, np.float32(LOG_CLIP[0]), np.float32(LOG_CLIP[1]), out=hm)
    # reason: correctly rounded, not np.log's CPU-dependent float32 kernel (see the module docstring)
    return np.log(hm.astype(np.float64)).astype(np.float32)


def dark_udp_refine(coords: np.ndarray, heatmaps: np.ndarray, kernel: int = DARK_KERNEL,
                    max_step: float | None = None) -> np.ndarray:
    """Sub-pixel refinement by one Newton step on the log of the blurred heatmap (ViTPose ``post_dark_udp``).

    ``coords``: ``[B, K, 2]`` from :func:`argmax_peaks`. Returns float32-valued coords ``[B, K, 2]`` (float64 array).
    ``max_step``: None (default) subtracts every finite step, as the original does; a number keeps the argmax
    where a step component exceeds it (1.0 is a sensible guard for drift metrics: a sampled peak lies within half
    a pixel of its argmax). A non-finite step (singular Hessian, NaN maps) always keeps the argmax.
    """
    b, k, h, w = heatmaps.shape
    padded = np.pad(log_blurred(heatmaps, kernel), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").reshape(-1)
    row = w + 2
    ix = coords.astype(np.int64)
    # flat index of padded pixel (x + 1, y + 1) of map (b, k); neighbours are flat offsets from it, so a centre
    # on the padding's corner (x = y = -1) reads the preceding map for its negative offsets, as in the original
    centre = (ix[..., 0] + 1) + (ix[..., 1] + 1) * row + np.arange(b * k).reshape(b, k) * (row * (h + 2))

    def at(offset: int) -> np.ndarray:
        return np.take(padded, centre + offset, mode="wrap")  # wrap == numpy's negative indexing here

    i0, right, left, down, up = at(0), at(1), at(-1), at(row), at(-row)
    down_right, up_left = at(row + 1), at(-row - 1)
    half, two = np.float32(0.5), np.float32(2.0)
    # float32, operations in the original's order (the rounding is amplified by the division below)
    gx = half * (right - left)
    gy = half * (down - up)
    hxx = right - two * i0 + left
    hyy = down - two * i0 + up
    hxy = half * (down_right - right - down + i0 + i0 - left - up + up_left)
    a = hxx.astype(np.float64) + HESSIAN_EPS
    c = hyy.astype(np.float64) + HESSIAN_EPS
    bb = hxy.astype(np.float64)
    gx, gy = gx.astype(np.float64), gy.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        det = a * c - bb * bb
        step = np.stack(((c * gx - bb * gy) / det, (a * gy - bb * gx) / det), axis=-1)
    ok = np.isfinite(step).all(-1)
    if max_step is not None:
        ok &= (np.abs(step) <= max_step).all(-1)
    refined = (coords.astype(np.float32).astype(np.float64) - np.where(ok[..., None], step, 0.0))
    return refined.astype(np.float32).astype(np.float64)  # the original keeps its coords in float32


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
                    heatmaps_flipped: np.ndarray | None = None, max_step: float | None = None) -> np.ndarray:
    """Heatmaps ``[B, 17, 64, 48]`` -> keypoints ``[B, 17, 3]`` = (x, y, confidence) in image pixels.

    ``heatmaps_flipped``: the network's output for the W-flipped crops (flip test): averaged in after
    :func:`flip_back`. Decoded in float32 like the original (see the module docstring); ``max_step``: see
    :func:`dark_udp_refine`.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps_flipped is not None:
        heatmaps = (heatmaps + flip_back(np.asarray(heatmaps_flipped, dtype=np.float32))) * np.float32(0.5)
    coords, maxval = argmax_peaks(heatmaps)
    coords = dark_udp_refine(coords, heatmaps, max_step=max_step)
    xy = heatmap_to_image(coords, np.asarray(center, np.float64), np.asarray(scale, np.float64),
                          heatmaps.shape[-2:])
    return np.concatenate((xy, maxval[..., None].astype(np.float64)), axis=-1)
