"""ViTPose heatmap decoding: DARK-UDP recovers sub-pixel peaks; flip averaging swaps COCO pairs; the original's
unguarded Newton step and its reading of the preceding map for maps without a positive peak (parity with the
original itself: tests/test_parity_vitpose.py)."""

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


def test_ridge_heatmap_jumps_unless_guarded():
    """A ridge (flat along y up to noise) has no curvature there: DARK's raw Newton step jumps many pixels, as in
    the original; ``max_step`` opts in to keeping the argmax there."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:48]
    ridge = np.exp(-((xs - 20.0) ** 2) / 8.0)
    hm = np.stack([ridge * (1 + 1e-5 * rng.standard_normal((64, 48))) for _ in range(17)])[None]
    coords, _ = argmax_peaks(hm)
    assert np.abs(dark_udp_refine(coords, hm) - coords).max() > 10.0  # the original's behaviour
    refined = dark_udp_refine(coords, hm, max_step=1.0)
    assert np.abs(refined - coords).max() <= 1.0
    np.testing.assert_allclose(refined[..., 0], 20.0, atol=0.05)  # the well-defined axis is still refined


def test_sharp_peaks_near_the_border_take_the_full_step():
    """Peaks 1-3 px from the border: the step can exceed a pixel there (edge padding, reflected blur); the default
    subtracts it like the original, only the opt-in guard keeps the argmax."""
    peaks = [(0.4 + 0.15 * k, 30.0) for k in range(17)]  # x from 0.4 to 2.8 px
    hm = gaussian_heatmaps(peaks)
    coords, _ = argmax_peaks(hm)
    free, guarded = dark_udp_refine(coords, hm), dark_udp_refine(coords, hm, max_step=1.0)
    big = np.abs(free - coords).max(-1) > 1.0
    assert big.any()
    np.testing.assert_array_equal(guarded[big], coords[big])
    np.testing.assert_array_equal(guarded[~big], free[~big])


def test_map_without_positive_peak_reads_the_preceding_map():
    """Max <= 0: the argmax is (-1, -1) and, as in mmpose's flat indexing, the Newton step's left/up neighbours
    come from the preceding map's bottom row (the batch's last map for the first map)."""
    hm = -np.ones((2, 3, 64, 48), np.float32)
    coords, maxval = argmax_peaks(hm)
    assert (coords == -1).all() and (maxval <= 0).all()
    np.testing.assert_array_equal(dark_udp_refine(coords, hm), -1.0)  # flat neighbours: no step
    hm[0, 1, -8:, :] = 1.0  # bottom rows of map (0, 1): map (0, 2) reads them
    refined = dark_udp_refine(coords, hm)
    assert np.abs(refined[0, 2] + 1.0).max() > 0.1
    others = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    np.testing.assert_array_equal(refined[tuple(np.array(others).T)], -1.0)
    hm[0, 1] = -1.0
    hm[1, 2, -8:, :] = 1.0  # the batch's last map: read by the first map (numpy's negative-index wrap)
    refined = dark_udp_refine(coords, hm)
    assert np.abs(refined[0, 0] + 1.0).max() > 0.1


def test_decoding_is_float32():
    """The original decodes the network's float32 maps in float32: float64 input decodes as its float32 cast."""
    rng = np.random.default_rng(1)
    peaks = np.column_stack((rng.uniform(5, 42, 17), rng.uniform(5, 58, 17)))
    hm = gaussian_heatmaps(peaks) * (1 + 1e-3 * rng.standard_normal((1, 17, 64, 48)))
    center, scale = np.array([[200.0, 300.0]]), np.array([[1.2, 1.6]])
    np.testing.assert_array_equal(decode_heatmaps(hm, center, scale),
                                  decode_heatmaps(hm.astype(np.float32), center, scale))
