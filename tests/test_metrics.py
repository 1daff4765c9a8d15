"""Task metrics against hand-computed values and their invariances."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from edgehmr.metrics import error_stats, mpjpe_mm, pa_mpjpe_mm, pve_mm


def test_mpjpe_ignores_root_offset_and_counts_mm():
    ref = np.random.default_rng(0).normal(size=(3, 24, 3))
    pred = ref + np.array([1.0, 2.0, 3.0])  # pure translation: zero after root alignment
    np.testing.assert_allclose(mpjpe_mm(pred, ref), 0.0, atol=1e-9)
    pred = ref.copy()
    pred[:, 5] += [0.0, 0.024, 0.0]  # one joint 24 mm off -> mean 1 mm over 24 joints
    np.testing.assert_allclose(mpjpe_mm(pred, ref), 1.0)


def test_pa_mpjpe_removes_similarity_transform():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(4, 24, 3))
    rot = Rotation.random(4, random_state=2).as_matrix()
    pred = 1.7 * np.einsum("nij,nkj->nki", rot, ref) + rng.normal(size=(4, 1, 3))
    np.testing.assert_allclose(pa_mpjpe_mm(pred, ref), 0.0, atol=1e-6)
    assert (mpjpe_mm(pred, ref) > 100).all()
    pred[2, 3, 1] = np.nan  # an overflowed sample: NaN for it, the others still measured
    out = pa_mpjpe_mm(pred, ref)
    assert np.isnan(out[2]) and np.allclose(np.delete(out, 2), 0.0, atol=1e-6)


def test_pve_and_error_stats():
    ref = np.zeros((1, 10, 3))
    pred = ref.copy()
    pred[0, :, 0] = 0.002
    np.testing.assert_allclose(pve_mm(pred, ref, np.zeros((1, 3)), np.zeros((1, 3))), 2.0)
    s = error_stats(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.1]))
    np.testing.assert_allclose(s["max_abs"], 0.1)
    np.testing.assert_allclose(s["rel_l2"], 0.1 / np.linalg.norm([1, 2, 3.1]))
    assert 0.999 < s["cosine"] <= 1.0
