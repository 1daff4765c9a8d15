"""HMR2.0 SMPL head: a 6-layer cross-attention transformer decoder with one query.

Names and shapes equal the ``smpl_head.*`` tensors of the 4D-Humans checkpoint. Export rewrites: the zero query
token is folded (its embedding is ``to_token_embedding(0) + pos_embedding``, computed in the weights' dtype, so
``.half()`` works), no einops, no in-place adds.
"""

from __future__ import annotations

import torch
from torch import nn

from dataclasses import dataclass

from edgehmr.models.attention import attend, split_fused
from edgehmr.models.geometry import rot6d_to_rotmat

NUM_JOINTS = 24  # global orient + 23 body joints


@dataclass(frozen=True)
class HeadConfig:
    dim: int = 1024
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1024


PUBLISHED_HEAD = HeadConfig()  # 4D-Humans' SMPL_HEAD.TRANSFORMER_DECODER


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)  # eps 1e-5 here (the ViT uses 1e-6)
        self.fn = fn

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x), *context)


class SelfAttention(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.heads, self.scale = cfg.heads, cfg.dim_head**-0.5
        inner = cfg.heads * cfg.dim_head
        self.to_qkv = nn.Linear(cfg.dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, cfg.dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.to_qkv(x), 3)
        return self.to_out(attend(q, k, v, self.heads, self.scale, scale_query=False))


class CrossAttention(nn.Module):
    def __init__(self, cfg: HeadConfig, context_dim: int):
        super().__init__()
        self.heads, self.scale = cfg.heads, cfg.dim_head**-0.5
        inner = cfg.heads * cfg.dim_head
        self.to_q = nn.Linear(cfg.dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, inner * 2, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, cfg.dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = split_fused(self.to_kv(context), 2)
        return self.to_out(attend(self.to_q(x), k, v, self.heads, self.scale, scale_query=False))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerCrossAttn(nn.Module):
    def __init__(self, cfg: HeadConfig, context_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([
                PreNorm(cfg.dim, SelfAttention(cfg)),
                PreNorm(cfg.dim, CrossAttention(cfg, context_dim)),
                PreNorm(cfg.dim, FeedForward(cfg.dim, cfg.mlp_dim)),
            ])
            for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for self_attn, cross_attn, ff in self.layers:
            x = self_attn(x) + x
            x = cross_attn(x, context) + x
            x = ff(x) + x
        return x  # no final norm, as published


class TransformerDecoder(nn.Module):
    def __init__(self, cfg: HeadConfig, context_dim: int):
        super().__init__()
        self.dim = cfg.dim
        self.to_token_embedding = nn.Linear(1, cfg.dim)  # input is the zero token ('zero' TRANSFORMER_INPUT)
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.transformer = TransformerCrossAttn(cfg, context_dim)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        # Linear(0) == bias: the query is a constant. Folding it keeps the dtype of the weights (fp16-safe).
        query = (self.to_token_embedding.bias + self.pos_embedding[0, 0]).reshape(1, 1, self.dim)
        query = query.expand(context.shape[0], 1, self.dim)
        return self.transformer(query, context)


class SMPLTransformerDecoderHead(nn.Module):
    """Backbone tokens ``[B, N, C]`` -> rotation matrices ``[B, 24, 3, 3]``, betas ``[B, 10]``, cam ``[B, 3]``."""

    def __init__(self, context_dim: int, cfg: HeadConfig = PUBLISHED_HEAD):
        super().__init__()
        self.transformer = TransformerDecoder(cfg, context_dim)
        self.decpose = nn.Linear(cfg.dim, NUM_JOINTS * 6)
        self.decshape = nn.Linear(cfg.dim, 10)
        self.deccam = nn.Linear(cfg.dim, 3)
        self.register_buffer("init_body_pose", torch.zeros(1, NUM_JOINTS * 6))
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.zeros(1, 3))

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        token = self.transformer(context)[:, 0]
        pose6d = self.decpose(token) + self.init_body_pose  # IEF_ITERS = 1: a single pass from the mean
        betas = self.decshape(token) + self.init_betas
        cam = self.deccam(token) + self.init_cam
        rotmats = rot6d_to_rotmat(pose6d.reshape(-1, NUM_JOINTS, 6))
        return rotmats, betas, cam


def init_head_weights(head: SMPLTransformerDecoderHead) -> None:
    """Seeded, plausible initialisation for untrained use.

    Readouts get trained-like magnitudes (not HMR2.0's 0.01-gain training init, whose ~1e-4 weights sit in fp16's
    subnormal range and would make precision drift unrealistically large), the mean buffers hold a T-pose facing
    the camera with a seeded body shape, and the camera readout stays small so the scale stays positive: untrained
    outputs are valid, varied bodies in front of the camera rather than noise.
    """
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.trunc_normal_(head.transformer.pos_embedding, std=0.02)
    init_smpl_readouts(head)


def init_smpl_readouts(head: nn.Module) -> None:
    """The readouts (``decpose``, ``decshape``, ``deccam``) and mean buffers (``init_*``) of an SMPL regression
    head: see :func:`init_head_weights`."""
    nn.init.trunc_normal_(head.decpose.weight, std=0.005)
    nn.init.trunc_normal_(head.decshape.weight, std=0.02)
    nn.init.trunc_normal_(head.deccam.weight, std=0.002)
    identity6d = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    flip_x6d = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])  # 180 deg about x: SMPL's y-up body into camera y-down
    pose = identity6d.repeat(NUM_JOINTS)
    pose[:6] = flip_x6d
    head.init_body_pose.copy_(pose[None])
    head.init_betas.copy_(0.5 * torch.randn(1, 10))
    head.init_cam.copy_(torch.tensor([[0.9, 0.0, 0.0]]))
