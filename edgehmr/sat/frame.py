"""Full-frame preprocessing for SAT-HMR onto a fixed canvas.

The published code resizes the long side to 1288 and zero-pads the image bottom/right to a multiple of 56 per
side, so every aspect ratio gets its own padded size. A static-shape artifact has one canvas (W x H, multiples
of 56, at most 1288): the frame is resized to fit it (long side to the canvas, short side ``int(...)`` as the
reference does, bilinear), normalised with the ImageNet mean/std, and the rest of the canvas is padded with
black pixels (which normalise to ``-mean/std``, as the reference's padding does). For exact parity with the
reference on a given aspect ratio, choose the canvas the reference would pad to (``Canvas.for_aspect``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgehmr.errors import InputError, SpecError
from edgehmr.models.sat_hmr import CANVAS, LOW_RES_CELL
from edgehmr.preprocess import IMAGENET_MEAN, IMAGENET_STD

ALIGN = 2 * LOW_RES_CELL  # 56: 2x2 blocks of 28-px cells must tile the canvas


@dataclass(frozen=True)
class Canvas:
    width: int
    height: int

    def __post_init__(self):
        for side in (self.width, self.height):
            if side % ALIGN or not ALIGN * 2 <= side <= CANVAS:
                raise SpecError(f"canvas {self.width}x{self.height}: each side must be a multiple of {ALIGN} "
                                f"between {2 * ALIGN} and {CANVAS} (e.g. 1288x1288, 1288x728 for 16:9).")

    @classmethod
    def parse(cls, text: str) -> Canvas:
        try:
            w, h = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise SpecError(f"--canvas takes WIDTHxHEIGHT, e.g. 1288x728 (got '{text}').") from None
        return cls(w, h)

    @classmethod
    def for_aspect(cls, width: int, height: int, long_side: int = CANVAS) -> Canvas:
        """The padded size the reference gives a ``width x height`` frame."""
        scale = long_side / max(width, height)
        return cls(*(-(-int(v * scale) // ALIGN) * ALIGN for v in (width, height)))

    @property
    def grid(self) -> tuple[int, int]:
        """Low-res cell grid (rows, cols)."""
        return self.height // LOW_RES_CELL, self.width // LOW_RES_CELL

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # [3, H, W] float32 on the canvas
    scale: float  # canvas px per frame px
    resized_hw: tuple[int, int]  # the frame's extent on the canvas (the camera's principal point is its centre)


def prepare_frame(image_rgb: np.ndarray, canvas: Canvas) -> Frame:
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise InputError(f"expected an RGB uint8 image [H, W, 3], got {image_rgb.dtype} {image_rgb.shape}")
    h, w = image_rgb.shape[:2]
    scale = min(canvas.width / w, canvas.height / h)
    rw, rh = min(int(w * scale), canvas.width), min(int(h * scale), canvas.height)
    # reason: resized in float, not uint8: OpenCV's uint8 bilinear path is fixed-point with SIMD-dependent
    # rounding, which apps in other languages cannot reproduce; the float path is plain two-tap interpolation
    # (targets/cpp/src/sat_frame.cpp gives the same values) and skips a rounding to whole pixel levels.
    resized = cv2.resize(image_rgb.astype(np.float32), (rw, rh), interpolation=cv2.INTER_LINEAR)
    padded = np.zeros((canvas.height, canvas.width, 3), np.float32)
    padded[:rh, :rw] = resized
    normalised = (padded / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return Frame(np.ascontiguousarray(normalised.transpose(2, 0, 1)), scale, (rh, rw))


def preprocessing_json(canvas: Canvas) -> dict:
    return {"name": "sat-canvas", "canvas": [canvas.width, canvas.height], "resize": "fit the canvas, bilinear on float "
            "pixels (OpenCV INTER_LINEAR; long side to the canvas, short side int(side*scale))", "pad": "bottom/right, black pixels",
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "layout": "NCHW RGB float32, (pixel/255 - mean)/std"}
