"""SAT-HMR model: the published parameter layout, the export-clean rewrites against their reference formulations,
and the bucketed two-stage path against the dynamic-shape reference (same tokens -> same outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgehmr.bucketing import Bucket, BucketTable, classify, pack, pack_into
from edgehmr.errors import CheckpointMismatchError
from edgehmr.models._checkpoint import load_strict, read_checkpoint
from edgehmr.models.sat_decoder import rot6d_to_rotmat_interleaved, sine_embed
from edgehmr.models.sat_hmr import (PUBLISHED, SatHmr, filter_sat_checkpoint, low_res_positions)
from edgehmr.models.sat_reference import from_host, reference_forward, select_tokens
from sat_helpers import TINY, scene, tiny_sat

GRID = (8, 12)  # a 224 x 336 canvas
IMAGE_HW = (224, 336)


def published_layout(cfg) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the published SAT-HMR state dict, written out from the checkpoint description
    (../shared/research/sat_hmr_and_seed_models_facts.md 1.10), independent of the module code."""
    d, q, ffn = cfg.dim, cfg.queries, cfg.ffn
    keys: dict[str, tuple[int, ...]] = {}

    def linear(name, n_in, n_out):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (n_out, n_in), (n_out,)

    def norm(name):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (d,), (d,)

    def mlp(name, dims):
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            linear(f"{name}.layers.{i}", a, b)

    def block(name):
        norm(f"{name}.norm1"), linear(f"{name}.attn.qkv", d, 3 * d), linear(f"{name}.attn.proj", d, d)
        norm(f"{name}.norm2"), linear(f"{name}.mlp.fc1", d, 4 * d), linear(f"{name}.mlp.fc2", 4 * d, d)
        keys[f"{name}.ls1.gamma"] = keys[f"{name}.ls2.gamma"] = (d,)

    for i in range(cfg.blocks):
        block(f"encoder.blocks.{i}")
    for i in range(cfg.extra_blocks):
        block(f"encoder.additional_blocks.{i}")
    norm("encoder.norm"), norm("enc_inter_norm")
    mlp("scale_head", [d, d, d, d, 2])
    for i in range(2):
        keys[f"encoder_patch_proj.{i}.weight"], keys[f"encoder_patch_proj.{i}.bias"] = (d, 3, 14, 14), (d,)
    keys["encoder_cr_token"], keys["encoder_pos_embeds"], keys["level_embed"] = (1, d), (92, 92, d), (3, d)
    linear("feature_proj", d, d)
    keys["refpoint_embed.weight"], keys["tgt_embed.weight"] = (q, 4), (q, d)
    for layer in range(cfg.dec_layers):
        for prefix in ("", "decoder.decoder."):
            mlp(f"{prefix}bbox_embed.{layer}", [d, d, d, 4])
        mlp(f"pose_head.{layer}", [d] * 6 + [144])
        mlp(f"shape_head.{layer}", [d] * 5 + [10])
        name = f"decoder.decoder.layers.{layer}"
        for proj in ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj",
                     "sa_out_proj", "ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj",
                     "ca_qpos_sine_proj", "ca_out_proj") + (("ca_qpos_proj",) if layer == 0 else ()):
            linear(f"{name}.{proj}", d, d)
        linear(f"{name}.linear1", d, ffn), linear(f"{name}.linear2", ffn, d)
        norm(f"{name}.norm1"), norm(f"{name}.norm2"), norm(f"{name}.norm3")
    mlp("decoder.decoder.query_scale", [d, d, d])
    mlp("decoder.decoder.ref_point_head", [2 * d, d, d])
    mlp("decoder.decoder.ref_anchor_head", [d, d, 2])
    norm("decoder.decoder.norm")
    mlp("cam_head", [d, d // 2, d // 2, 3])
    linear("conf_head", d, 1)
    keys["mean_pose"], keys["mean_shape"] = (144,), (10,)
    return keys


TRAINING_AND_SMPL_ENTRIES = {"dn_enc.weight": (768, 82), "dn_enc.bias": (768,), "cam_intrinsics": (1, 3, 3),
                             "z_order_map": (64, 64), "y_coords": (64, 64), "x_coords": (64, 64),
                             "human_model.layer_n.v_template": (6890, 3)}


def test_published_model_has_exactly_the_published_keys_and_shapes():
    with torch.device("meta"):
        state = SatHmr(PUBLISHED).state_dict()
    want = published_layout(PUBLISHED)
    assert {k: tuple(v.shape) for k, v in state.items()} == want
    params = sum(int(np.prod(s)) for k, s in want.items() if not k.startswith("decoder.decoder.bbox_embed"))
    assert 215e6 < params < 230e6  # the fact sheet's ~222 M (aliased box heads counted once)


def test_synthetic_published_checkpoint_loads_strictly_and_mismatch_is_explained(tmp_path):
    gen = torch.Generator().manual_seed(3)
    layout = published_layout(TINY) | TRAINING_AND_SMPL_ENTRIES
    state = {k: torch.randn(s, generator=gen) for k, s in layout.items()}
    for layer in range(TINY.dec_layers):  # the published file stores the aliased heads twice, equal
        for k in [k for k in state if k.startswith(f"bbox_embed.{layer}.")]:
            state[f"decoder.decoder.{k}"] = state[k]
    path = tmp_path / "sat_644.pth"
    torch.save(state, path)
    model = SatHmr(TINY)
    load_strict(model, filter_sat_checkpoint(read_checkpoint(path)), str(path), "sat-hmr")
    assert torch.equal(model.pose_head[1].layers[5].weight, state["pose_head.1.layers.5.weight"])
    assert torch.equal(model.low_res_pos, low_res_positions(state["encoder_pos_embeds"]))  # constants refreshed
    del state["decoder.decoder.layers.1.ca_v_proj.weight"]
    with pytest.raises(CheckpointMismatchError, match="1 missing"):
        load_strict(SatHmr(TINY), filter_sat_checkpoint(state), str(path), "sat-hmr")


def test_low_res_embedding_equals_the_per_patch_bilinear_reference():
    """The reference resizes each 28-px patch to 14 px (bilinear, align_corners=False) before a 14-px conv."""
    conv = tiny_sat().encoder_patch_proj[1]
    image = torch.randn(1, 3, 112, 168)
    patches = image.unfold(2, 28, 28).unfold(3, 28, 28).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 28, 28)
    resized = F.interpolate(patches, size=(14, 14), mode="bilinear", align_corners=False)
    with torch.no_grad():
        reference = conv(resized).flatten(1)
        ours = conv(F.avg_pool2d(image, 2)).flatten(2).transpose(1, 2)[0]
    assert torch.allclose(ours, reference, atol=1e-5)


def test_high_res_tokens_equal_a_dense_conv_over_the_full_image():
    model = tiny_sat()
    image = torch.randn(1, 3, *IMAGE_HW)
    cells = torch.tensor([[0, 13, 95]])
    with torch.no_grad():
        got = model.high_res_tokens(image, cells)[0]
        dense = model.encoder_patch_proj[0](image)[0].permute(1, 2, 0) + model.encoder_pos_embeds[:16, :24]
    want = [dense[2 * (c // 12) + dy, 2 * (c % 12) + dx] for c in (0, 13, 95) for dy in (0, 1) for dx in (0, 1)]
    assert torch.allclose(got, torch.stack(want), atol=1e-5)


def test_sine_encoding_and_6d_layout():
    x = torch.tensor([0.25])
    emb = sine_embed(x, 8, temperature=20.0)
    dim_t = 20.0 ** (2 * (torch.arange(8) // 2) / 8)
    want = torch.where(torch.arange(8) % 2 == 0, torch.sin(2 * torch.pi * 0.25 / dim_t), torch.cos(2 * torch.pi * 0.25 / dim_t))
    assert torch.allclose(emb[0], want, atol=1e-6)
    rot = rot6d_to_rotmat_interleaved(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(rot, torch.eye(3))  # columns a1 = v[0::2], a2 = v[1::2]
    r = rot6d_to_rotmat_interleaved(torch.randn(5, 6))
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3).expand(5, 3, 3), atol=1e-5)


def test_host_rule_equals_the_reference_rule_on_a_real_scale_map():
    model = tiny_sat()
    with torch.no_grad():
        scale_map = model.stage1(torch.randn(1, 3, *IMAGE_HW))[0][0]
    # Thresholds moved inside the seeded map's range so that every token kind occurs.
    c_thr, s_thr = float(scale_map[0].median()), float(scale_map[1].median())
    host = classify(scale_map[0].numpy(), scale_map[1].numpy(), c_thr, s_thr)
    ref = select_tokens(scale_map, c_thr, s_thr)
    assert host.hr_cells > 0 and host.low_res.any() and host.background.any()
    for a, b in ((host.small, ref.small), (host.low_res, ref.low_res), (host.background, ref.background)):
        assert np.array_equal(a, b.numpy())


def _bucketed(model, image, packed):
    with torch.no_grad():
        _, tokens, cls = model.stage1(image)
        feeds = {k: torch.from_numpy(v) for k, v in packed.feeds().items()}
        return model.stage2(image, tokens, cls, feeds["hr_cells"], feeds["hr_mask"], feeds["other_index"],
                            feeds["other_mask"])


def _max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


PEOPLE = [(0, 0, 2, 2, 0.9, 0.2), (4, 6, 8, 10, 0.8, 0.8), (2, 8, 4, 10, 0.7, 0.3)]  # 2 small, 1 large


@pytest.mark.parametrize("people", [PEOPLE, []], ids=["people", "no-person"])
def test_bucketed_outputs_equal_the_dynamic_reference(people):
    model = tiny_sat()
    image = torch.randn(1, 3, *IMAGE_HW)
    sel = scene(GRID, people)
    if not people:
        assert sel.hr_cells == 0 and sel.other_tokens == 24  # all background: one token per 2x2 block
    table = BucketTable((Bucket.of(8, 48), Bucket.of(16, 96)), GRID)
    packed = pack(sel, table)
    assert packed.demoted == 0 and packed.bucket.memory > sel.memory_tokens  # padding present
    want, _ = reference_forward(model, image, from_host(sel.small, sel.low_res, sel.background))
    assert _max_diff(_bucketed(model, image, packed), want) < 1e-4


def test_padding_does_not_change_the_outputs():
    model = tiny_sat()
    image = torch.randn(1, 3, *IMAGE_HW)
    sel = scene(GRID, PEOPLE)
    tight = _bucketed(model, image, pack_into(sel, Bucket.of(sel.hr_cells, sel.other_tokens), GRID))
    for bucket in (Bucket.of(sel.hr_cells + 4, sel.other_tokens + 32), Bucket.of(48, 96)):
        assert _max_diff(_bucketed(model, image, pack_into(sel, bucket, GRID)), tight) < 1e-5


def test_overflow_demotes_and_is_reported_and_equals_the_reference_on_the_demoted_tokens():
    model = tiny_sat()
    image = torch.randn(1, 3, *IMAGE_HW)
    sel = scene(GRID, [(0, 0, 4, 12, 0.9, 0.1)])  # 48 small cells: more than the largest bucket's 16
    packed = pack(sel, BucketTable((Bucket.of(4, 96), Bucket.of(16, 96)), GRID))
    assert packed.bucket == Bucket.of(16, 96) and packed.demoted == sel.hr_cells - 16
    kept = set(packed.hr_cells[packed.hr_mask == 0].tolist())
    small = np.zeros(GRID[0] * GRID[1], bool)
    small[list(kept)] = True
    demoted = sel.small.ravel() & ~small
    low = sel.low_res.ravel() | demoted
    want, _ = reference_forward(model, image, from_host(small.reshape(GRID), low.reshape(GRID), sel.background))
    assert _max_diff(_bucketed(model, image, packed), want) < 1e-4
    # Demotion is a real change of tokens, so the result differs from the unconstrained reference.
    full, _ = reference_forward(model, image, from_host(sel.small, sel.low_res, sel.background))
    assert _max_diff(_bucketed(model, image, packed), full) > 1e-6
