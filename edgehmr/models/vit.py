"""Plain ViT backbone in the ViTPose layout (also the HMR2.0 backbone).

Parameter names and shapes equal the ``backbone.*`` tensors of the published ViTPose and 4D-Humans checkpoints,
so those load strictly. Differences from the published code are export rewrites only: no einops, no Python-int
shape arithmetic on traced sizes, and the cls slot of ``pos_embed`` added to every token the same way.

Input ``[B, 3, 256, 192]`` (ImageNet-normalised RGB) -> feature map ``[B, C, 16, 12]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgehmr.models._init import init_linear_or_norm
from edgehmr.models.attention import attend, split_fused

IMAGE_SIZE = (256, 192)  # (H, W) the positional table was trained for
PATCH_SIZE = 16
GRID = (16, 12)  # token grid of a 256x192 input with the padding-2 patch conv
LN_EPS = 1e-6


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


VIT_SIZES: dict[str, ViTConfig] = {
    "s": ViTConfig(embed_dim=384, depth=12, num_heads=12),
    "b": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    "l": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "h": ViTConfig(embed_dim=1280, depth=32, num_heads=16),
}


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        # reason: ViTPose uses padding 4 + 2*(ratio//2 - 1) = 2 for ratio 1, giving a 16x12 grid at 256x192.
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, C], row-major over (h, w)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # Written out rather than SDPA so every target sees plain matmul/softmax (see DESIGN numerics rules).
        q, k, v = split_fused(self.qkv(x), 3)  # fused rows are [q | k | v], heads contiguous inside each
        return self.proj(attend(q, k, v, self.num_heads, self.scale, scale_query=True, key_mask=key_mask))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU, as published
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViTPose ViT: patch conv, absolute positions, pre-norm blocks, last LayerNorm."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID[0] * GRID[1] + 1, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B, 3, 256, 192]`` -> tokens after the last norm ``[B, 192, C]``."""
        x = self.patch_embed(x)
        # The cls slot is never a token: it is broadcast-added to every patch position, as in ViTPose.
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for blk in self.blocks:
            x = blk(x)
        return self.last_norm(x)

    def tapped_tokens(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Tokens ``[B, 192, C]`` after each block count in ``taps`` (1-based, ascending). A tap at the last
        block gets the last norm (the backbone's published output); earlier taps are the raw residual stream."""
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        out = []
        for depth, blk in enumerate(self.blocks[:max(taps)], start=1):
            x = blk(x)
            if depth in taps:
                out.append(self.last_norm(x) if depth == len(self.blocks) else x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)
        return t.transpose(1, 2).reshape(t.shape[0], self.embed_dim, GRID[0], GRID[1])


def init_vit_weights(module: nn.Module) -> None:
    """Seeded initialisation used when no checkpoint is given (timm/ViTPose style)."""
    for m in module.modules():
        init_linear_or_norm(m)
    if isinstance(module, ViT):
        nn.init.trunc_normal_(module.pos_embed, std=0.02)


def build_vit(size: str) -> ViT:
    return ViT(VIT_SIZES[size])

