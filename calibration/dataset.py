"""Calibration sets: person crops for static INT8 quantization, cached by content hash.

Sources (``--calib``): an image folder (optional ``boxes.json``), a video file, a reference bundle folder (its
inputs are used as they are), or ``synthetic`` (seeded frames: for tests and demos, never chosen silently).
Crops go through :func:`edgehmr.preprocess.prepare_crop`, the same path reference bundles and apps use.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgehmr.cache import cache_root
from edgehmr.calibration.sources import IMAGE_SUFFIXES, SYNTHETIC, VIDEO_SUFFIXES, Sample, open_source
from edgehmr.errors import InputError, SpecError
from edgehmr.preprocess import CropRule, prepare_crop
from edgehmr.reference import load_bundle

DEFAULT_COUNT = 128
MIN_RECOMMENDED = 32
CACHE_VERSION = 1


@dataclass
class CalibrationSet:
    images: np.ndarray  # [N, 3, 256, 192] float32, model input
    source: str
    cache_key: str
    cached: bool
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"source": self.source, "samples": int(len(self.images)), "cache_key": self.cache_key}


def cache_dir() -> Path:
    return cache_root() / "calibration"


def _is_bundle(path: Path) -> bool:
    return (path / "bundle.json").is_file() and (path / "inputs.npz").is_file()


def source_fingerprint(source: str, boxes: str | None) -> str:
    """Hash of the bytes the crops are made from, so an edited image or box changes the key."""
    h = hashlib.sha256()
    path = Path(source)
    if source == SYNTHETIC:
        h.update(b"synthetic")
    elif path.is_dir() and _is_bundle(path):
        h.update((path / "inputs.npz").read_bytes())
    elif path.is_dir():
        for f in sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {".json"}):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    elif path.is_file():
        h.update(path.read_bytes())
    else:
        raise InputError(f"Calibration source not found: {source}. Give an image folder, a video file, a "
                         f"reference bundle, or 'synthetic'.")
    if boxes:
        if not Path(boxes).is_file():
            raise InputError(f"Boxes file not found: {boxes}")
        h.update(Path(boxes).read_bytes())
    return h.hexdigest()


def _evenly(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def _bundle_images(path: Path, crop: CropRule, count: int) -> np.ndarray:
    bundle = load_bundle(path)
    if bundle.meta["preprocessing"]["name"] != crop.name:
        raise InputError(f"Reference bundle {path} holds '{bundle.meta['preprocessing']['name']}' crops; this "
                         f"model needs '{crop.name}' crops. Use a bundle of the same model family.")
    images = bundle.inputs["image"]
    return images[np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int)]


def build_calibration(source: str | None, crop: CropRule, count: int = DEFAULT_COUNT, boxes: str | None = None,
                      seed: int = 0, progress: Callable[[int], None] | None = None) -> CalibrationSet:
    """Read, crop and cache ``count`` calibration samples from ``source``."""
    if not source:
        raise SpecError("INT8 needs calibration data: pass --calib with an image folder, a video, a reference "
                        "bundle, or 'synthetic' for a demo.")
    if count < 1:
        raise SpecError(f"--calib-count must be at least 1 (got {count}).")
    fingerprint = source_fingerprint(source, boxes)
    key = hashlib.sha256(json.dumps([CACHE_VERSION, fingerprint, crop.to_json(), count, seed]).encode()).hexdigest()
    cached_file = cache_dir() / f"{key[:32]}.npy"
    if cached_file.is_file():
        images = np.load(cached_file, allow_pickle=False)
        cached = True
    else:
        images = _read_images(source, crop, count, boxes, seed, progress)
        cached_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached_file.with_name(cached_file.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, images)
        tmp.replace(cached_file)
        cached = False
    warnings = []
    if len(images) < MIN_RECOMMENDED:
        warnings.append(f"only {len(images)} calibration samples (fewer than {MIN_RECOMMENDED}): INT8 ranges may not "
                        f"cover real inputs; {DEFAULT_COUNT} is the default")
    if source == SYNTHETIC:
        warnings.append("synthetic calibration frames: fine for demos and tests, not for deployment")
    return CalibrationSet(images, source, key, cached, warnings)


def _read_images(source: str, crop: CropRule, count: int, boxes: str | None, seed: int,
                 progress: Callable[[int], None] | None) -> np.ndarray:
    path = Path(source)
    if source != SYNTHETIC and path.is_dir() and _is_bundle(path):
        return _bundle_images(path, crop, count)
    if source != SYNTHETIC and path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"Calibration source {source} is a file but not a video ({', '.join(sorted(VIDEO_SUFFIXES))}).")
    samples: list[Sample] = _evenly(open_source(source, count, boxes, seed), count)
    crops = []
    for s in samples:
        crops.append(prepare_crop(s.image, s.box, crop).image)
        if progress:
            progress(1)
    return np.stack(crops).astype(np.float32)
