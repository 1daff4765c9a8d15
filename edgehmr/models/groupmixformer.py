"""GroupMixFormer backbone (Group-Mix Attention), export-clean and truncatable after 2, 3 or 4 stages.

Architecture (facts: AILab-CVC/GroupMixFormer ``models/groupmixformer.py`` and ``configs/*.yaml``):

- ``conv_stem``: two 3x3 stride-2 convs (3 -> C1/2 -> C1), each BatchNorm + Hardswish: stride 4.
- Per stage ``i``: ``patch_embed_layers.i`` = depthwise-separable 3x3 conv (stride 1 for stage 1, 2 after) + BN +
  Hardswish, then ``groupmixformer_backbone.i.gma_stage.j`` blocks. Strides 4, 8, 16, 32; at 256x192 the maps
  are 64x48, 32x24, 16x12, 8x6.
- Block: ``x = cpe(x)`` (3x3 depthwise conv + identity), ``x = x + att(norm1(x))``, ``x = x + mlp(norm2(x))``;
  LayerNorm eps 1e-6, exact GELU.
- Group-Mix attention: the fused q/k/v are each cut into 5 channel segments of C/5. Segments 0-3 become proxies
  for groups of 1, 3x3, 5x5 and 7x7 tokens (identity, or a separable conv of that size, then BN + Hardswish)
  and go through efficient attention with 8 heads of width (4C/5)/8: softmax of K over the *tokens*,
  ``Q (K^T V) * scale`` plus a conv relative-position term ``Q * dwconv(V)`` (kernels 3/5/7 on 2/3/3 heads).
  Segment 4 of q, k and v, concatenated, goes through a separable 3x3 conv + LayerNorm + Hardswish to C/5
  channels (``agg0``) and is concatenated to the attention output before ``proj``.
- The classifier applies ``norm4`` (BatchNorm) to the last map, averages and applies ``head``; neither is built
  here, and a stage's output carries no norm (as in the published intermediate-feature path).

Accepted checkpoint layout: the published classification state dict, i.e. the dict under ``"model"`` in the
released ``.pth`` files, unwrapped and without a ``module.`` prefix. :func:`filter_gmf_checkpoint` drops
``head.*``, ``norm4.*`` and the keys of stages a truncated model does not build; every other key must match
strictly. Keys: ``conv_stem.{proj1,norm1,proj2,norm2}.*``,
``patch_embed_layers.{i}.proj.{conv1,pointwise_conv}.weight``, ``patch_embed_layers.{i}.norm.*``,
``groupmixformer_backbone.{i}.gma_stage.{j}.{cpe.proj,norm1,norm2,mlp.fc1,mlp.fc2,att.qkv,att.proj}.*``,
``...att.aggregator.{norm0..norm3}.*``, ``...att.aggregator.agg{1,2,3}.{conv1,pointwise_conv}.weight``,
``...att.aggregator.agg0.{conv.conv1,conv.pointwise_conv,norm}.*``, ``...att.crpe.conv_list.{0,1,2}.*``.

Export rewrites (the numbers are the published ones):
- SyncBatchNorm is ``nn.BatchNorm2d`` (same parameter and buffer names), used in eval mode.
- The two einsums are ``bmm`` on heads folded into the batch, in channels-first form: the context is computed
  transposed, ``V_cf @ softmax(K_cf)^T`` (= (K^T V)^T), so ``context^T @ Q_cf`` needs no extra transpose.
- q, k and v are stacked on the batch axis per image (``[B*3, C, H, W]``, order image-major) instead of the
  published q-major ``[3*B, ...]``: a pure reshape of the fused projection, and convs/BN are per sample so the
  result is the same.
- Every spatial size is a Python int fixed at construction from ``image_size``; only the batch axis is ``-1``.

Published quirks kept on purpose: the attention scale is ``(C // heads) ** -0.5`` of the *full* width C, although
the heads are (4C/5)/heads wide; ``agg0``'s LayerNorm keeps the default eps 1e-5; every stage has 8 heads.

Not verified:
- The released checkpoint files themselves were not inspected. Names follow the published model file; the
  repository's ``utils.convert_ckpt`` renames ``local_net.{0,1,2,4}`` keys, which suggests that some older
  checkpoints used another layout (this model rejects such a file strictly).
- GroupMixFormer-L: ``configs/groupmixformer_large.yaml`` says ``MLP_RATIOS: [4, 4, 2, 2]`` under a
  "need to adjust" note; those are the ratios used here, and they give 71.8 M parameters with the classifier
  against the published 70.3 M (M, T, S and B match the published 5.7/11.0/22.4/45.8 M to 0.1 M). The L file
  may not load.
- Odd spatial sizes: the published code takes ``H // 2`` for a stride-2 stage (and then fails to reshape when
  the conv gives ``ceil(H / 2)``); sizes here follow the conv arithmetic. 256x192 never meets the case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from edgehmr.models._init import init_linear_or_norm

BLOCK_LN_EPS = 1e-6  # GroupMixFormer(norm_layer=partial(nn.LayerNorm, eps=1e-6))
NUM_SEGMENTS = 5  # q/k/v channel segments: identity, 3x3, 5x5, 7x7 proxies for attention, and the agg0 branch
AGG_KERNELS = (3, 5, 7)  # separable-conv group sizes of segments 1..3


@dataclass(frozen=True)
class GroupMixConfig:
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    mlp_ratios: tuple[float, float, float, float] = (4.0, 4.0, 4.0, 4.0)
    num_heads: int = 8
    qkv_bias: bool = True
    # (kernel, heads) of the conv relative position encoding; the published code fixes {3: 2, 5: 3, 7: 3}.
    crpe_window: tuple[tuple[int, int], ...] = ((3, 2), (5, 3), (7, 3))

    def __post_init__(self):
        if sum(h for _, h in self.crpe_window) != self.num_heads:
            raise ValueError(f"crpe_window heads {self.crpe_window} must add up to num_heads={self.num_heads}")
        for dim in self.embed_dims:
            # reason: 5 equal segments, and the 4 attention segments split into equal heads.
            if dim % NUM_SEGMENTS or (dim // NUM_SEGMENTS * 4) % self.num_heads:
                raise ValueError(f"embed dim {dim} must split into {NUM_SEGMENTS} segments and "
                                 f"{self.num_heads} heads over 4 of them")

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dims)


GMF_SIZES: dict[str, GroupMixConfig] = {
    "m": GroupMixConfig(embed_dims=(40, 80, 160, 160), depths=(3, 3, 12, 4)),
    "t": GroupMixConfig(embed_dims=(80, 160, 200, 240), depths=(4, 4, 12, 4)),
    "s": GroupMixConfig(embed_dims=(80, 160, 320, 320), depths=(2, 4, 12, 4)),
    "b": GroupMixConfig(embed_dims=(200, 240, 320, 480), depths=(8, 8, 12, 8), mlp_ratios=(2.0, 2.0, 4.0, 4.0)),
    "l": GroupMixConfig(embed_dims=(240, 320, 360, 480), depths=(8, 10, 30, 10), mlp_ratios=(4.0, 4.0, 2.0, 2.0)),
}


def conv_out(size: int, stride: int) -> int:
    """Output length of a 3x3 conv with padding 1."""
    return (size + 2 - 3) // stride + 1


def channel_slices(t: torch.Tensor, width: int, parts: int) -> list[torch.Tensor]:
    """``parts`` slices of ``width`` channels along dim 1 (slices rather than ``chunk``/``split``, as in
    :mod:`edgehmr.models.attention`)."""
    return [t[:, i * width:(i + 1) * width] for i in range(parts)]


def to_map(tokens: torch.Tensor, channels: int, hw: tuple[int, int]) -> torch.Tensor:
    """``[B, H*W, C] -> [B, C, H, W]`` with the constructor's sizes."""
    return tokens.transpose(1, 2).reshape(-1, channels, hw[0], hw[1])


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H*W, C]``, row-major over (h, w)."""
    return x.flatten(2).transpose(1, 2)


class SeparableConv2d(nn.Module):
    """Depthwise kxk conv then pointwise 1x1 conv, both without bias."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False)
        self.pointwise_conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.conv1(x))


