"""Rotation and camera conventions of HMR2.0, written export-clean (no einsum, no ``torch.cross``).

Everything here works in the dtype of its input; nothing is hard-wired to float32.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

FOCAL_LENGTH = 5000.0  # px, for a 256 px crop (HMR2.0 EXTRA.FOCAL_LENGTH)
CROP_SIZE = 256.0  # MODEL.IMAGE_SIZE: the square crop side the camera refers to


def cross3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product along the last dim, written out.

    reason: ``torch.cross`` without ``dim`` fails coremltools' torch.export path and ``linalg_cross`` is unsupported.
    """
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return torch.stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), dim=-1)


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """HMR2.0's 6D layout: ``[..., 6] -> [..., 3, 3]``.

    a1 = v[0:3], a2 = v[3:6]; Gram-Schmidt gives b1, b2; b3 = b1 x b2; R = [b1 | b2 | b3] as *columns*.
    This is not SPIN's interleaved (3, 2) layout.
    """
    a1 = x[..., 0:3]
    a2 = x[..., 3:6]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1)
    b3 = cross3(b1, b2)
    return torch.stack((b1, b2, b3), dim=-1)


def cam_crop_to_translation(pred_cam: torch.Tensor, focal: float = FOCAL_LENGTH, crop: float = CROP_SIZE) -> torch.Tensor:
    """Weak-perspective crop camera ``[..., 3] = (s, tx, ty)`` -> crop-space translation ``[..., 3]`` in metres."""
    s, tx, ty = pred_cam[..., 0], pred_cam[..., 1], pred_cam[..., 2]
    tz = 2.0 * focal / (crop * s + 1e-9)
    return torch.stack((tx, ty, tz), dim=-1)


def cam_crop_to_full(
    pred_cam: np.ndarray, box_center: np.ndarray, box_size: np.ndarray, image_size: np.ndarray,
    focal: float = FOCAL_LENGTH, crop: float = CROP_SIZE,
) -> np.ndarray:
    """Crop camera -> translation in the full image's camera (the 4D-Humans demo, CLIFF Eq. 1).

    Host-side (numpy) on purpose: it needs the box, which the exported network never sees.

    Args:
        pred_cam: ``[B, 3]`` (s, tx, ty).
        box_center: ``[B, 2]`` box centre (x, y) in image pixels.
        box_size: ``[B]`` side of the square crop in image pixels.
        image_size: ``[B, 2]`` (W, H) in pixels.

    Returns:
        ``[B, 3]`` translation for a camera with focal ``focal / crop * max(W, H)`` at the image centre.
    """
    pred_cam = np.asarray(pred_cam, dtype=np.float64)
    w, h = image_size[:, 0], image_size[:, 1]
    focal_full = focal / crop * np.maximum(w, h)
    bs = box_size * pred_cam[:, 0] + 1e-9
    tz = 2.0 * focal_full / bs
    tx = 2.0 * (box_center[:, 0] - w / 2.0) / bs + pred_cam[:, 1]
    ty = 2.0 * (box_center[:, 1] - h / 2.0) / bs + pred_cam[:, 2]
    return np.stack((tx, ty, tz), axis=-1)


def project_to_crop_pixels(points: np.ndarray, cam_t: np.ndarray, focal: float = FOCAL_LENGTH,
                           crop: float = CROP_SIZE) -> np.ndarray:
    """Perspective projection of ``[B, J, 3]`` body-frame points with crop translation ``[B, 3]`` to crop pixels.

    The principal point is the crop centre, as in the HMR2.0 renderer.
    """
    p = points + cam_t[:, None, :]
    z = np.where(np.abs(p[..., 2:3]) < 1e-9, 1e-9, p[..., 2:3])
    return focal * p[..., :2] / z + crop / 2.0
