"""GroupMixFormer backbone: published checkpoint layout, numerics against the published formulation, truncation,
export. Tiny configs only (8 heads over 4/5 of the width needs widths that are multiples of 10)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgehmr.errors import CheckpointMismatchError
from edgehmr.models._checkpoint import load_strict
from edgehmr.models.groupmixformer import (
    GMF_SIZES, GroupMixConfig, GroupMixFormer, filter_gmf_checkpoint, init_gmf_weights,
)

TINY = GroupMixConfig(embed_dims=(20, 40, 40, 60), depths=(1, 2, 1, 1), mlp_ratios=(2.0, 2.0, 4.0, 4.0))
OTHER = GroupMixConfig(embed_dims=(20, 40, 60, 60), depths=(1, 2, 1, 1))  # stands in for another model size
EXPORT = GroupMixConfig(embed_dims=(20, 40, 40, 60), depths=(1, 1, 1, 1))
IMAGE = (256, 192)
HEADS = 8
NUM_CLASSES = 10


# ---- the published state-dict layout, spelled out independently of the model code -------------------------------

def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
    return shapes | {f"{prefix}.num_batches_tracked": ()}


def _affine(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _linear(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (cout, cin), f"{prefix}.bias": (cout,)}


def _sep(prefix: str, cin: int, cout: int, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.conv1.weight": (cin, 1, k, k), f"{prefix}.pointwise_conv.weight": (cout, cin, 1, 1)}


def _block(p: str, c: int, mlp_ratio: float) -> dict[str, tuple[int, ...]]:
    s, ch = c // 5, (c // 5 * 4) // HEADS
    keys = {f"{p}.cpe.proj.weight": (c, 1, 3, 3), f"{p}.cpe.proj.bias": (c,)}
    keys |= _affine(f"{p}.norm1", c) | _affine(f"{p}.norm2", c)
    keys |= _linear(f"{p}.att.qkv", c, 3 * c) | _linear(f"{p}.att.proj", c, c)
    a = f"{p}.att.aggregator"
    keys |= _bn(f"{a}.norm0", s)
    for i, k in ((1, 3), (2, 5), (3, 7)):
        keys |= _sep(f"{a}.agg{i}", s, s, k) | _bn(f"{a}.norm{i}", s)
    keys |= _sep(f"{a}.agg0.conv", 3 * s, s, 3) | _affine(f"{a}.agg0.norm", s)
    for i, (k, heads) in enumerate(((3, 2), (5, 3), (7, 3))):
        keys |= {f"{p}.att.crpe.conv_list.{i}.weight": (heads * ch, 1, k, k),
                 f"{p}.att.crpe.conv_list.{i}.bias": (heads * ch,)}
    hidden = int(c * mlp_ratio)
    return keys | _linear(f"{p}.mlp.fc1", c, hidden) | _linear(f"{p}.mlp.fc2", hidden, c)


def published_layout(cfg: GroupMixConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the published 4-stage classifier (``GroupMixFormer(...).state_dict()``) with its shape."""
    d = cfg.embed_dims
    keys = {"conv_stem.proj1.weight": (d[0] // 2, 3, 3, 3), "conv_stem.proj1.bias": (d[0] // 2,),
            "conv_stem.proj2.weight": (d[0], d[0] // 2, 3, 3), "conv_stem.proj2.bias": (d[0],)}
    keys |= _bn("conv_stem.norm1", d[0] // 2) | _bn("conv_stem.norm2", d[0])
    for i in range(4):
        keys |= _sep(f"patch_embed_layers.{i}.proj", d[i - 1] if i else d[0], d[i], 3)
        keys |= _bn(f"patch_embed_layers.{i}.norm", d[i])
        for j in range(cfg.depths[i]):
            keys |= _block(f"groupmixformer_backbone.{i}.gma_stage.{j}", d[i], cfg.mlp_ratios[i])
    return keys | _bn("norm4", d[3]) | _linear("head", d[3], NUM_CLASSES)


def synthetic_checkpoint(cfg: GroupMixConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in published_layout(cfg).items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.2
    return out


def expected_kept(key: str, num_stages: int) -> bool:
    """What a truncated backbone keeps: no classifier, no stage at or after ``num_stages``."""
    if key.startswith(("norm4.", "head.")):
        return False
    parts = key.split(".")
    return parts[0] not in ("patch_embed_layers", "groupmixformer_backbone") or int(parts[1]) < num_stages


@pytest.mark.parametrize("num_stages", [2, 3, 4])
def test_published_layout_loads_strictly(num_stages):
    ckpt = synthetic_checkpoint(TINY)
    state = filter_gmf_checkpoint(ckpt, num_stages)
    assert set(state) == {k for k in ckpt if expected_kept(k, num_stages)}
    model = GroupMixFormer(TINY, num_stages)
    load_strict(model, state, "synthetic", f"gmf-tiny-s{num_stages}")
    last = f"groupmixformer_backbone.{num_stages - 1}.gma_stage.0.att.crpe.conv_list.2.weight"
    torch.testing.assert_close(model.state_dict()[last], ckpt[last], rtol=0, atol=0)


def test_mismatched_checkpoints_fail():
    model = GroupMixFormer(TINY, 4)
    with pytest.raises(CheckpointMismatchError, match="another shape"):  # another size's file
        load_strict(model, filter_gmf_checkpoint(synthetic_checkpoint(OTHER), 4), "other", "gmf-tiny")
    state = filter_gmf_checkpoint(synthetic_checkpoint(TINY), 4)
    missing = {k: v for k, v in state.items() if k != "groupmixformer_backbone.1.gma_stage.1.att.qkv.bias"}
    with pytest.raises(CheckpointMismatchError, match="1 missing"):
        load_strict(model, missing, "missing", "gmf-tiny")
    deeper = state | {"groupmixformer_backbone.1.gma_stage.2.norm1.weight": torch.ones(40)}  # a deeper model
    with pytest.raises(CheckpointMismatchError, match="1 unexpected"):
        load_strict(model, deeper, "deeper", "gmf-tiny")


# ---- numerics: the published formulation, written literally (einsum, q-major stacking) -------------------------

def _sep_ref(sep, x):
    return sep.pointwise_conv(sep.conv1(x))


def reference_attention(att, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    b, n, c = x.shape
    h, w = size
    s, trans = c // 5, c // 5 * 4
    ch = trans // HEADS
    agg = att.aggregator
    qkv = att.qkv(x).reshape(b, n, 3, c).permute(2, 0, 1, 3).reshape(3 * b, n, c)
    maps = qkv.transpose(1, 2).reshape(3 * b, c, h, w).split([s] * 5, dim=1)
    local = maps[4].reshape(3, b, s, h, w).permute(1, 0, 2, 3, 4).reshape(b, 3 * s, h, w)
    local = _sep_ref(agg.agg0.conv, local).reshape(b, s, n).permute(0, 2, 1)
    local = F.hardswish(F.layer_norm(local, (s,), agg.agg0.norm.weight, agg.agg0.norm.bias, eps=1e-5))
    branches = [F.hardswish(agg.norm0(maps[0]))]
    branches += [F.hardswish(getattr(agg, f"norm{i}")(_sep_ref(getattr(agg, f"agg{i}"), maps[i]))) for i in (1, 2, 3)]
    mixed = torch.cat(branches, dim=1).reshape(3, b, HEADS, ch, n).permute(0, 1, 2, 4, 3)
    q, k, v = mixed[0], mixed[1], mixed[2]  # [B, heads, N, ch]
    k_softmax = k.softmax(dim=2)
    context = torch.einsum("bhnk,bhnv->bhkv", k_softmax, v)
    eff = torch.einsum("bhnk,bhkv->bhnv", q, context)
    v_img = v.permute(0, 1, 3, 2).reshape(b, HEADS * ch, h, w)  # 'B h (H W) Ch -> B (h Ch) H W'
    parts = v_img.split([2 * ch, 3 * ch, 3 * ch], dim=1)
    conv_v = torch.cat([conv(p) for conv, p in zip(att.crpe.conv_list, parts)], dim=1)
    crpe = q * conv_v.reshape(b, HEADS, ch, n).permute(0, 1, 3, 2)
    out = (c // HEADS) ** -0.5 * eff + crpe
    out = torch.cat([out.transpose(1, 2).reshape(b, n, trans), local], dim=-1)
    return att.proj(out)


def reference_block(blk, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    b, n, c = x.shape
    feat = x.transpose(1, 2).reshape(b, c, *size)
    x = (blk.cpe.proj(feat) + feat).flatten(2).transpose(1, 2)
    x = x + reference_attention(blk.att, F.layer_norm(x, (c,), blk.norm1.weight, blk.norm1.bias, eps=1e-6), size)
    y = F.layer_norm(x, (c,), blk.norm2.weight, blk.norm2.bias, eps=1e-6)
    return x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(y)))


def reference_features(model, img: torch.Tensor) -> list[torch.Tensor]:
    """The published ``forward_features`` (patch embed flattens; H, W from integer division)."""
    b = img.shape[0]
    stem = model.conv_stem
    x = F.hardswish(stem.norm1(stem.proj1(img)))
    x = F.hardswish(stem.norm2(stem.proj2(x)))
    outs = []
    for i, (embed, stage) in enumerate(zip(model.patch_embed_layers, model.groupmixformer_backbone)):
        h, w = (x.shape[2], x.shape[3]) if i == 0 else (x.shape[2] // 2, x.shape[3] // 2)
        tokens = F.hardswish(embed.norm(_sep_ref(embed.proj, x))).flatten(2).transpose(1, 2)
        for blk in stage.gma_stage:
            tokens = reference_block(blk, tokens, (h, w))
        x = tokens.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        outs.append(x)
    return outs


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights and BatchNorm statistics so every branch contributes; eval mode."""
    torch.manual_seed(seed)
    ckpt = synthetic_checkpoint(model.cfg, seed)
    load_strict(model, filter_gmf_checkpoint(ckpt, model.num_stages), "synthetic", "gmf-tiny")
    return model.eval()


@torch.no_grad()
def test_attention_matches_published_einsum_formulation():
    model = randomized(GroupMixFormer(TINY, 2, image_size=(64, 48)))
    att = model.groupmixformer_backbone[1].gma_stage[1].att  # stage 2: 8x6 tokens, width 40
    x = torch.randn(2, 48, 40)  # batch 2: the q/k/v stacking order must not mix images
    ours, ref = att(x), reference_attention(att, x, (8, 6))
    assert ref.abs().max() > 0.1
    assert (ours - ref).abs().max() < 1e-5


@torch.no_grad()
def test_model_matches_published_forward():
    model = randomized(GroupMixFormer(TINY, 4, image_size=(64, 64)), seed=1)  # maps 16, 8, 4, 2: all even
    img = torch.randn(2, 3, 64, 64)
    for ours, ref in zip(model.forward_features(img), reference_features(model, img), strict=True):
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max() < 1e-4 * max(1.0, ref.abs().max().item())


# ---- truncation -------------------------------------------------------------------------------------------------

@torch.no_grad()
def test_truncated_shapes_and_prefix_equality():
    torch.manual_seed(0)
    full = GroupMixFormer(TINY, 4, IMAGE)
    init_gmf_weights(full)
    full.eval()
    x = torch.randn(1, 3, *IMAGE)
    feats = full.forward_features(x)
    expected = {2: (32, 24), 3: (16, 12), 4: (8, 6)}
    for n, hw in expected.items():
        model = GroupMixFormer(TINY, n, IMAGE)
        load_strict(model, filter_gmf_checkpoint(full.state_dict(), n), "s4 weights", f"gmf-tiny-s{n}")
        out = model.eval()(x)
        assert tuple(out.shape) == (1, TINY.embed_dims[n - 1], *hw)
        assert model.out_channels == TINY.stage_channels[n - 1] and model.out_stride == 4 * 2 ** (n - 1)
        torch.testing.assert_close(out, feats[n - 1], rtol=0, atol=0)
    assert not any(k.startswith("groupmixformer_backbone.2") for k in GroupMixFormer(TINY, 2).state_dict())


def test_published_sizes_parameter_counts():
    """Configs vs the published counts (classifier included: norm4 affine + 1000-way head)."""
    published_m = {"m": 5.7, "t": 11.0, "s": 22.4, "b": 45.8}
    for name, millions in published_m.items():
        cfg = GMF_SIZES[name]
        c = cfg.embed_dims[3]
        params = sum(p.numel() for p in GroupMixFormer(cfg, 4).parameters()) + 2 * c + c * 1000 + 1000
        # abs 0.06: T counts 10.949 M, printed as 11.0 (rounded via 10.95, it seems); the others are within 0.04.
        assert params / 1e6 == pytest.approx(millions, abs=0.06), name


# ---- export -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_stages", [3, 4])
def test_onnx_export_matches_and_has_no_einsum(num_stages, tmp_path):
    import onnxruntime as ort

    model = randomized(GroupMixFormer(EXPORT, num_stages, IMAGE), seed=2)
    x = torch.randn(1, 3, *IMAGE)
    with torch.no_grad():
        expected = model(x)
    exportable = model
    if num_stages == 4:  # torch.export on its own too; its program feeds the ONNX exporter (one trace, not two)
        exportable = torch.export.export(model, (x,))
        with torch.no_grad():
            torch.testing.assert_close(exportable.module()(x), expected)
    onnx_program = torch.onnx.export(exportable, (x,), dynamo=True, opset_version=18)
    proto = onnx_program.model_proto
    ops = {node.op_type for node in proto.graph.node} | {n.op_type for f in proto.functions for n in f.node}
    assert "Einsum" not in ops
    path = tmp_path / f"gmf_s{num_stages}.onnx"
    onnx_program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == tuple(expected.shape)
    assert abs(got - expected.numpy()).max() < 1e-4
