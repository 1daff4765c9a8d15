"""Input sources: an image folder or a video with optional person boxes, or seeded synthetic frames.

All yield ``(name, rgb_image, box_xyxy)`` samples; everything downstream goes through
:func:`edgehmr.preprocess.prepare_crop`, so reference bundles, calibration and validation share one crop path.

Boxes JSON (``boxes.json`` in the folder or beside the video as ``<video>.boxes.json``, or ``--boxes FILE``):
``{"img.jpg": [[x1, y1, x2, y2], ...]}`` in image pixels, keyed by file name for folders and by frame index
(``"0"``, ``"1"``, ...) for videos; a single box may be given without the outer list. Frames without an entry use
the whole frame. Images, boxes files and boxes are checked by :mod:`edgehmr.inputs` (the Predictor's rules).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgehmr.errors import InputError
from edgehmr.inputs import check_box, check_image, read_boxes, read_image_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class Sample:
    name: str
    image: np.ndarray  # [H, W, 3] RGB uint8
    box: tuple[float, float, float, float]  # xyxy, image pixels


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"Input folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}.")
    return files


def folder_samples(folder: str | Path, boxes_file: str | Path | None = None) -> Iterator[Sample]:
    folder = Path(folder)
    files = list_images(folder)
    default_boxes = folder / "boxes.json"
    boxes_path = Path(boxes_file) if boxes_file else (default_boxes if default_boxes.is_file() else None)
    names = [f.name for f in files]
    boxes = read_boxes(boxes_path, names, f"the names of the images in {folder}") if boxes_path else {}
    for f in files:
        image = read_image_rgb(f)
        for i, b in enumerate(_boxes_for(boxes, f.name, image, f"{f}")):
            yield Sample(f"{f.name}#{i}", image, tuple(b))


def _boxes_for(boxes: dict[str, list[list[float]]], key: str, image: np.ndarray, what: str) -> list[np.ndarray]:
    """The boxes given for one image (checked against it), or the whole image."""
    h, w = image.shape[:2]
    try:
        return [check_box(b, w, h) for b in boxes.get(key, [[0.0, 0.0, float(w), float(h)]])]
    except InputError as e:
        raise InputError(f"{what}: {e}") from None


def video_samples(path: str | Path, count: int, boxes_file: str | Path | None = None) -> Iterator[Sample]:
    """``count`` frames spread evenly over the video (all frames if it has fewer)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Video not found: {path}")
    default_boxes = path.with_name(path.name + ".boxes.json")
    boxes_path = Path(boxes_file) if boxes_file else (default_boxes if default_boxes.is_file() else None)
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        if total <= 0:
            raise InputError(f"Cannot read video {path}: no decodable frames (is it a video file OpenCV can open?).")
        boxes = read_boxes(boxes_path, [str(i) for i in range(total)],
                                              f"frame indices 0..{total - 1} of {path.name}") if boxes_path else {}
        wanted = sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))
        for index in wanted:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = cap.read()
            if not ok:
                raise InputError(f"Cannot read frame {index} of video {path}.")
            image = check_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"frame {index} of {path}")
            for i, b in enumerate(_boxes_for(boxes, str(index), image, f"frame {index} of {path}")):
                yield Sample(f"{path.name}@{index}#{i}", image, tuple(b))
    finally:
        cap.release()


def synthetic_samples(count: int, seed: int = 0) -> Iterator[Sample]:
    """Seeded smooth-textured frames with a person-sized box: exercises the crop path without any data."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = int(rng.integers(360, 720)), int(rng.integers(360, 960))
        low = rng.uniform(0, 255, (12, 16, 3)).astype(np.float32)
        image = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        bh = rng.uniform(0.4, 0.9) * h
        bw = bh * rng.uniform(0.3, 0.6)
        cx, cy = rng.uniform(bw / 2, w - bw / 2), rng.uniform(bh / 2, h - bh / 2)
        yield Sample(f"synthetic-{i:03d}", image, (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))


def open_source(inputs: str, count: int = 8, boxes: str | None = None, seed: int = 0) -> list[Sample]:
    """``inputs`` is ``synthetic``, an image folder or a video file."""
    if inputs == SYNTHETIC:
        return list(synthetic_samples(count, seed))
    if Path(inputs).suffix.lower() in VIDEO_SUFFIXES:
        return list(video_samples(inputs, count, boxes))
    return list(folder_samples(inputs, boxes))
