"""ViTPose heatmap decoding: DARK-UDP recovers sub-pixel peaks; flip averaging swaps COCO pairs."""

from __future__ import annotations

import numpy as np

from edgehmr.models.keypoints import argmax_peaks, dark_udp_refine, decode_heatmaps, flip_back


def gaussian_heatmaps(peaks, h=64, w=48, sigma=2.0):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in peaks])[None]


def test_dark_udp_recovers_subpixel_peaks():
    rng = np.random.default_rng(0)
    peaks = np.column_stack((rng.uniform(5, 42, 17), rng.uniform(5, 58, 17)))
    hm = gaussian_heatmaps(peaks)
    # centre/scale chosen so that heatmap px == image px: roi (w, h) = (47, 63), centre at (23.5, 31.5)
    kp = decode_heatmaps(hm, np.array([[23.5, 31.5]]), np.array([[47 / 200, 63 / 200]]))
    err = np.abs(kp[0, :, :2] - peaks)
    assert err.max() < 0.05  # argmax alone would be off by up to 0.5 px
    np.testing.assert_allclose(kp[0, :, 2], 1.0, atol=0.1)


def test_flip_back_swaps_pairs_and_mirrors():
    peaks = [(10.0 + k, 20.0) for k in range(17)]
    hm = gaussian_heatmaps(peaks)
    flipped = flip_back(hm[..., ::-1])  # heatmaps of a mirrored image, mapped back
    assert flipped[0, 1].argmax() == hm[0, 2].argmax()  # left eye <- right eye
    np.testing.assert_array_equal(flipped[0, 0], hm[0, 0])  # nose has no pair


def test_ridge_heatmap_does_not_jump():
    """A ridge (flat along y up to noise) has no curvature there: DARK's raw Newton step jumps many pixels."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:48]
    ridge = np.exp(-((xs - 20.0) ** 2) / 8.0)
    hm = np.stack([ridge * (1 + 1e-5 * rng.standard_normal((64, 48))) for _ in range(17)])[None]
    coords, _ = argmax_peaks(hm)
    refined = dark_udp_refine(coords, hm)
    assert np.abs(refined - coords).max() <= 1.0
    np.testing.assert_allclose(refined[..., 0], 20.0, atol=0.05)  # the well-defined axis is still refined
