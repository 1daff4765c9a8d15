"""Full-frame preprocessing for SAT-HMR onto a fixed canvas.

The published code resizes the long side to 1288 and zero-pads the image bottom/right to a multiple of 56 per
side, so every aspect ratio gets its own padded size. A static-shape artifact has one canvas (W x H, multiples
of 56, at most 1288): the frame is resized with the reference's geometry (:func:`fit_resize`: long side to the
canvas, short side truncated from the same float32 arithmetic), bilinear, normalised with the ImageNet mean/std,
and the rest of the canvas is padded with black pixels (which normalise to ``-mean/std``, as the reference's
padding does). For exact parity with the reference on a given aspect ratio, choose the canvas the reference would
pad to (``Canvas.for_aspect``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgehmr.errors import SpecError
from edgehmr.inputs import check_image
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
        """The padded size the reference gives a ``width x height`` frame: its resize (long side to
        ``long_side``), each side rounded up to a multiple of 56."""
        rw, rh, _ = reference_resize(width, height, long_side)
        return cls(*(-(-v // ALIGN) * ALIGN for v in (rw, rh)))

    @property
    def grid(self) -> tuple[int, int]:
        """Low-res cell grid (rows, cols)."""
        return self.height // LOW_RES_CELL, self.width // LOW_RES_CELL

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def reference_resize(width: int, height: int, long_side: int) -> tuple[int, int, float]:
    """The published resize of a ``width x height`` frame: (resized width, resized height, canvas px per frame px).

    The long side (the width when square) becomes exactly ``long_side``; the other is ``int(rate * side)`` with
    the rate and the product in float32 as the reference computes them in torch (float64 arithmetic gives 965
    instead of 966 rows for a 4032x3024 photo at 1288).
    """
    return _side_to(width, height, long_side, width >= height)


def fit_resize(width: int, height: int, canvas: Canvas) -> tuple[int, int, float]:
    """Where a ``width x height`` frame lands on ``canvas``: the reference's resize, its long side set to the
    canvas side it lies along, when the other side then fits (always, on the canvas :meth:`Canvas.for_aspect`
    gives); otherwise the short side set to its canvas side (a frame of another aspect than the canvas's)."""
    along_width = width >= height
    for along in (along_width, not along_width):
        rw, rh, rate = _side_to(width, height, canvas.width if along else canvas.height, along)
        if rw <= canvas.width and rh <= canvas.height:
            return rw, rh, rate
    raise RuntimeError(f"a {width}x{height} frame does not fit the {canvas} canvas either way")  # unreachable


def _side_to(width: int, height: int, side: int, along_width: bool) -> tuple[int, int, float]:
    """The frame's width (``along_width``) or height resized to exactly ``side``, the other by the float32 rate
    (int truncation)."""
    # reason: ``int / tensor`` in torch is ``tensor.reciprocal() * int``: two float32 roundings, which differ from
    # one float32 division in the last bit often enough to move a side by a pixel (720x1280 at 672: 378 vs 377).
    rate = np.float32(side) * (np.float32(1.0) / np.float32(width if along_width else height))
    other = int(rate * np.float32(height if along_width else width))
    return (side, other, float(rate)) if along_width else (other, side, float(rate))


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # [3, H, W] float32 on the canvas
    scale: float  # canvas px per frame px
    resized_hw: tuple[int, int]  # the frame's extent on the canvas (the camera's principal point is its centre)


def prepare_frame(image_rgb: np.ndarray, canvas: Canvas) -> Frame:
    h, w = check_image(image_rgb).shape[:2]
    rw, rh, scale = fit_resize(w, h, canvas)
    # reason: uint8 pixels, as the reference resizes them. OpenCV's uint8 INTER_LINEAR is a fixed-point scheme
    # (11-bit weights, integer sums and shifts) that apps reproduce exactly (targets/cpp/src/sat_frame.cpp); a float
    # resize differs by up to 0.8 grey levels, more than the golden parity tolerance allows.
    resized = cv2.resize(image_rgb, (rw, rh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    padded = np.zeros((canvas.height, canvas.width, 3), np.float32)
    padded[:rh, :rw] = resized
    normalised = (padded / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return Frame(np.ascontiguousarray(normalised.transpose(2, 0, 1)), scale, (rh, rw))


def preprocessing_json(canvas: Canvas) -> dict:
    return {"name": "sat-canvas", "canvas": [canvas.width, canvas.height], "resize": "bilinear on uint8 pixels (OpenCV "
            "INTER_LINEAR); long side to the canvas side it lies along, other side int(float32 rate * side), the "
            "short side instead where the long one would not fit", "pad": "bottom/right, black pixels",
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "layout": "NCHW RGB float32, (pixel/255 - mean)/std"}
