"""SAT-HMR's DAB-DETR decoder and prediction heads, export-clean, in the published parameter layout.

Facts: ../shared/research/sat_hmr_and_seed_models_facts.md, 1.7-1.8. Per layer (pre-norm, ReLU FFN):
self-attention of the queries with ``q = k = content + pos`` projections; conditional cross-attention where every
head's query is ``[content | sine(anchor) projection]`` and every head's key ``[content | memory-position
projection]`` (so q/k heads are twice as wide as v heads, softmax scale ``1/sqrt(q head dim)``); the query and
key position projections are added to the contents in layer 0 only. Anchors are 4-D boxes refined after every
layer (``bbox_embed[l]``); the sine encoding uses temperature 20. The heads read every layer's normalised output:
6D pose and betas are sums of per-layer residuals over the mean parameters, camera, confidence and box come from
the last layer.

Export notes: attention is 3-D batched matmuls with heads folded into the batch (see
:mod:`edgehmr.models.attention`), memory padding is an additive key mask (static-shape buckets), and the
layer-0-only projection is a Python branch on the layer index, never on data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgehmr.models.attention import attend_heads, merge_heads, split_heads
from edgehmr.models.geometry import cross3

SINE_TEMPERATURE = 20.0
INVERSE_SIGMOID_EPS = 1e-5
NUM_JOINTS = 24
NUM_BETAS = 10


class MLP(nn.Module):
    """DETR-style MLP (``layers.{i}``, ReLU between layers), as SAT-HMR's heads are written."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, num_layers: int):
        super().__init__()
        dims = [dim_in] + [hidden] * (num_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def sine_embed(coord: torch.Tensor, width: int, temperature: float = SINE_TEMPERATURE) -> torch.Tensor:
    """``[...] in [0, 1] -> [..., width]``: DETR's sine encoding of one coordinate, sin/cos interleaved."""
    i = torch.arange(width, dtype=coord.dtype, device=coord.device)  # the input's dtype: fp16 graphs stay fp16
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / width)
    x = coord[..., None] * (2 * math.pi) / dim_t
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def grid_positions(height: int, width: int, cells: int, dim: int) -> torch.Tensor:
    """Memory position table ``[height, width, dim]`` of one token level: ``[sine(y) | sine(x)]`` at the cell
    centres, normalised by the level's grid on the full canvas (``cells`` per side), not by the image."""
    y = (torch.arange(height, dtype=torch.float32) + 0.5) / cells
    x = (torch.arange(width, dtype=torch.float32) + 0.5) / cells
    pos_y = sine_embed(y, dim // 2)[:, None].expand(height, width, dim // 2)
    pos_x = sine_embed(x, dim // 2)[None].expand(height, width, dim // 2)
    return torch.cat((pos_y, pos_x), dim=-1)


def anchor_sine(anchor: torch.Tensor, dim: int) -> torch.Tensor:
    """``[B, Q, 4]`` boxes (cx, cy, w, h) -> ``[B, Q, 2*dim]``: ``[sine(cy) | sine(cx) | sine(h) | sine(w)]``.

    The published code encodes (cx, cy) and (w, h) with one helper that puts its second coordinate first, so the
    size half is (h, w), not (w, h): a square anchor hides the difference, a trained one does not."""
    half = dim // 2
    return torch.cat([sine_embed(anchor[..., i], half) for i in (1, 0, 3, 2)], dim=-1)


def inverse_sigmoid(x: torch.Tensor, eps: float = INVERSE_SIGMOID_EPS) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, first: bool):
        super().__init__()
        self.heads = heads
        for name in ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj",
                     "sa_out_proj", "ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj",
                     "ca_qpos_sine_proj", "ca_out_proj"):
            setattr(self, name, nn.Linear(dim, dim))
        self.ca_qpos_proj = nn.Linear(dim, dim) if first else None  # the published model has it in layer 0 only
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                memory_mask: torch.Tensor | None, query_pos: torch.Tensor, query_sine: torch.Tensor) -> torch.Tensor:
        batch, heads = tgt.shape[0], self.heads
        x = self.norm1(tgt)
        q = self.sa_qcontent_proj(x) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(x) + self.sa_kpos_proj(query_pos)
        v = self.sa_v_proj(x)
        head_dim = q.shape[-1] // heads
        sa = attend_heads(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), head_dim ** -0.5)
        tgt = tgt + self.sa_out_proj(merge_heads(sa, batch))

        x = self.norm2(tgt)
        q = self.ca_qcontent_proj(x)
        k = self.ca_kcontent_proj(memory)
        k_pos = self.ca_kpos_proj(memory_pos)
        if self.ca_qpos_proj is not None:
            q = q + self.ca_qpos_proj(query_pos)
            k = k + k_pos
        qh = torch.cat((split_heads(q, heads), split_heads(self.ca_qpos_sine_proj(query_sine), heads)), dim=-1)
        kh = torch.cat((split_heads(k, heads), split_heads(k_pos, heads)), dim=-1)
        mask = None
        if memory_mask is not None:  # [B, N] -> one row per (batch, head), broadcast over queries
            mask = memory_mask[:, None, None, :].expand(batch, heads, 1, -1).reshape(batch * heads, 1, -1)
        ca = attend_heads(qh, kh, split_heads(self.ca_v_proj(memory), heads), qh.shape[-1] ** -0.5, mask)
        tgt = tgt + self.ca_out_proj(merge_heads(ca, batch))

        x = self.norm3(tgt)
        return tgt + self.linear2(F.relu(self.linear1(x)))


