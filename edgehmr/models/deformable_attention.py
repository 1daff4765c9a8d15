"""Multi-scale deformable attention (Deformable DETR's ``MSDeformAttn``), export-clean.

Every query predicts, per head, level and point, an offset from its reference point and a weight (softmax over
levels x points); the output is the weighted sum of the values bilinearly sampled there (zeros outside the map,
``align_corners=False``). Parameter names follow Deformable DETR (``sampling_offsets``, ``attention_weights``,
``value_proj``, ``output_proj``).

Export rewrites (see the research notes): level shapes are static Python ints, not a tensor iterated in Python;
no data-dependent asserts; every intermediate has rank <= 5 (Core ML's limit) by handling one level at a time.
Two samplers compute the same thing:

- ``grid_sample``: one ``F.grid_sample`` per level (ONNX GridSample, OpenVINO GridSample, Core ML resample,
  TensorRT IGridSampleLayer);
- ``gather``: the four bilinear corners gathered from the flattened level and blended (Floor, GatherElements,
  Mul, Add) for runtimes without a grid-sample kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SAMPLERS = ("grid_sample", "gather")


class MSDeformAttn(nn.Module):
    def __init__(self, dim: int, levels: int, heads: int, points: int, sampler: str = "grid_sample"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.dim, self.levels, self.heads, self.points = dim, levels, heads, points
        self.sampler = sampler
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    @property
    def sampler(self) -> str:
        return self._sampler

    @sampler.setter
    def sampler(self, name: str) -> None:
        if name not in SAMPLERS:
            raise ValueError(f"unknown deformable-attention sampler {name!r}; choose one of {SAMPLERS}")
        self._sampler = name

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                level_shapes: tuple[tuple[int, int], ...]) -> torch.Tensor:
        """``query [B, Lq, D]``, ``reference_points [B, Lq, levels, 2]`` (x, y in [0, 1]), ``value [B, S, D]``
        (levels flattened row-major and concatenated, ``S = sum(h * w)``) -> ``[B, Lq, D]``."""
        batch, num_q, _ = query.shape
        heads, points, head_dim = self.heads, self.points, self.dim // self.heads
        value = self.value_proj(value)
        offsets = self.sampling_offsets(query).reshape(batch, num_q, heads, self.levels, points * 2)
        weights = torch.softmax(self.attention_weights(query).reshape(batch, num_q, heads, self.levels * points), -1)
        weights = weights.reshape(batch, num_q, heads, self.levels, points)
        out = None
        start = 0
        for level, (height, width) in enumerate(level_shapes):
            # [B, h*w, heads*d] -> [B*heads, d, h, w]
            value_l = value[:, start:start + height * width].reshape(batch, height * width, heads, head_dim)
            value_l = value_l.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
            start += height * width
            # sampling locations [B, Lq, heads, P, 2] -> [B*heads, Lq, P, 2], normalised by the level's (w, h)
            normaliser = torch.tensor([1.0 / width, 1.0 / height], dtype=query.dtype, device=query.device)
            loc = reference_points[:, :, None, level:level + 1, :] + \
                offsets[:, :, :, level].reshape(batch, num_q, heads, points, 2) * normaliser
            loc = loc.permute(0, 2, 1, 3, 4).reshape(batch * heads, num_q, points, 2)
            sampled = self._sample(value_l, loc)  # [B*heads, d, Lq, P]
            w = weights[:, :, :, level].permute(0, 2, 1, 3).reshape(batch * heads, 1, num_q, points)
            term = (sampled * w).sum(-1)  # [B*heads, d, Lq]
            out = term if out is None else out + term
        out = out.reshape(batch, heads * head_dim, num_q).transpose(1, 2)
        return self.output_proj(out)

    def _sample(self, value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        # CPU torch's float16 grid_sampler returns inf/NaN at in-range points (torch 2.13); the same blend written
        # out runs in float16 there. Only the Core ML fp16 simulation runs this module in float16 on a CPU.
        cpu_half = value.dtype == torch.float16 and value.device.type == "cpu"
        if self.sampler == "grid_sample" and not cpu_half:
            return F.grid_sample(value, 2 * loc - 1, mode="bilinear", padding_mode="zeros", align_corners=False)
        return bilinear_gather(value, loc)


def bilinear_gather(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """``grid_sample(value, 2 * loc - 1, bilinear, zeros, align_corners=False)`` without grid_sample:
    ``value [N, C, H, W]``, ``loc [N, Q, P, 2]`` in [0, 1] (x, y) -> ``[N, C, Q, P]``."""
    n, channels, height, width = value.shape
    _, num_q, points, _ = loc.shape
    x = loc[..., 0] * width - 0.5  # pixel centres at integer coordinates
    y = loc[..., 1] * height - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    flat = value.reshape(n, channels, height * width)
    out = None
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xc, yc = x0 + dx, y0 + dy
            inside = ((xc >= 0) & (xc <= width - 1) & (yc >= 0) & (yc <= height - 1)).to(value.dtype)
            index = (yc.clamp(0, height - 1) * width + xc.clamp(0, width - 1)).to(torch.int64)
            index = index.reshape(n, 1, num_q * points).expand(n, channels, num_q * points)
            corner = torch.gather(flat, 2, index).reshape(n, channels, num_q, points)
            term = corner * (wx * wy * inside).reshape(n, 1, num_q, points)
            out = term if out is None else out + term
    return out


def init_msdeform_attn(attn: MSDeformAttn, std: float = 0.02) -> None:
    """Deformable DETR's initialisation (points on rings around the reference, one direction per head), plus
    small seeded weights on the offset and weight predictors so untrained queries look at different places."""
    thetas = torch.arange(attn.heads, dtype=torch.float32) * (2.0 * math.pi / attn.heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).reshape(attn.heads, 1, 1, 2)
    grid = grid.repeat(1, attn.levels, attn.points, 1)
    for i in range(attn.points):
        grid[:, :, i, :] *= i + 1
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(grid.reshape(-1))
    nn.init.normal_(attn.sampling_offsets.weight, std=std)
    nn.init.normal_(attn.attention_weights.weight, std=std)
    nn.init.zeros_(attn.attention_weights.bias)
    for proj in (attn.value_proj, attn.output_proj):
        nn.init.xavier_uniform_(proj.weight)
        nn.init.zeros_(proj.bias)
