"""SAT-HMR, stage 1: the static half of the model (everything up to the scale map).

SAT-HMR (CVPR 2025) splits naturally at the token selection. Stage 1 is dense and static for a given canvas:
low-res tokens of the whole image (28-px cells), three DINOv2 blocks, and the scale head, which gives every cell a
person confidence and a scale. The host then selects and buckets tokens (:mod:`edgehmr.bucketing`), and stage 2
(high-res branch, 9 shared blocks, DAB-DETR decoder; not implemented yet) runs on fixed-size buffers.

Parameter names follow the published checkpoint (``encoder_patch_proj.{0,1}``, ``encoder_cr_token``,
``encoder_pos_embeds``, ``encoder.additional_blocks.{0..2}``, ``enc_inter_norm``, ``scale_head.layers.{0..3}``),
so the published state dict's stage-1 subset loads strictly.

Export-clean rewrites of the reference code (facts: ../shared/research/sat_hmr_and_seed_models_facts.md, 1.4):
- The reference resizes every 28-px patch bilinearly to 14 px and applies a 14-px conv. An exact 2x bilinear
  downscale with ``align_corners=False`` samples at 2i+0.5, i.e. it is 2x2 average pooling, so this is a dense
  conv over ``avg_pool2d(image, 2)`` (a test checks the equality against the per-patch reference).
- The 46x46 low-res position table (a bicubic resize of the 92x92 table, computed lazily at the first eval call in
  the reference) is a constant buffer here, refreshed whenever weights are loaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgehmr.models.vit import LN_EPS, Block

DIM = 768
HEADS = 12
CANVAS = 1288
PATCH = 14
LOW_RES_CELL = 28
POS_GRID = CANVAS // PATCH  # 92: the high-res position table
LOW_RES_GRID = CANVAS // LOW_RES_CELL  # 46
EXTRA_BLOCKS = 3  # N_lr: the "additional" blocks that run on low-res tokens only


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DinoBlock(Block):
    """DINOv2 ViT block: the ViT block with LayerScale on both residual branches."""

    def __init__(self, dim: int = DIM, num_heads: int = HEADS, mlp_ratio: float = 4.0):
        super().__init__(dim, num_heads, mlp_ratio)
        self.ls1 = LayerScale(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), key_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))


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


class _Encoder(nn.Module):
    """Holds the stage-1 blocks under the published name ``encoder.additional_blocks``."""

    def __init__(self):
        super().__init__()
        self.additional_blocks = nn.ModuleList(DinoBlock() for _ in range(EXTRA_BLOCKS))


def low_res_positions(table: torch.Tensor) -> torch.Tensor:
    """``[92, 92, C]`` table -> ``[46, 46, C]``, the reference's bicubic resize (no antialias)."""
    grid = F.interpolate(table.permute(2, 0, 1)[None], size=(LOW_RES_GRID, LOW_RES_GRID), mode="bicubic",
                         align_corners=False, antialias=False)
    return grid[0].permute(1, 2, 0)


class SatStage1(nn.Module):
    """Image ``[B, 3, H, W]`` (H, W multiples of 56, at most 1288) ->
    ``scale_map [B, 2, H/28, W/28]`` (sigmoid: channel 0 confidence, 1 scale),
    ``low_res_tokens [B, H/28 * W/28, 768]`` (after the 3 blocks; row-major cells) and ``cls [B, 768]``."""

    def __init__(self):
        super().__init__()
        self.encoder_patch_proj = nn.ModuleList(nn.Conv2d(3, DIM, PATCH, PATCH) for _ in range(2))  # 0 HR, 1 LR
        self.encoder_cr_token = nn.Parameter(torch.zeros(1, DIM))  # CLS with its position already added
        self.encoder_pos_embeds = nn.Parameter(torch.zeros(POS_GRID, POS_GRID, DIM))
        self.encoder = _Encoder()
        self.enc_inter_norm = nn.LayerNorm(DIM, eps=LN_EPS)
        self.scale_head = MLP(DIM, DIM, 2, 4)
        self.register_buffer("low_res_pos", torch.zeros(LOW_RES_GRID, LOW_RES_GRID, DIM), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_constants())

    @torch.no_grad()
    def refresh_constants(self) -> None:
        self.low_res_pos.copy_(low_res_positions(self.encoder_pos_embeds))

    def forward(self, image: torch.Tensor):
        b, _, h, w = image.shape
        gh, gw = h // LOW_RES_CELL, w // LOW_RES_CELL
        tokens = self.encoder_patch_proj[1](F.avg_pool2d(image, 2)).flatten(2).transpose(1, 2)
        tokens = tokens + self.low_res_pos[:gh, :gw].reshape(1, gh * gw, DIM)
        x = torch.cat([self.encoder_cr_token.expand(b, 1, DIM), tokens], dim=1)
        for block in self.encoder.additional_blocks:
            x = block(x)
        cls, tokens = x[:, 0], x[:, 1:]
        scale = torch.sigmoid(self.scale_head(self.enc_inter_norm(tokens)))
        return scale.transpose(1, 2).reshape(b, 2, gh, gw), tokens, cls


