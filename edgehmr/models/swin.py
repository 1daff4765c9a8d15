"""Swin Transformer v1 backbone (T/S/B), truncated after 1-4 stages, for fixed-size edge export.

Accepted checkpoint layout: the published Swin v1 classification files (``swin_{tiny,small,base}_patch4_window7_224``),
whose state dict sits under the key ``"model"`` and must be unwrapped by the caller. Their names are::

    patch_embed.proj.{weight,bias}              Conv2d(3, C, 4, stride 4)
    patch_embed.norm.{weight,bias}              LayerNorm(C)
    layers.{i}.blocks.{j}.norm1.{weight,bias}
    layers.{i}.blocks.{j}.attn.qkv.{weight,bias}                fused rows [q | k | v], heads contiguous in each
    layers.{i}.blocks.{j}.attn.proj.{weight,bias}
    layers.{i}.blocks.{j}.attn.relative_position_bias_table     [(2*7-1)**2, heads]
    layers.{i}.blocks.{j}.attn.relative_position_index          buffer (dropped by the filter, rebuilt here)
    layers.{i}.blocks.{j}.attn_mask                             buffer, odd blocks only (dropped, rebuilt here)
    layers.{i}.blocks.{j}.norm2.{weight,bias}
    layers.{i}.blocks.{j}.mlp.fc1.{weight,bias} / mlp.fc2.{weight,bias}
    layers.{i}.downsample.reduction.weight      Linear(4C_i, 2C_i, bias=False); v1 merges at the END of stage i < 3
    layers.{i}.downsample.norm.{weight,bias}    LayerNorm(4C_i)
    norm.{weight,bias}, head.{weight,bias}      final norm and classifier: dropped, the backbone stops before them

``filter_swin_checkpoint`` maps that layout onto a truncated model; the model's own state dict holds only learnable
tensors, because everything that depends on the input size is rebuilt at construction.

Export rewrites against the published forward (numerics unchanged where the published code runs at all):

- Every shape, pad, shift and mask is fixed at construction from the static ``image_size``; no traced shape math.
- Maps that are not a multiple of the window are zero-padded bottom/right after ``norm1``, the shifted-window mask is
  built on the padded map, and the result is cropped (the scheme of the mmdet/mmpose Swin backbones, which detection
  and pose models built on these checkpoints were trained with). The published classifier code cannot run such maps.
- The cyclic shift is written as slices + concat: ``torch.roll`` decomposes to arange/fmod/index_select gathers in
  the ExecuTorch edge dialect, while slices stay Slice/Concat for every target.
- Attention reuses ``attention.attend_heads``: heads folded into the batch, 3-D bmm, fused qkv split by slices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgehmr.models._init import init_linear_or_norm
from edgehmr.models.attention import attend_heads, merge_heads, split_fused, split_heads
from edgehmr.models.vit import Mlp  # fc1 -> exact GELU -> fc2, the same names as Swin's

PATCH_SIZE = 4
# reason: the published code fills cross-region logits with -100.0 (not -inf); kept so outputs match the published
# models. exp(-100) underflows to 0 in fp32 and fp16 alike, and no target has to handle inf arithmetic.
MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int = 7
    mlp_ratio: float = 4.0

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of each stage's output (before its patch merging): ``embed_dim * 2**i``."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


SWIN_SIZES: dict[str, SwinConfig] = {
    "t": SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "s": SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "b": SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


# ---------------------------------------------------------------------------------------------------------------------
# Static geometry helpers (Python ints and constant tensors, computed once at construction)
# ---------------------------------------------------------------------------------------------------------------------

def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def stage_resolutions(image_size: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
    """Token-map ``(H, W)`` of each stage: ceil(size / 4), then halved (rounding up, odd maps are padded) per merge."""
    h, w = _ceil_div(image_size[0], PATCH_SIZE), _ceil_div(image_size[1], PATCH_SIZE)
    sizes = [(h, w)]
    for _ in range(num_stages - 1):
        h, w = _ceil_div(h, 2), _ceil_div(w, 2)
        sizes.append((h, w))
    return sizes


def relative_position_index(window: int) -> torch.Tensor:
    """``[N*N]`` int64 rows of ``relative_position_bias_table`` for every (query, key) pair, ``N = window**2``.

    Row = (dy + window - 1) * (2 * window - 1) + (dx + window - 1) with dy, dx = query - key coordinates, the
    published table order.
    """
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return (dy * (2 * window - 1) + dx).flatten()


def shifted_window_mask(padded: tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """Additive mask ``[num_windows, N, N]`` for a map rolled by ``-shift``: ``MASK_VALUE`` between tokens that were
    not neighbours before the roll (different sides of the wrap seam), 0 otherwise.

    Built on the padded size so padded rows/columns fall in the same regions the padded-map scheme gives them.
    """
    hp, wp = padded
    labels = torch.zeros(hp, wp)
    bounds = ((0, -window), (-window, -shift), (-shift, None))  # the published three bands per axis
    for i, (h0, h1) in enumerate(bounds):
        for j, (w0, w1) in enumerate(bounds):
            labels[h0:h1, w0:w1] = i * 3 + j
    windows = window_partition(labels[None, :, :, None], window).squeeze(-1)  # [nW, N]
    differ = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, MASK_VALUE)


# ---------------------------------------------------------------------------------------------------------------------
# Export-safe tensor rearrangements (rank <= 4, static sizes)
# ---------------------------------------------------------------------------------------------------------------------

def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, Hp, Wp, C] -> [B*nW, window*window, C]``, windows row-major, the published order.

    reason: two rank-4 reshapes + one transpose instead of the published rank-6 permute; Core ML caps tensors at
    rank 5 and XNNPACK handles rank-4 transposes natively.
    """
    _, hp, wp, c = x.shape
    x = x.reshape(-1, window, wp // window, window * c)  # [B*nH, wy, nW_x, wx*C]
    return x.transpose(1, 2).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, padded: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B*nW, window*window, C] -> [B, Hp, Wp, C]``."""
    hp, wp = padded
    c = windows.shape[-1]
    x = windows.reshape(-1, wp // window, window, window * c)  # [B*nH, nW_x, wy, wx*C]
    return x.transpose(1, 2).reshape(-1, hp, wp, c)


def roll_hw(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``torch.roll(x, (shift, shift), dims=(1, 2))`` on ``[B, H, W, C]`` written as slices + concat.

    reason: ``aten.roll`` decomposes to arange/fmod/index_select in the ExecuTorch edge dialect; two slices and a
    concat per axis are plain Slice/Concat on every target.
    """
    for dim in (1, 2):
        size = x.shape[dim]
        k = shift % size
        if k:
            x = torch.cat([x.narrow(dim, size - k, k), x.narrow(dim, 0, size - k)], dim=dim)
    return x


