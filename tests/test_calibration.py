"""Calibration sources, their errors, the sample-count warning and the content-hash cache."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data

from edgehmr.calibration.dataset import build_calibration
from edgehmr.errors import InputError, SpecError
from edgehmr.preprocess import HMR2_CROP, prepare_crop
from edgehmr.spec import resolve_spec


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEHMR_CACHE", str(tmp_path / "cache"))


def _write_frames(folder, count):
    folder.mkdir()
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame{i:02d}.png"), np.roll(image, 7 * i, axis=1))
    return folder


def test_folder_with_boxes_uses_the_shared_crop_path(tmp_path):
    folder = _write_frames(tmp_path / "frames", 3)
    (folder / "boxes.json").write_text(json.dumps({"frame00.png": [140, 20, 380, 500]}))
    calib = build_calibration(str(folder), HMR2_CROP, count=3)
    assert calib.images.shape == (3, 3, 256, 192) and not calib.cached
    expected = prepare_crop(data.astronaut(), (140, 20, 380, 500), HMR2_CROP).image
    np.testing.assert_allclose(calib.images[0], expected, atol=1e-5)  # PNG round trip is lossless


def test_too_few_samples_warn_and_cache_by_content(tmp_path):
    folder = _write_frames(tmp_path / "frames", 4)
    first = build_calibration(str(folder), HMR2_CROP, count=8)
    assert any("fewer than 32" in w for w in first.warnings)
    again = build_calibration(str(folder), HMR2_CROP, count=8)
    assert again.cached and again.cache_key == first.cache_key
    np.testing.assert_array_equal(again.images, first.images)
    cv2.imwrite(str(folder / "frame00.png"), np.zeros((64, 64, 3), np.uint8))  # content changes -> new key
    changed = build_calibration(str(folder), HMR2_CROP, count=8)
    assert not changed.cached and changed.cache_key != first.cache_key


def test_video_source(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(20):
        writer.write(np.full((240, 320, 3), 10 * i, np.uint8))
    writer.release()
    calib = build_calibration(str(path), HMR2_CROP, count=5)
    assert calib.images.shape == (5, 3, 256, 192)
    means = calib.images.mean(axis=(1, 2, 3))
    assert np.all(np.diff(means) > 0)  # frames spread over the clip, in order


def test_reference_bundle_source(tmp_path, bundle):
    calib = build_calibration(str(bundle("test-hmr2")), HMR2_CROP, count=4)
    assert calib.images.shape[0] == 4
    with pytest.raises(InputError, match="needs 'hmr2' crops"):
        build_calibration(str(bundle("test-vitpose")), HMR2_CROP, count=4)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "No images"),
    (lambda p: (p.mkdir(), (p / "a.jpg").write_bytes(b"garbage")), "cannot decode"),
    (lambda p: None, "not found"),
])
def test_bad_sources(tmp_path, make, message):
    source = tmp_path / "calib"
    make(source)
    with pytest.raises(InputError, match=message):
        build_calibration(str(source), HMR2_CROP, count=8)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # a failed read caches nothing


def test_int8_requires_an_explicit_source():
    with pytest.raises(SpecError, match="needs calibration data"):
        resolve_spec("test-hmr2", "onnx", "int8")
    assert resolve_spec("test-hmr2", "onnx", "int8", calib="synthetic").calib == "synthetic"
    assert resolve_spec("test-hmr2", "onnx", "fp16", calib="synthetic").calib is None
