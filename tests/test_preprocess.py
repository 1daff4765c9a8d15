"""The crop path against independent re-implementations of the 4D-Humans and mmpose procedures."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import skimage.data
import skimage.filters

from edgehmr.models.keypoints import heatmap_to_image
from edgehmr.preprocess import HMR2_CROP, VITPOSE_CROP, crop_affine, crop_region, prepare_crop

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


def hmr2_reference_crop(image_rgb: np.ndarray, box, as_original: bool = True) -> np.ndarray:
    """4D-Humans ViTDetDataset: square side max(h, 4w/3), skimage anti-alias, 3-point warp to 256, cols 32:224.

    As the original, the warp gets skimage's float64 output when blurred and the uint8 image otherwise (rounded
    to whole grey levels); ``as_original=False`` warps the unblurred image in float32, without that rounding."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    side = max(h, w * 4 / 3)
    img = image_rgb if as_original else image_rgb.astype(np.float32)
    d = side / 256 / 2
    if d > 1.1:
        img = skimage.filters.gaussian(image_rgb, sigma=(d - 1) / 2, channel_axis=2, preserve_range=True)
    src = np.float32([[cx, cy], [cx, cy + side / 2], [cx + side / 2, cy]])
    dst = np.float32([[128, 128], [128, 256], [256, 128]])
    warped = cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (256, 256),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return ((warped[:, 32:224] - MEAN) / STD).transpose(2, 0, 1)


def grey_levels(normalised: np.ndarray) -> np.ndarray:
    return normalised * STD[:, None, None]


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()  # 512x512 RGB photo shipped with scikit-image


def test_hmr2_crop_matches_4dhumans(astronaut):
    box = (140.0, 20.0, 380.0, 500.0)  # the astronaut, no blur (d < 1.1)
    ours = prepare_crop(astronaut, box, HMR2_CROP)
    assert ours.image.shape == (3, 256, 192)
    # the same geometry and interpolation...
    np.testing.assert_allclose(ours.image, hmr2_reference_crop(astronaut, box, as_original=False), atol=2e-3)
    # ...without the original's rounding of the crop to uint8 (kept float on purpose: see prepare_crop)
    diff = np.abs(grey_levels(ours.image - hmr2_reference_crop(astronaut, box)))
    assert diff.max() <= 0.5 + 1e-3 and 0.1 < diff.mean() < 0.4


def test_hmr2_crop_antialias_matches_skimage_blur(astronaut):
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    box = (420.0, 60.0, 1140.0, 1500.0)  # side 1440 -> d = 2.8: blurred before warping
    ours = prepare_crop(big, box, HMR2_CROP).image
    ref = hmr2_reference_crop(big, box)
    # OpenCV's kernel is a little longer than scipy's (truncated at 4 sigma): a tiny fraction of a grey level.
    assert np.abs(grey_levels(ours - ref)).max() < 0.05
    # ...and the blur matters: without it the crop is far further from the reference.
    no_blur = prepare_crop(big, box, dataclasses.replace(HMR2_CROP, antialias=False)).image
    assert np.abs(no_blur - ref).mean() > 100 * np.abs(ours - ref).mean()


@pytest.mark.parametrize("scale_up, box", [(1, (-60.0, 0.0, 560.0, 512.0)), (3, (-100.0, -100.0, 1700.0, 1600.0))])
def test_hmr2_blurred_crop_at_the_image_border_matches_skimage(astronaut, scale_up, box):
    """Crops reaching past the image: skimage repeats the edge pixel when blurring (OpenCV's default border
    reflects: 7.5 grey levels off on the second box), and the original warps its float64 result, which OpenCV does
    with 1/32 px positions (a float32 warp: 2.3 grey levels off on the first)."""
    image = cv2.resize(astronaut, (512 * scale_up, 512 * scale_up), interpolation=cv2.INTER_CUBIC)
    ours = prepare_crop(image, box, HMR2_CROP).image
    assert np.abs(grey_levels(ours - hmr2_reference_crop(image, box))).max() < 0.05


def test_vitpose_udp_region_and_edges():
    center, size = crop_region((100, 50, 160, 250), VITPOSE_CROP)  # w=60, h=200: w grows to 150, then x1.25
    np.testing.assert_allclose(center, [130, 150])
    np.testing.assert_allclose(size, [150 * 1.25, 200 * 1.25])
    a = crop_affine(center, size, VITPOSE_CROP)
    left_top = a @ np.array([center[0] - size[0] / 2, center[1] - size[1] / 2, 1.0])
    right_bottom = a @ np.array([center[0] + size[0] / 2, center[1] + size[1] / 2, 1.0])
    np.testing.assert_allclose(left_top, [0.0, 0.0], atol=1e-9)  # UDP: ROI edges -> pixel centres 0 and 191/255
    np.testing.assert_allclose(right_bottom, [191.0, 255.0], atol=1e-9)


def test_vitpose_crop_and_decode_are_inverse():
    center, size = crop_region((300, 120, 420, 460), VITPOSE_CROP)
    a = crop_affine(center, size, VITPOSE_CROP)
    pts = np.array([[330.0, 200.0], [410.0, 450.0]])
    model_px = (a[:, :2] @ pts.T).T + a[:, 2]
    heatmap_px = model_px * np.array([47 / 191, 63 / 255])  # UDP heatmap = input scaled by (size-1) ratios
    back = heatmap_to_image(heatmap_px[None], center[None], size[None] / 200.0)
    np.testing.assert_allclose(back[0], pts, atol=1e-9)


def test_hmr2_region_is_square_side_max_h_4w3():
    center, size = crop_region((0, 0, 300, 200), HMR2_CROP)  # wide box: side = 4*300/3 = 400
    np.testing.assert_allclose(size, [300, 400])