def init_sat_stage1(module: SatStage1) -> None:
    """Seeded weights with the published shapes (tests and demos; real use loads the checkpoint)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    nn.init.trunc_normal_(module.encoder_pos_embeds, std=0.02)
    nn.init.trunc_normal_(module.encoder_cr_token, std=0.02)
    module.refresh_constants()


SHARED_BLOCKS = 12  # encoder.blocks: 0-2 are the high-res branch (N_hr), 3-11 run on the merged sequence (N_sa)
HR_BLOCKS = 3


class SatEncoder(SatStage1):
    """Stage 1 plus the stage-2 encoder on fixed-size (bucketed) token buffers.

    :meth:`encode` takes the host's packed indices (:func:`edgehmr.bucketing.pack`): high-res cells (4 tokens
    each, from a 14-px conv over the cell's full-resolution pixels), then low-res/background tokens gathered
    from stage 1's encoded tokens and their 2x2 max-pool, with an additive key mask for the padding. Returns
    the decoder memory ``[B, 4*hr + other, 768]`` (padding rows are computed but carry no information).
    """

    def __init__(self):
        super().__init__()
        self.encoder.blocks = nn.ModuleList(DinoBlock() for _ in range(SHARED_BLOCKS))
        self.encoder.norm = nn.LayerNorm(DIM, eps=LN_EPS)
        self.feature_proj = nn.Linear(DIM, DIM)
        self.level_embed = nn.Parameter(torch.zeros(3, DIM))  # used by the decoder's memory positions

    def high_res_tokens(self, image: torch.Tensor, hr_cells: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        gh, gw = h // LOW_RES_CELL, w // LOW_RES_CELL
        cells = image.reshape(b, 3, gh, LOW_RES_CELL, gw, LOW_RES_CELL).permute(0, 2, 4, 1, 3, 5)
        cells = cells.reshape(b, gh * gw, 3 * LOW_RES_CELL * LOW_RES_CELL)
        picked = torch.gather(cells, 1, hr_cells[:, :, None].expand(-1, -1, cells.shape[-1]))
        n = hr_cells.shape[1]
        patches = self.encoder_patch_proj[0](picked.reshape(b * n, 3, LOW_RES_CELL, LOW_RES_CELL))  # [bn, C, 2, 2]
        tokens = patches.flatten(2).transpose(1, 2).reshape(b, n * 4, DIM)  # per cell: (0,0),(0,1),(1,0),(1,1)
        y, x = hr_cells // gw, hr_cells % gw
        offsets = torch.tensor([0, 1, POS_GRID, POS_GRID + 1], device=hr_cells.device)
        flat = ((2 * y * POS_GRID + 2 * x)[:, :, None] + offsets).reshape(b, n * 4)
        return tokens + self.encoder_pos_embeds.reshape(-1, DIM)[flat]

    def encode(self, image: torch.Tensor, low_res_tokens: torch.Tensor, cls: torch.Tensor, hr_cells: torch.Tensor,
               other_index: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        gh, gw = h // LOW_RES_CELL, w // LOW_RES_CELL
        n_hr = hr_cells.shape[1] * 4
        zero = memory_mask.new_zeros(b, 1)
        hr = torch.cat([self.encoder_cr_token.expand(b, 1, DIM), self.high_res_tokens(image, hr_cells)], dim=1)
        hr_mask = torch.cat([zero, memory_mask[:, :n_hr]], dim=1)
        for block in self.encoder.blocks[:HR_BLOCKS]:
            hr = block(hr, hr_mask)
        pooled = low_res_tokens.reshape(b, gh // 2, 2, gw // 2, 2, DIM).amax(dim=(2, 4)).reshape(b, -1, DIM)
        source = torch.cat([low_res_tokens, pooled], dim=1)
        others = torch.gather(source, 1, other_index[:, :, None].expand(-1, -1, DIM))
        x = torch.cat([cls[:, None], hr[:, 1:], others], dim=1)
        mask = torch.cat([zero, memory_mask], dim=1)
        for block in self.encoder.blocks[HR_BLOCKS:]:
            x = block(x, mask)
        return self.feature_proj(self.encoder.norm(x[:, 1:]))


def reference_encode(model: SatEncoder, image: torch.Tensor, low_res_tokens: torch.Tensor, cls: torch.Tensor,
                     small: torch.Tensor, low_res: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Dynamic-shape reference for one image (boolean indexing as in the paper, no padding, no masks): the
    bucketed :meth:`SatEncoder.encode` must reproduce its rows. Order: high-res cells, low-res, background."""
    hr_cells = torch.nonzero(small.reshape(-1))[:, 0][None]
    hr = torch.cat([model.encoder_cr_token[None], model.high_res_tokens(image, hr_cells)], dim=1)
    for block in model.encoder.blocks[:HR_BLOCKS]:
        hr = block(hr)
    gh, gw = small.shape
    pooled = low_res_tokens.reshape(1, gh // 2, 2, gw // 2, 2, DIM).amax(dim=(2, 4)).reshape(1, -1, DIM)
    x = torch.cat([cls[:, None], hr[:, 1:], low_res_tokens[:, low_res.reshape(-1)],
                   pooled[:, background.reshape(-1)]], dim=1)
    for block in model.encoder.blocks[HR_BLOCKS:]:
        x = block(x)
    return model.feature_proj(model.encoder.norm(x[:, 1:]))