class DabDecoder(nn.Module):
    """Published name ``decoder.decoder``. ``bbox_embed`` is attached by :class:`SatHeads`' owner (aliased)."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn, first=i == 0) for i in range(layers))
        self.query_scale = MLP(dim, dim, dim, 2)
        self.ref_point_head = MLP(2 * dim, dim, dim, 2)
        self.ref_anchor_head = MLP(dim, dim, 2, 2)
        self.norm = nn.LayerNorm(dim)
        self.bbox_embed: nn.ModuleList | None = None

    def forward(self, tgt: torch.Tensor, anchors: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                memory_mask: torch.Tensor | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """-> (normalised output of every layer, the anchor each layer started from)."""
        half = self.dim // 2
        outputs, used_anchors = [], []
        for i, layer in enumerate(self.layers):
            sine = anchor_sine(anchors, self.dim)
            query_pos = self.ref_point_head(sine)
            position = sine[..., :self.dim] if i == 0 else sine[..., :self.dim] * self.query_scale(tgt)
            # Modulated attention: the (y | x) halves are rescaled by the predicted over the anchor's (h | w).
            hw = torch.sigmoid(self.ref_anchor_head(tgt))
            position = torch.cat((position[..., :half] * (hw[..., 1] / anchors[..., 3])[..., None],
                                  position[..., half:] * (hw[..., 0] / anchors[..., 2])[..., None]), dim=-1)
            tgt = layer(tgt, memory, memory_pos, memory_mask, query_pos, position)
            used_anchors.append(anchors)
            normed = self.norm(tgt)
            outputs.append(normed)
            # Refinement reads the normalised output, as the heads do; the un-normalised one goes to the next layer.
            anchors = torch.sigmoid(self.bbox_embed[i](normed) + inverse_sigmoid(anchors))
        return outputs, used_anchors


def rot6d_to_rotmat_interleaved(x: torch.Tensor) -> torch.Tensor:
    """SAT-HMR's 6D layout: ``[..., 6]`` read as a ``(3, 2)`` matrix whose columns are a1 = v[0::2] and
    a2 = v[1::2] (not HMR2.0's a1 = v[0:3]); Gram-Schmidt, b3 = b1 x b2, R = [b1 | b2 | b3] as columns."""
    a1, a2 = x[..., 0::2], x[..., 1::2]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, cross3(b1, b2)), dim=-1)
