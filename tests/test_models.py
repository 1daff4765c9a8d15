"""Model zoo: published sizes, shapes, export-cleanliness, conventions."""

from __future__ import annotations

import pytest
import torch

from edgehmr.errors import SpecError
from edgehmr.models import get_model_info, list_models, load_model, model_cost
from edgehmr.models.geometry import cam_crop_to_translation, cross3, rot6d_to_rotmat

# Published parameter counts (ViTPose backbone table + HMR2.0 head 39.55 M, ViTPose heads).
PUBLISHED_PARAMS_M = {
    "vitpose-s": 21.66 + 2.63, "vitpose-b": 85.79 + 4.20, "vitpose-l": 303.30 + 5.25, "vitpose-h": 630.91 + 6.30,
    "hmr2-vit-h": 630.91 + 39.55,
}


def test_registry_names():
    hierarchical = {f"{head}-{fam}" for head in ("hmr2", "vitpose") for fam in ("swin-", "gmf-", "vmamba-")}
    plain = [n for n in list_models() if not any(n.startswith(h) for h in hierarchical | {"deformable-hmr-"})]
    assert plain == sorted([f"hmr2-vit-{s}" for s in "sblh"] + [f"vitpose-{s}" for s in "sblh"] + ["sat-hmr"])
    assert len([n for n in list_models() if any(n.startswith(h) for h in hierarchical)]) == 42  # test_hierarchical
    assert len([n for n in list_models() if n.startswith("deformable-hmr-")]) == 16  # test_deformable_hmr


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_parameter_counts_match_published(name):
    params, gmacs = model_cost(name)
    assert params / 1e6 == pytest.approx(PUBLISHED_PARAMS_M[name], abs=0.01)
    assert gmacs > 0


def test_vit_h_compute_matches_published():
    _, gmacs = model_cost("hmr2-vit-h")
    assert gmacs == pytest.approx(124.0 + 1.55, rel=0.02)  # backbone 248 GFLOPs + head 3.09 GFLOPs


def test_unknown_model_suggests_close_name():
    with pytest.raises(SpecError, match="Did you mean 'vitpose-s'"):
        get_model_info("vitpose-x")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hmr2-vit-s", "vitpose-s", "deformable-hmr-vit-s-x2"])
def test_forward_shapes_and_export(name, loaded_models):
    """Published sizes with real weights (tests/test_registry.py does every tiny model in the default tier)."""
    loaded = loaded_models(name)
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        outs = loaded.module(x)
    expected = [tuple(2 if d == "B" else d for d in o.shape) for o in loaded.info.outputs]
    assert [tuple(o.shape) for o in outs] == expected
    program = torch.export.export(loaded.module, (x,), strict=True)
    with torch.no_grad():
        for a, b in zip(program.module()(x), outs):
            torch.testing.assert_close(a, b)


def test_hmr2_runs_in_reduced_precision():
    module = load_model("test-hmr2").module.to(torch.bfloat16)  # nothing may be hard-wired to float32
    outs = module(torch.randn(1, 3, 256, 192, dtype=torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 for o in outs)


def test_untrained_weights_are_seeded():
    a, b, c = (load_model("test-vitpose", seed=s) for s in (1, 1, 2))
    assert a.weights == "untrained" and a.weights_sha256 == b.weights_sha256 != c.weights_sha256


def test_rot6d_is_hmr2_column_convention():
    v = torch.randn(100, 6, dtype=torch.float64)
    r = rot6d_to_rotmat(v)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    torch.testing.assert_close(r.transpose(1, 2) @ r, eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(100, dtype=torch.float64))
    # First column is normalize(a1) with a1 = v[0:3] (SPIN's layout would take v[0], v[2], v[4]).
    torch.testing.assert_close(r[:, :, 0], v[:, 0:3] / v[:, 0:3].norm(dim=1, keepdim=True))
    # Second column lies in the plane of a1 and a2.
    assert torch.allclose((torch.linalg.cross(v[:, 0:3], v[:, 3:6], dim=1) * r[:, :, 1]).sum(1),
                          torch.zeros(100, dtype=torch.float64), atol=1e-12)


def test_cross3_matches_torch():
    a, b = torch.randn(50, 3), torch.randn(50, 3)
    torch.testing.assert_close(cross3(a, b), torch.linalg.cross(a, b, dim=-1))


def test_camera_translation_formula():
    t = cam_crop_to_translation(torch.tensor([[0.5, 0.1, -0.2]]))
    torch.testing.assert_close(t, torch.tensor([[0.1, -0.2, 2 * 5000 / (256 * 0.5)]]))


def test_full_image_camera_agrees_with_crop_camera():
    """cam_crop_to_full (CLIFF Eq. 1, the 4D-Humans demo): points at body depth 0 land on the same image pixel
    whether projected with the full-image camera or with the crop camera and mapped back through the crop."""
    import numpy as np

    from edgehmr.models.geometry import FOCAL_LENGTH, cam_crop_to_full, project_to_crop_pixels

    rng = np.random.default_rng(0)
    cam = np.column_stack((rng.uniform(0.5, 1.2, 4), rng.normal(0, 0.1, 4), rng.normal(0, 0.1, 4)))
    center, side, image_size = rng.uniform(200, 600, (4, 2)), rng.uniform(100, 400, 4), np.tile([[1280, 720]], (4, 1))
    pts = np.concatenate((rng.normal(0, 0.5, (4, 10, 2)), np.zeros((4, 10, 1))), axis=-1)
    crop_t = cam_crop_to_translation(torch.from_numpy(cam)).numpy()
    via_crop = (project_to_crop_pixels(pts, crop_t) - 128.0) * side[:, None, None] / 256.0 + center[:, None]
    full_t = cam_crop_to_full(cam, center, side, image_size)
    focal_full = FOCAL_LENGTH / 256.0 * image_size.max(1)
    p = pts + full_t[:, None]
    via_full = focal_full[:, None, None] * p[..., :2] / p[..., 2:] + image_size[:, None] / 2.0
    np.testing.assert_allclose(via_full, via_crop, rtol=1e-9, atol=1e-6)
