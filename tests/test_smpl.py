"""SMPL layer parity with smplx, and safe loading of official-style model files."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import smplx
import torch

from edgehmr.errors import InputError
from edgehmr.models.geometry import rot6d_to_rotmat
from edgehmr.models.smpl import SMPLLayer, load_smpl_data, save_smpl_npz, synthetic_smpl_data


@pytest.fixture(scope="module")
def smpl_data():
    return synthetic_smpl_data(seed=3)


def _random_pose(n: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    rot = rot6d_to_rotmat(torch.randn(n, 24, 6, generator=g, dtype=torch.float64)).to(dtype)
    betas = (2.0 * torch.randn(n, 10, generator=g, dtype=torch.float64)).to(dtype)
    return rot, betas


def test_synthetic_model_has_real_shapes(smpl_data):
    assert smpl_data.v_template.shape == (6890, 3)
    assert smpl_data.shapedirs.shape == (6890, 3, 10)
    assert smpl_data.posedirs.shape == (6890, 3, 207)
    assert smpl_data.J_regressor.shape == (24, 6890)
    assert smpl_data.weights.shape == (6890, 24)
    assert smpl_data.f.shape == (13776, 3)
    np.testing.assert_allclose(smpl_data.weights.sum(1), 1.0)


def test_parity_with_smplx(smpl_data, tmp_path):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    with open(path, "wb") as f:
        pickle.dump(smpl_data.as_dict(), f)
    ref = smplx.SMPLLayer(model_path=str(path), num_betas=10)
    ours = SMPLLayer(load_smpl_data(path))
    rot, betas = _random_pose(8)
    with torch.no_grad():
        expected = ref(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas)
        verts, joints = ours(rot, betas)
    assert (verts - expected.vertices).abs().max().item() < 1e-5  # metres
    assert (joints - expected.joints[:, :24]).abs().max().item() < 1e-5
    assert verts.abs().max() > 0.3  # a posed body, not a degenerate one


def _official_style_pickle(data, path):
    """Write the file like SMPL v1.0.0: chumpy Ch arrays and a scipy csc J_regressor."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch = Ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch})
    try:
        d = data.as_dict()
        d["shapedirs"] = Ch(d["shapedirs"])
        d["v_template"] = Ch(d["v_template"])
        d["J_regressor"] = scipy.sparse.csc_matrix(d["J_regressor"])
        d["bs_style"] = "lbs"
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=2)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_official_style_pickle_loads_without_chumpy(smpl_data, tmp_path):
    path = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    _official_style_pickle(smpl_data, path)
    assert "chumpy" not in sys.modules
    loaded = load_smpl_data(path)
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "posedirs"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(smpl_data, key))
    npz = save_smpl_npz(loaded, tmp_path / "smpl.npz")
    again = load_smpl_data(npz)
    np.testing.assert_array_equal(again.J_regressor, smpl_data.J_regressor)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def test_hostile_pickle_is_refused(smpl_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = smpl_data.as_dict() | {"x": _Exploit()}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(d))
    with pytest.raises(InputError, match="posix.system|os.system"):
        load_smpl_data(path)
    assert not (tmp_path / "EXPLOITED").exists()


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_smpl_data(tmp_path / "SMPL_NEUTRAL.pkl")
    np.savez(tmp_path / "smplx.npz", v_template=np.zeros((10475, 3)))
    with pytest.raises(InputError, match="lacks"):
        load_smpl_data(tmp_path / "smplx.npz")


def test_layer_exports_cleanly(smpl_data):
    layer = SMPLLayer(smpl_data)
    rot, betas = _random_pose(2)
    program = torch.export.export(layer, (rot, betas), strict=True)
    torch.testing.assert_close(program.module()(rot, betas), layer(rot, betas))