# ---------------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """4x4 stride-4 conv + LayerNorm: ``[B, 3, H, W] -> [B, H/4, W/4, C]`` (channels-last tokens)."""

    def __init__(self, embed_dim: int, image_size: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)
        self.norm = nn.LayerNorm(embed_dim)
        # Bottom/right zero pad to a multiple of the patch (static; zero for 256x192 and 224x224).
        self.pad = (-image_size[0] % PATCH_SIZE, -image_size[1] % PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, (0, self.pad[1], 0, self.pad[0]))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``window x window`` windows with the learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        # Non-persistent: a function of the window alone, so it is rebuilt rather than read from checkpoints.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        """``[heads, N, N]``: one gather of the table with the constant index (folds to a constant after export)."""
        n = self.window * self.window
        bias = torch.index_select(self.relative_position_bias_table, 0, self.relative_position_index)
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def additive(self, mask: torch.Tensor | None, windows: int) -> torch.Tensor:
        """Bias and shift mask folded into one additive ``[windows*heads, N, N]`` logit term, ordered like the
        folded batch of ``split_heads`` (window-major, then head)."""
        n = self.window * self.window
        add = self.position_bias()[None]  # [1, heads, N, N]
        if mask is not None:
            add = add + mask[:, None]  # [nW, heads, N, N]
        repeats = windows // add.shape[0]  # batch (shifted) or batch*nW (unshifted); 1 for a batch-1 shifted block
        add = add.reshape(1, -1, n, n)
        if repeats > 1:
            add = add.expand(repeats, -1, -1, -1)
        return add.reshape(-1, n, n)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B*nW, N, C]``; ``mask`` additive ``[nW, N, N]`` or None -> ``[B*nW, N, C]``."""
        windows = x.shape[0]
        q, k, v = split_fused(self.qkv(x), 3)  # fused rows are [q | k | v], heads contiguous inside each
        qh, kh, vh = (split_heads(t, self.num_heads) for t in (q, k, v))
        # scale_query=True: the published code scales q before the product; kept for matching float rounding.
        out = attend_heads(qh, kh, vh, self.scale, self.additive(mask, windows), scale_query=True)
        return self.proj(merge_heads(out, windows))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block on a static ``resolution`` map, ``[B, H, W, C] -> same``.

    Small/odd maps: the map is padded up to a multiple of the window and the shift is kept, as in the mmdet/mmpose
    Swin backbones. The published classifier instead shrinks the window to ``min(H, W)`` and drops the shift once
    ``min(H, W) <= window``; at 256x192 stage 4 is 8x6, which would need a 6x6 window and an 11x11 bias table the
    7x7-window checkpoints do not have, so strict loading would be impossible. Padding keeps every table the
    published shape. (At 224x224 stage 4 is exactly 7x7: there the published code runs unshifted while this block
    keeps the masked shift, which is the mmdet/mmpose behaviour.)
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float,
                 resolution: tuple[int, int]):
        super().__init__()
        self.window, self.shift, self.resolution = window, shift, resolution
        self.padded = (_ceil_div(resolution[0], window) * window, _ceil_div(resolution[1], window) * window)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(self.padded, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.window_attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def window_attention(self, y: torch.Tensor) -> torch.Tensor:
        """Pad (zeros, after the norm) -> roll -> windows -> attention -> merge -> roll back -> crop."""
        (h, w), (hp, wp) = self.resolution, self.padded
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        y = roll_hw(y, -self.shift)
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = roll_hw(window_reverse(y, self.window, self.padded), self.shift)
        return y[:, :h, :w] if (hp, wp) != (h, w) else y


class PatchMerging(nn.Module):
    """2x2 space-to-depth + LayerNorm(4C) + Linear(4C -> 2C, no bias): ``[B, H, W, C] -> [B, H/2, W/2, 2C]``."""

    def __init__(self, dim: int, resolution: tuple[int, int]):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)
        self.pad = (resolution[0] % 2, resolution[1] % 2)  # odd maps: one zero row/column bottom/right (static)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, (0, 0, 0, self.pad[1], 0, self.pad[0]))
        # The published channel order: (row, col) offsets (0,0), (1,0), (0,1), (1,1).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """One stage: ``depth`` blocks alternating unshifted/shifted; ``downsample`` (v1) belongs to the stage's end but
    is called by the model, so each stage's pre-merge map can be returned."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 resolution: tuple[int, int], downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if j % 2 == 0 else window // 2, mlp_ratio, resolution)
            for j in range(depth))
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------

