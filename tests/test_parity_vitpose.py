"""Golden parity of vitpose-s against the original ViTPose/mmpose code (tests/data/parity/vitpose-s/case.json names
the repository@commit): the recipe weights written as the published mmpose checkpoint and loaded strictly, the
stored network input through the network and our flip path, the DARK-UDP decoding (``keypoints_from_heatmaps``)
of the stored heatmaps and of 64 synthetic heatmap sets (a quarter of their peaks 0-3 px from the border), and our
own crop of the stored photo and box against the original ``TopDownAffine(use_udp=True)``.

Keypoint tolerance, per the case: 1e-3 * scale*200/48 image px per axis (~1e-3 heatmap px). The decoding is
checked on the *stored* heatmaps: the untrained recipe network's maps are flat around their maxima, where the
Newton step divides by a curvature near zero, so heatmaps that agree to 1e-6 (ours do, well inside their 1e-5
tolerance) still decode to keypoints ~3e-3 heatmap px apart — in the original too, between two runs whose
matmuls round differently. That amplification is also why the decoding must be float32 like the original's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgehmr.models import get_model_info, load_model
from edgehmr.models.keypoints import decode_heatmaps, flip_back
from edgehmr.preprocess import prepare_crop
from parity_helpers import assert_close, load_case

CASE = load_case("vitpose-s")
TOL = CASE.tolerances
MODEL = CASE.meta["edgehmr_model_id"]
HEATMAP_TOL = TOL["heatmaps"]
SCORE_TOL = TOL["scores"]


def keypoint_tol(scale: np.ndarray) -> np.ndarray:
    """The case's keypoint tolerance in image px, ``[B, 1, 2]`` for ``scale`` ``[B, 2]`` (mmpose units)."""
    return (1e-3 * np.asarray(scale, np.float64) * 200.0 / 48.0)[:, None, :]


def assert_keypoints_close(name: str, ours: np.ndarray, golden: np.ndarray, scale: np.ndarray) -> float:
    """Every coordinate within its tolerance; returns the worst difference as a fraction of the tolerance."""
    assert ours.shape == golden.shape
    ratio = np.abs(ours - golden.astype(np.float64)) / keypoint_tol(scale)
    worst = np.unravel_index(ratio.argmax(), ratio.shape)
    assert ratio.max() <= 1.0, f"{name}: keypoint {worst} off by {ratio.max():.3g} x its tolerance"
    return float(ratio.max())


@pytest.fixture
def record(request):
    """Keeps a worst difference on the test's report (``user_properties``), for the README's parity table."""
    return lambda name, value: request.node.user_properties.append((name, value))


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    # mmpose checkpoints carry BatchNorm's num_batches_tracked, which the recipe does not generate; the model's
    # strict load needs them, so the file gets them as the published one has them (non-float buffers).
    built = get_model_info(MODEL).build().state_dict()
    extras = {k: torch.zeros((), dtype=v.dtype) for k, v in built.items()
              if k not in CASE.shapes and not v.is_floating_point()}
    assert extras and all(k.endswith("num_batches_tracked") for k in extras)
    path = CASE.checkpoint(tmp_path_factory.mktemp("parity-vitpose") / "vitpose_small.pth", "state_dict", extras)
    return load_model(MODEL, checkpoint=path).module


@pytest.fixture(scope="module")
def ours(network) -> dict[str, np.ndarray]:
    image = torch.from_numpy(CASE.inputs["image"])
    with torch.no_grad():
        heatmaps = network(image)[0].numpy()
        flipped = network(image.flip(3))[0].numpy()  # the flip test's second pass, as the network returns it
    return {"heatmaps": heatmaps, "heatmaps_flipped_raw": flipped}


def test_case_names_the_original_and_the_model():
    assert CASE.original.startswith("ViTAE-Transformer/ViTPose@")
    assert get_model_info(MODEL).family == "vitpose"


def test_heatmaps_match_original(ours, record):
    diff = assert_close("heatmaps", ours["heatmaps"], CASE.outputs["heatmaps"], HEATMAP_TOL)
    record("max_abs_heatmaps", diff)


def test_flip_path_matches_original(ours, record):
    """The flipped image's heatmaps mapped back by our flip_back (pairs swapped, mirrored, no shift)."""
    diff = assert_close("heatmaps_flip", flip_back(ours["heatmaps_flipped_raw"]), CASE.outputs["heatmaps_flip"],
                        HEATMAP_TOL)
    record("max_abs_heatmaps_flip", diff)


@pytest.mark.parametrize("flip_test", [False, True], ids=["single", "flip_test"])
def test_decoding_matches_original(flip_test, record):
    i, o = CASE.inputs, CASE.outputs
    suffix = "_flip_test" if flip_test else ""
    # decode_heatmaps takes the flipped pass as the network returns it; flip_back is its own inverse
    flipped = flip_back(o["heatmaps_flip"]) if flip_test else None
    kp = decode_heatmaps(o["heatmaps"], i["center"], i["scale"], heatmaps_flipped=flipped)
    ratio = assert_keypoints_close("keypoints" + suffix, kp[..., :2], o["keypoints" + suffix], i["scale"])
    diff = assert_close("scores" + suffix, kp[..., 2], o["scores" + suffix], SCORE_TOL)
    record(f"max_abs_keypoints{suffix}", float(np.abs(kp[..., :2] - o["keypoints" + suffix]).max()))
    record(f"keypoints{suffix}_fraction_of_tol", ratio)
    record(f"max_abs_scores{suffix}", diff)


def test_synthetic_decoding_matches_original(record):
    """64 x 17 sub-pixel Gaussian peaks; 256 of them 0-3 px from a border, where the original's raw Newton step
    (no guard) moves them by more than a pixel."""
    i, o = CASE.inputs, CASE.outputs
    kp = decode_heatmaps(i["synthetic_heatmaps"], i["synthetic_center"], i["synthetic_scale"])
    ratio = assert_keypoints_close("synthetic_keypoints", kp[..., :2], o["synthetic_keypoints"],
                                   i["synthetic_scale"])
    diff = assert_close("synthetic_scores", kp[..., 2], o["synthetic_scores"], SCORE_TOL)
    near = i["synthetic_near_border"]
    assert near.sum() == 256
    record("max_abs_synthetic_keypoints", float(np.abs(kp[..., :2] - o["synthetic_keypoints"]).max()))
    record("synthetic_keypoints_fraction_of_tol", ratio)
    record("max_abs_synthetic_scores", diff)


def test_own_crop_matches_original(record):
    i = CASE.inputs
    crop = prepare_crop(i["image_rgb_uint8"], i["box_xyxy"], get_model_info(MODEL).crop)
    # the box -> (center, scale) of mmpose's _box2cs, which the decoding maps back with
    np.testing.assert_allclose(crop.center, i["center"][0], rtol=1e-6)
    np.testing.assert_allclose(crop.size / 200.0, i["scale"][0], rtol=1e-6)
    diff = assert_close("image", crop.image, i["image"][0], TOL["image (edgehmr own crop vs stored)"])
    record("max_abs_crop", diff)