class ConvStem(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj1 = nn.Conv2d(3, dim // 2, 3, 2, 1)
        self.norm1 = nn.BatchNorm2d(dim // 2)
        self.act1 = nn.Hardswish()
        self.proj2 = nn.Conv2d(dim // 2, dim, 3, 2, 1)
        self.norm2 = nn.BatchNorm2d(dim)
        self.act2 = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.proj1(x)))
        return self.act2(self.norm2(self.proj2(x)))


class PatchEmbedLayer(nn.Module):
    """Separable 3x3 conv + BN + Hardswish; stays on the channels-first map (the stage flattens it)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.proj = SeparableConv2d(cin, cout, 3, stride)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.proj(x)))


class ConvPosEnc(nn.Module):
    def __init__(self, dim: int, hw: tuple[int, int]):
        super().__init__()
        self.dim, self.hw = dim, hw
        self.proj = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = to_map(x, self.dim, self.hw)
        return to_tokens(self.proj(feat) + feat)


class Agg0(nn.Module):
    """The non-attention branch: segment 4 of q, k and v (concatenated) -> separable 3x3 -> LayerNorm -> Hardswish."""

    def __init__(self, seg: int):
        super().__init__()
        self.conv = SeparableConv2d(seg * 3, seg, 3)
        self.norm = nn.LayerNorm(seg)  # default eps 1e-5, as published
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(to_tokens(self.conv(x))))


class Aggregator(nn.Module):
    """Group proxies of q, k and v stacked on the batch axis (``[B*3, C, H, W]``, image-major)."""

    def __init__(self, dim: int, hw: tuple[int, int]):
        super().__init__()
        self.seg, self.hw = dim // NUM_SEGMENTS, hw
        seg = self.seg
        self.norm0 = nn.BatchNorm2d(seg)
        self.act0 = nn.Hardswish()
        for i, k in enumerate(AGG_KERNELS, start=1):  # agg1/norm1/act1 ... agg3/norm3/act3
            setattr(self, f"agg{i}", SeparableConv2d(seg, seg, k))
            setattr(self, f"norm{i}", nn.BatchNorm2d(seg))
            setattr(self, f"act{i}", nn.Hardswish())
        self.agg0 = Agg0(seg)

    def forward(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (proxies ``[B*3, 4C/5, H, W]``, agg0 tokens ``[B, H*W, C/5]``)."""
        segs = channel_slices(qkv, self.seg, NUM_SEGMENTS)
        mixed = [self.act0(self.norm0(segs[0]))]
        for i in range(1, 4):
            conv, norm, act = getattr(self, f"agg{i}"), getattr(self, f"norm{i}"), getattr(self, f"act{i}")
            mixed.append(act(norm(conv(segs[i]))))
        # Image-major stacking puts q4, k4, v4 of one image in consecutive batch rows, so merging rows into
        # channels gives the published [q4 | k4 | v4] input of agg0.
        local = self.agg0(segs[4].reshape(-1, 3 * self.seg, self.hw[0], self.hw[1]))
        return torch.cat(mixed, dim=1), local


class ConvRelPosEnc(nn.Module):
    """``Q * dwconv(V)``, with a kernel size per group of heads."""

    def __init__(self, head_dim: int, window: tuple[tuple[int, int], ...], hw: tuple[int, int]):
        super().__init__()
        self.hw = hw
        self.splits = [heads * head_dim for _, heads in window]
        self.conv_list = nn.ModuleList(
            nn.Conv2d(c, c, k, 1, k // 2, groups=c) for (k, _), c in zip(window, self.splits))

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Channels-first ``[B, C', N]`` q and v -> ``[B, C', N]``."""
        v_img = v.reshape(-1, sum(self.splits), self.hw[0], self.hw[1])
        parts, start = [], 0
        for conv, width in zip(self.conv_list, self.splits):
            parts.append(conv(v_img[:, start:start + width]))
            start += width
        return q * torch.cat(parts, dim=1).flatten(2)


class GroupMixAttention(nn.Module):
    def __init__(self, dim: int, cfg: GroupMixConfig, hw: tuple[int, int]):
        super().__init__()
        self.dim, self.hw, self.heads = dim, hw, cfg.num_heads
        self.att_dim = dim // NUM_SEGMENTS * 4
        self.head_dim = self.att_dim // cfg.num_heads
        self.scale = (dim // cfg.num_heads) ** -0.5  # published: from the full width, not head_dim
        self.qkv = nn.Linear(dim, dim * 3, bias=cfg.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.aggregator = Aggregator(dim, hw)
        self.crpe = ConvRelPosEnc(self.head_dim, cfg.crpe_window, hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.hw[0] * self.hw[1]
        # [B, N, 3C] -> [B, 3C, N] -> [B*3, C, H, W]: the fused rows are [q | k | v], so this is q, k, v of each
        # image in consecutive batch rows, with no permute.
        stacked = self.qkv(x).transpose(1, 2).reshape(-1, self.dim, self.hw[0], self.hw[1])
        mixed, local = self.aggregator(stacked)
        # [B*3, C', H, W] -> [B, 3C', N]: rows of one image merge back into [q | k | v] channels.
        q, k, v = channel_slices(mixed.reshape(-1, 3 * self.att_dim, n), self.att_dim, 3)  # [B, C', N] each
        out = self.scale * self._linear_attention(q, k, v) + self.crpe(q, v)
        return self.proj(torch.cat([out.transpose(1, 2), local], dim=-1))

    def _linear_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(Q softmax_N(K)^T V)`` per head, channels-first ``[B, C', N]`` in and out, as two bmm."""
        n = self.hw[0] * self.hw[1]
        qh, kh, vh = (t.reshape(-1, self.head_dim, n) for t in (q, k, v))  # [B*heads, d, N]
        context_t = torch.bmm(vh, torch.softmax(kh, dim=-1).transpose(1, 2))  # (K^T V)^T: [B*heads, d_v, d_k]
        return torch.bmm(context_t, qh).reshape(-1, self.att_dim, n)  # (Q K^T V)^T


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GMABlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, cfg: GroupMixConfig, hw: tuple[int, int]):
        super().__init__()
        self.cpe = ConvPosEnc(dim, hw)
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.att = GroupMixAttention(dim, cfg, hw)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cpe(x)  # the residual starts after the position conv, as published
        x = x + self.att(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GMAStage(nn.Module):
    def __init__(self, index: int, cfg: GroupMixConfig, hw: tuple[int, int]):
        super().__init__()
        dim = cfg.embed_dims[index]
        self.dim, self.hw = dim, hw
        self.gma_stage = nn.ModuleList(
            GMABlock(dim, cfg.mlp_ratios[index], cfg, hw) for _ in range(cfg.depths[index]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-first map in and out; tokens inside."""
        t = to_tokens(x)
        for blk in self.gma_stage:
            t = blk(t)
        return to_map(t, self.dim, self.hw)


def stage_sizes(image_size: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
    """(H, W) of every stage's map: the stem halves twice, stage 1 keeps the size, later stages halve."""
    h, w = conv_out(conv_out(image_size[0], 2), 2), conv_out(conv_out(image_size[1], 2), 2)
    sizes = [(h, w)]
    for _ in range(1, num_stages):
        h, w = conv_out(h, 2), conv_out(w, 2)
        sizes.append((h, w))
    return sizes


class GroupMixFormer(nn.Module):
    """Stages 1..num_stages of GroupMixFormer; ``[B, 3, H, W]`` -> last stage map ``[B, C, H/s, W/s]``."""

    def __init__(self, cfg: GroupMixConfig, num_stages: int = 4, image_size: tuple[int, int] = (256, 192)):
        super().__init__()
        if not 1 <= num_stages <= 4:
            raise ValueError(f"num_stages must be 1..4, got {num_stages}")
        self.cfg, self.num_stages, self.image_size = cfg, num_stages, tuple(image_size)
        self.sizes = stage_sizes(self.image_size, num_stages)
        dims = cfg.embed_dims
        self.conv_stem = ConvStem(dims[0])
        self.patch_embed_layers = nn.ModuleList(
            PatchEmbedLayer(dims[max(i - 1, 0)], dims[i], 1 if i == 0 else 2) for i in range(num_stages))
        self.groupmixformer_backbone = nn.ModuleList(
            GMAStage(i, cfg, self.sizes[i]) for i in range(num_stages))
        self.out_channels = dims[num_stages - 1]
        self.out_stride = 4 * 2 ** (num_stages - 1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every built stage's map, channels-first (no norms, as the published intermediate features)."""
        x = self.conv_stem(x)
        outs = []
        for embed, stage in zip(self.patch_embed_layers, self.groupmixformer_backbone):
            x = stage(embed(x))
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1]


def init_gmf_weights(module: nn.Module) -> None:
    """Seeded "untrained" weights as the published ``_init_weights``: Linear trunc-normal(0.02) with zero bias,
    LayerNorm 1/0. Convs keep PyTorch's constructor init (drawn under the caller's seed); BatchNorm keeps its
    defaults, running statistics included."""
    for m in module.modules():
        init_linear_or_norm(m)


_STAGE_KEY = re.compile(r"^(?:patch_embed_layers|groupmixformer_backbone)\.(\d+)\.")
_CLASSIFIER_PREFIXES = ("head.", "norm4.")


def filter_gmf_checkpoint(state: dict[str, torch.Tensor], num_stages: int) -> dict[str, torch.Tensor]:
    """Published classification state dict -> this model's: drops the classifier (``norm4``, ``head``) and the
    stages from ``num_stages`` on. Everything else passes unchanged, so a file of another size still fails the
    strict load."""
    out = {}
    for key, value in state.items():
        if key.startswith(_CLASSIFIER_PREFIXES):
            continue
        m = _STAGE_KEY.match(key)
        if m and int(m.group(1)) >= num_stages:
            continue
        out[key] = value
    return out