class SwinTransformer(nn.Module):
    """Swin v1 stages 1..``num_stages`` (no final norm, no head) for a fixed input size.

    ``[B, 3, H, W]`` (ImageNet-normalised RGB, ``(H, W) == image_size``) -> raw last-stage map
    ``[B, out_channels, H/out_stride, W/out_stride]`` (sizes rounded up).
    """

    def __init__(self, cfg: SwinConfig, num_stages: int = 4, image_size: tuple[int, int] = (256, 192)):
        super().__init__()
        if not 1 <= num_stages <= len(cfg.depths):
            raise ValueError(f"num_stages must be in 1..{len(cfg.depths)}, got {num_stages}")
        self.cfg = cfg
        self.num_stages = num_stages
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.resolutions = stage_resolutions(self.image_size, num_stages)
        self.out_channels = cfg.stage_channels[num_stages - 1]
        self.out_stride = PATCH_SIZE * 2 ** (num_stages - 1)
        self.patch_embed = PatchEmbed(cfg.embed_dim, self.image_size)
        # The merge that feeds stage num_stages+1 is not built: its output would be unused.
        self.layers = nn.ModuleList(
            SwinStage(cfg.stage_channels[i], cfg.depths[i], cfg.num_heads[i], cfg.window_size, cfg.mlp_ratio,
                      self.resolutions[i], downsample=i < num_stages - 1)
            for i in range(num_stages))

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != self.image_size:  # static ints under export; masks/pads are built for this size
            raise ValueError(f"SwinTransformer was built for {self.image_size} inputs, got {tuple(x.shape[-2:])}")

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every built stage's raw output (before its merge), channels-first ``[B, C_i, H_i, W_i]``."""
        self._check_input(x)
        x = self.patch_embed(x)
        feats = []
        for stage in self.layers:
            x = stage(x)
            feats.append(x.permute(0, 3, 1, 2))
            if stage.downsample is not None:
                x = stage.downsample(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return x.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints and initialisation
# ---------------------------------------------------------------------------------------------------------------------

_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.*)$")
# Rebuilt at construction for the export resolution, so never read from a file (the published ones are for 224).
_RESOLUTION_BUFFERS = (".attn_mask", ".relative_position_index")


def _keep_key(key: str, num_stages: int) -> bool:
    if key.startswith(("head.", "norm.")) or key.endswith(_RESOLUTION_BUFFERS):
        return False
    m = _LAYER_KEY.match(key)
    if m is None:
        return True
    stage = int(m.group(1))
    if stage >= num_stages:
        return False
    return not (stage == num_stages - 1 and m.group(2).startswith("downsample."))


def filter_swin_checkpoint(state: dict[str, torch.Tensor], num_stages: int) -> dict[str, torch.Tensor]:
    """Published Swin v1 state dict (already unwrapped from ``"model"``) -> state dict of
    ``SwinTransformer(cfg, num_stages)``.

    Drops only what the truncated backbone does not have: ``head.*``, the final ``norm.*``, ``layers.{k}.*`` for
    ``k >= num_stages``, the merge ``layers.{num_stages-1}.downsample.*`` feeding a dropped stage, and the
    resolution-dependent buffers. Everything else passes unchanged, so a file of another size or layout still fails
    the strict load with a key/shape diff.
    """
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    return {k: v for k, v in state.items() if _keep_key(k, num_stages)}


def init_swin_weights(module: nn.Module) -> None:
    """Untrained initialisation (the published recipe; seed with ``torch.manual_seed`` first): truncated-normal
    0.02 linears and bias tables, zero biases, unit LayerNorms. The patch conv keeps PyTorch's default."""
    for m in module.modules():
        if init_linear_or_norm(m):
            continue
        if isinstance(m, WindowAttention):
            nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)
