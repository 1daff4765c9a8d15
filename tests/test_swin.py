"""Swin v1 backbone: published checkpoint layout, numerics against a slow per-window reference, truncation, export."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgehmr.errors import CheckpointMismatchError
from edgehmr.models._checkpoint import load_strict
from edgehmr.models.swin import (SWIN_SIZES, SwinConfig, SwinTransformer, filter_swin_checkpoint,
                                 init_swin_weights)

TINY = SwinConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)
WIDER = SwinConfig(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(2, 4, 4, 8), window_size=7)  # a "B" to TINY's "T"
IMAGE = (256, 192)


def seeded_model(cfg: SwinConfig, num_stages: int, image_size=IMAGE, seed: int = 0) -> SwinTransformer:
    """Random weights everywhere (LayerNorm and biases too, so a wrong norm or bias path shows up)."""
    torch.manual_seed(seed)
    model = SwinTransformer(cfg, num_stages, image_size)
    init_swin_weights(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".norm" in name or name.startswith("patch_embed.norm"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# 1. Published layout -> strict load
# ---------------------------------------------------------------------------------------------------------------------

def published_layout(cfg: SwinConfig, train_size: int = 224, classes: int = 1000) -> dict[str, tuple]:
    """Every tensor of a published Swin v1 classification file (trained at 224), written out from the naming scheme:
    name -> (shape, dtype). Odd blocks carry a shift mask buffer unless the stage map fits in one window."""
    ws, n = cfg.window_size, cfg.window_size ** 2
    c0 = cfg.embed_dim
    keys = {
        "patch_embed.proj.weight": ((c0, 3, 4, 4), torch.float32), "patch_embed.proj.bias": ((c0,), torch.float32),
        "patch_embed.norm.weight": ((c0,), torch.float32), "patch_embed.norm.bias": ((c0,), torch.float32),
    }
    res = train_size // 4
    for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
        d = c0 * 2**i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            keys.update({
                p + "norm1.weight": ((d,), torch.float32), p + "norm1.bias": ((d,), torch.float32),
                p + "attn.relative_position_bias_table": (((2 * ws - 1) ** 2, heads), torch.float32),
                p + "attn.relative_position_index": ((n, n), torch.int64),
                p + "attn.qkv.weight": ((3 * d, d), torch.float32), p + "attn.qkv.bias": ((3 * d,), torch.float32),
                p + "attn.proj.weight": ((d, d), torch.float32), p + "attn.proj.bias": ((d,), torch.float32),
                p + "norm2.weight": ((d,), torch.float32), p + "norm2.bias": ((d,), torch.float32),
                p + "mlp.fc1.weight": ((4 * d, d), torch.float32), p + "mlp.fc1.bias": ((4 * d,), torch.float32),
                p + "mlp.fc2.weight": ((d, 4 * d), torch.float32), p + "mlp.fc2.bias": ((d,), torch.float32),
            })
            if j % 2 == 1 and res > ws:
                keys[p + "attn_mask"] = (((res // ws) ** 2, n, n), torch.float32)
        if i < len(cfg.depths) - 1:
            keys.update({
                f"layers.{i}.downsample.reduction.weight": ((2 * d, 4 * d), torch.float32),
                f"layers.{i}.downsample.norm.weight": ((4 * d,), torch.float32),
                f"layers.{i}.downsample.norm.bias": ((4 * d,), torch.float32),
            })
        res //= 2
    last = c0 * 2 ** (len(cfg.depths) - 1)
    keys.update({"norm.weight": ((last,), torch.float32), "norm.bias": ((last,), torch.float32),
                 "head.weight": ((classes, last), torch.float32), "head.bias": ((classes,), torch.float32)})
    return keys


def synthetic_checkpoint(cfg: SwinConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {k: (torch.randn(shape, generator=g) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype))
            for k, (shape, dtype) in published_layout(cfg).items()}


@pytest.mark.parametrize("num_stages", [2, 3, 4])
def test_published_layout_loads_strictly(num_stages):
    state = synthetic_checkpoint(TINY)
    model = SwinTransformer(TINY, num_stages)
    load_strict(model, filter_swin_checkpoint(state, num_stages), "synthetic.pth", f"swin-tiny-s{num_stages}")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert f"layers.{num_stages - 1}.downsample.reduction.weight" not in model.state_dict()


def test_state_dict_holds_only_parameters():
    model = SwinTransformer(TINY, 4)
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}


def test_mismatched_checkpoints_raise():
    wider = filter_swin_checkpoint(synthetic_checkpoint(WIDER), 4)
    with pytest.raises(CheckpointMismatchError) as e:
        load_strict(SwinTransformer(TINY, 4), wider, "wider.pth", "swin-tiny")
    assert e.value.diff.shape and not e.value.diff.missing

    state = filter_swin_checkpoint(synthetic_checkpoint(TINY), 4)
    del state["layers.2.blocks.1.attn.relative_position_bias_table"]
    with pytest.raises(CheckpointMismatchError, match="1 missing"):
        load_strict(SwinTransformer(TINY, 4), state, "cut.pth", "swin-tiny")

    two = filter_swin_checkpoint(synthetic_checkpoint(TINY), 2)  # a 2-stage file cannot fill a 3-stage model
    with pytest.raises(CheckpointMismatchError):
        load_strict(SwinTransformer(TINY, 3), two, "s2.pth", "swin-tiny-s3")

    extra = filter_swin_checkpoint(synthetic_checkpoint(TINY), 4)
    extra["absolute_pos_embed"] = torch.zeros(1, 3136, 16)  # a layout this model does not have passes the filter
    with pytest.raises(CheckpointMismatchError, match="1 unexpected"):
        load_strict(SwinTransformer(TINY, 4), extra, "ape.pth", "swin-tiny")


def test_parameter_counts_match_published():
    # Published totals include the 1000-class head and the final norm, which the backbone does not build.
    published_m = {"t": 28.3, "s": 49.6, "b": 87.8}
    for size, total in published_m.items():
        cfg = SWIN_SIZES[size]
        with torch.device("meta"):
            params = sum(p.numel() for p in SwinTransformer(cfg, 4).parameters())
        last = cfg.stage_channels[-1]
        assert (params + last * 1000 + 1000 + 2 * last) / 1e6 == pytest.approx(total, abs=0.05), size


# ---------------------------------------------------------------------------------------------------------------------
# 2. Numerics against a slow per-window reference
# ---------------------------------------------------------------------------------------------------------------------

def _ln(x, p, name):
    return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], eps=1e-5)


def reference_block(x: torch.Tensor, p: dict[str, torch.Tensor], heads: int, ws: int, shift: int) -> torch.Tensor:
    """One Swin block on ``x [H, W, C]`` (float64), window by window, head by head, pair by pair.

    Padded-map semantics: after norm1 the map is zero-padded bottom/right to a multiple of ``ws``, cyclically shifted
    by ``-shift``; inside a window two tokens may attend iff they lie on the same side of the wrap seam along both
    axes (otherwise -100 is added), the result is shifted back and cropped.
    """
    h, w, c = x.shape
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    d = c // heads
    padded = torch.zeros(hp, wp, c, dtype=x.dtype)
    padded[:h, :w] = _ln(x, p, "norm1")
    rolled = torch.roll(padded, (-shift, -shift), (0, 1))
    out = torch.zeros_like(rolled)
    table = p["attn.relative_position_bias_table"]
    for wi in range(hp // ws):
        for wj in range(wp // ws):
            coords = [(wi * ws + r, wj * ws + s) for r in range(ws) for s in range(ws)]
            tok = torch.stack([rolled[a, b] for a, b in coords])
            qkv = tok @ p["attn.qkv.weight"].T + p["attn.qkv.bias"]
            q, k, v = qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:]
            extra = torch.zeros(heads, len(coords), len(coords), dtype=x.dtype)
            for ia, (ya, xa) in enumerate(coords):
                for ib, (yb, xb) in enumerate(coords):
                    extra[:, ia, ib] = table[(ya - yb + ws - 1) * (2 * ws - 1) + (xa - xb + ws - 1)]
                    same_rows = (ya >= hp - shift) == (yb >= hp - shift)
                    same_cols = (xa >= wp - shift) == (xb >= wp - shift)
                    if shift and not (same_rows and same_cols):
                        extra[:, ia, ib] += -100.0
            per_head = []
            for hd in range(heads):
                sl = slice(hd * d, (hd + 1) * d)
                logits = (q[:, sl] * d**-0.5) @ k[:, sl].T + extra[hd]
                per_head.append(torch.softmax(logits, -1) @ v[:, sl])
            res = torch.cat(per_head, -1) @ p["attn.proj.weight"].T + p["attn.proj.bias"]
            for t, (a, b) in enumerate(coords):
                out[a, b] = res[t]
    x = x + torch.roll(out, (shift, shift), (0, 1))[:h, :w]
    y = _ln(x, p, "norm2") @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"]
    return x + F.gelu(y) @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]


@pytest.mark.parametrize("stage, block", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_block_matches_per_window_reference(stage, block):
    # 64x48 input: stage 1 is 16x12 (padded to 21x14, 3x2 windows), stage 2 is 8x6 (padded to 14x7, taller than
    # one window but narrower): both pad, and the shifted blocks cut windows along both seams.
    model = seeded_model(TINY, 2, image_size=(64, 48))
    blk = model.layers[stage].blocks[block]
    h, w = model.resolutions[stage]
    torch.manual_seed(5)
    x = torch.randn(1, h, w, TINY.stage_channels[stage])
    params = {k: v.double() for k, v in blk.state_dict().items()}
    want = reference_block(x[0].double(), params, TINY.num_heads[stage], 7, 3 if block % 2 else 0)
    with torch.no_grad():
        got = blk(x)[0]
    assert (got.double() - want).abs().max().item() < 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# 3. Truncation
# ---------------------------------------------------------------------------------------------------------------------

def test_truncated_output_shapes():
    x = torch.randn(1, 3, *IMAGE)
    for n, (hw, stride) in {2: ((32, 24), 8), 3: ((16, 12), 16), 4: ((8, 6), 32)}.items():
        model = seeded_model(TINY, n)
        assert (model.out_channels, model.out_stride) == (TINY.stage_channels[n - 1], stride)
        with torch.no_grad():
            assert model(x).shape == (1, model.out_channels, *hw)


def test_truncation_keeps_earlier_stages_unchanged():
    full = seeded_model(TINY, 4)
    short = SwinTransformer(TINY, 2)
    load_strict(short, filter_swin_checkpoint(full.state_dict(), 2), "s4 weights", "swin-tiny-s2")
    x = torch.randn(1, 3, *IMAGE)
    with torch.no_grad():
        feats = full.forward_intermediates(x)
        assert torch.equal(short(x), feats[1])
        assert torch.equal(full(x), feats[3])


def test_batch_is_independent_per_sample():
    # Batch 2 exercises the expanded bias/mask path that batch 1 skips for shifted blocks.
    model = seeded_model(TINY, 2, image_size=(64, 48))
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert (model(x) - torch.cat([model(x[:1]), model(x[1:])])).abs().max() < 1e-6


def test_wrong_input_size_is_refused():
    with pytest.raises(ValueError, match="built for"):
        SwinTransformer(TINY, 2)(torch.randn(1, 3, 224, 224))


# ---------------------------------------------------------------------------------------------------------------------
# 4. Export
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_stages", [3, 4])
def test_exports_to_onnx_and_matches(num_stages, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = seeded_model(TINY, num_stages)
    x = torch.randn(1, 3, *IMAGE)
    ep = torch.export.export(model, (x,), strict=False)  # raises on any graph break / data-dependent shape
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not [op for op in ops if "roll" in op or "scaled_dot_product" in op], ops
    path = tmp_path / f"swin_s{num_stages}.onnx"
    torch.onnx.export(ep, (x,), str(path), dynamo=True, opset_version=18)  # reuses the program: one trace, not two
    onnx_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not onnx_ops & {"NonZero", "ScatterND", "Loop", "If", "Where"}, onnx_ops  # nothing data-dependent
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape
    assert abs(got - want).max() < 1e-4
