"""SAT-HMR (CVPR 2025): multi-person HMR with scale-adaptive tokens, split into two static-shape stages.

The model splits naturally at the token selection:

- **Stage 1** (:meth:`SatHmr.stage1`, dense and static for a given canvas): low-res tokens of the whole image
  (one per 28-px cell), three DINOv2 blocks and the scale head, which gives every cell a person confidence and
  a scale.
- **Host**: :mod:`edgehmr.bucketing` selects tokens, picks a bucket and packs fixed-size index buffers and
  additive masks.
- **Stage 2** (:meth:`SatHmr.stage2`, static per bucket): high-res tokens of the selected cells (gathered from
  the full-resolution pixels) through the 3-block high-res branch, the merged sequence (CLS, high-res, low-res,
  2x2-max-pooled background) through the 9 shared blocks, then the DAB-DETR decoder
  (:mod:`edgehmr.models.sat_decoder`) and the heads: per query SMPL rotations, betas, camera translation
  (60 degree field of view on the 1288 canvas), box and confidence.

Parameter names follow the published checkpoint (``encoder_patch_proj.{0,1}``, ``encoder_cr_token``,
``encoder_pos_embeds``, ``encoder.{additional_blocks,blocks,norm}``, ``enc_inter_norm``, ``scale_head``,
``feature_proj``, ``level_embed``, ``tgt_embed``, ``refpoint_embed``, ``bbox_embed`` (aliased as
``decoder.decoder.bbox_embed``), ``decoder.decoder.*``, ``{pose,shape}_head.{l}``, ``cam_head``, ``conf_head``,
``mean_pose``, ``mean_shape``), so the published state dict loads strictly once the training-only and SMPL
entries are dropped (:func:`filter_sat_checkpoint`).

Export-clean rewrites of the reference code (facts: ../shared/research/sat_hmr_and_seed_models_facts.md, 1.4-1.13):
- The reference resizes every 28-px patch bilinearly to 14 px and applies a 14-px conv. An exact 2x bilinear
  downscale with ``align_corners=False`` samples at 2i+0.5, i.e. it is 2x2 average pooling, so this is a dense
  conv over ``avg_pool2d(image, 2)`` (a test checks the equality against the per-patch reference).
- Position tables (the 46x46 bicubic resize of the learned 92x92 table, which the reference computes lazily at
  the first eval call, and the decoder's sine tables of the three token levels) are constant buffers, refreshed
  whenever weights are loaded.
- Boolean indexing becomes gathers by the host's fixed-size index buffers; per-image sequence lengths become
  additive key masks. Token order does not matter (positions are added per token, attention is
  permutation-invariant), so the order is high-res, then low-res, then background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgehmr.models.sat_decoder import (MLP, NUM_BETAS, NUM_JOINTS, DabDecoder, grid_positions, inverse_sigmoid,
                                        rot6d_to_rotmat_interleaved)
from edgehmr.models.vit import LN_EPS, Block

CANVAS = 1288  # px: the long side every image is resized to; positions are normalised to it
PATCH = 14
LOW_RES_CELL = 28
POS_GRID = CANVAS // PATCH  # 92: high-res token grid (level 0)
LOW_RES_GRID = CANVAS // LOW_RES_CELL  # 46: low-res token grid (level 1)
BACKGROUND_GRID = LOW_RES_GRID // 2  # 23: pooled background grid (level 2)
FOV_DEGREES = 60.0
FOCAL_PX = CANVAS / (2 * math.tan(math.radians(FOV_DEGREES) / 2))  # ~1115.5 px on the 1288 canvas


@dataclass(frozen=True)
class SatConfig:
    dim: int = 768  # DINOv2 ViT-B/14
    heads: int = 12
    blocks: int = 12  # encoder.blocks: 0..hr_blocks-1 high-res branch, the rest on the merged sequence
    hr_blocks: int = 3  # N_hr
    extra_blocks: int = 3  # N_lr: encoder.additional_blocks on the low-res tokens
    dec_heads: int = 4
    dec_layers: int = 6
    ffn: int = 2048
    queries: int = 50


PUBLISHED = SatConfig()


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DinoBlock(Block):
    """DINOv2 ViT block: the ViT block with LayerScale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__(dim, num_heads, mlp_ratio)
        self.ls1 = LayerScale(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), key_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _Encoder(nn.Module):
    """Holds the DINOv2 blocks under the published names ``encoder.{additional_blocks,blocks,norm}``."""

    def __init__(self, cfg: SatConfig):
        super().__init__()
        self.additional_blocks = nn.ModuleList(DinoBlock(cfg.dim, cfg.heads) for _ in range(cfg.extra_blocks))
        self.blocks = nn.ModuleList(DinoBlock(cfg.dim, cfg.heads) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)


class _DecoderHolder(nn.Module):
    """Published name ``decoder.decoder`` (the DAB-DETR transformer wrapper keeps its decoder one level down)."""

    def __init__(self, decoder: DabDecoder):
        super().__init__()
        self.decoder = decoder


def low_res_positions(table: torch.Tensor) -> torch.Tensor:
    """``[92, 92, C]`` table -> ``[46, 46, C]``, the reference's bicubic resize (no antialias)."""
    grid = F.interpolate(table.permute(2, 0, 1)[None], size=(LOW_RES_GRID, LOW_RES_GRID), mode="bicubic",
                         align_corners=False, antialias=False)
    return grid[0].permute(1, 2, 0)


def cells_of(image: torch.Tensor) -> tuple[int, int]:
    """Low-res grid (rows, cols) of a canvas: static Python ints taken from the input's shape."""
    return image.shape[2] // LOW_RES_CELL, image.shape[3] // LOW_RES_CELL


def high_res_index(hr_cells: torch.Tensor, grid_w: int) -> torch.Tensor:
    """Flat index into the 92x92 grid of the 4 high-res tokens of every cell, in the conv's output order
    (0,0), (0,1), (1,0), (1,1): ``[B, n] -> [B, 4n]``."""
    y, x = torch.div(hr_cells, grid_w, rounding_mode="floor"), hr_cells % grid_w
    offsets = torch.tensor([0, 1, POS_GRID, POS_GRID + 1], device=hr_cells.device)
    return ((2 * y * POS_GRID + 2 * x)[:, :, None] + offsets).reshape(hr_cells.shape[0], -1)


class SatHmr(nn.Module):
    def __init__(self, cfg: SatConfig = PUBLISHED):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.encoder_patch_proj = nn.ModuleList(nn.Conv2d(3, dim, PATCH, PATCH) for _ in range(2))  # 0 HR, 1 LR
        self.encoder_cr_token = nn.Parameter(torch.zeros(1, dim))  # CLS with its position already added
        self.encoder_pos_embeds = nn.Parameter(torch.zeros(POS_GRID, POS_GRID, dim))
        self.encoder = _Encoder(cfg)
        self.enc_inter_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.scale_head = MLP(dim, dim, 2, 4)
        self.feature_proj = nn.Linear(dim, dim)
        self.level_embed = nn.Parameter(torch.zeros(3, dim))

        self.tgt_embed = nn.Embedding(cfg.queries, dim)
        self.refpoint_embed = nn.Embedding(cfg.queries, 4)
        self.bbox_embed = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(cfg.dec_layers))
        self.decoder = _DecoderHolder(DabDecoder(dim, cfg.dec_heads, cfg.ffn, cfg.dec_layers))
        self.decoder.decoder.bbox_embed = self.bbox_embed  # aliased, as published: both key sets are saved
        self.pose_head = nn.ModuleList(MLP(dim, dim, NUM_JOINTS * 6, 6) for _ in range(cfg.dec_layers))
        self.shape_head = nn.ModuleList(MLP(dim, dim, NUM_BETAS, 5) for _ in range(cfg.dec_layers))
        self.cam_head = MLP(dim, dim // 2, 3, 3)
        self.conf_head = nn.Linear(dim, 1)
        self.register_buffer("mean_pose", torch.zeros(NUM_JOINTS * 6))
        self.register_buffer("mean_shape", torch.zeros(NUM_BETAS))

        # Constants derived from the weights or from the canvas geometry (not checkpoint entries).
        self.register_buffer("low_res_pos", torch.zeros(LOW_RES_GRID, LOW_RES_GRID, dim), persistent=False)
        for level, cells in enumerate((POS_GRID, LOW_RES_GRID, BACKGROUND_GRID)):
            self.register_buffer(f"memory_sine_{level}", grid_positions(cells, cells, cells, dim), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_constants())

    @torch.no_grad()
    def refresh_constants(self) -> None:
        self.low_res_pos.copy_(low_res_positions(self.encoder_pos_embeds))

    # ---- stage 1 -----------------------------------------------------------------------------------------
    def stage1(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image ``[B, 3, H, W]`` (H, W multiples of 56, at most 1288) -> ``scale_map [B, 2, H/28, W/28]``
        (sigmoid: channel 0 confidence, 1 scale), ``low_res_tokens [B, H/28 * W/28, C]`` (after the low-res
        blocks; row-major cells) and ``cls [B, C]``."""
        b = image.shape[0]
        gh, gw = cells_of(image)
        dim = self.cfg.dim
        tokens = self.encoder_patch_proj[1](F.avg_pool2d(image, 2)).flatten(2).transpose(1, 2)
        tokens = tokens + self.low_res_pos[:gh, :gw].reshape(1, gh * gw, dim)
        x = torch.cat([self.encoder_cr_token.expand(b, 1, dim), tokens], dim=1)
        for block in self.encoder.additional_blocks:
            x = block(x)
        cls, tokens = x[:, 0], x[:, 1:]
        scale = torch.sigmoid(self.scale_head(self.enc_inter_norm(tokens)))
        return scale.transpose(1, 2).reshape(b, 2, gh, gw), tokens, cls

    # ---- stage 2 -----------------------------------------------------------------------------------------
    def high_res_tokens(self, image: torch.Tensor, hr_cells: torch.Tensor) -> torch.Tensor:
        """4 tokens per selected cell from a 14-px conv over the cell's full-resolution pixels, plus positions."""
        b = image.shape[0]
        gh, gw = cells_of(image)
        dim, n = self.cfg.dim, hr_cells.shape[1]
        # Cells as rows of pixels, in rank <= 5 steps (Core ML's limit).
        px = LOW_RES_CELL * LOW_RES_CELL
        cells = image.reshape(b * 3 * gh, LOW_RES_CELL, gw, LOW_RES_CELL).permute(0, 2, 1, 3)
        cells = cells.reshape(b, 3, gh, gw, px).permute(0, 2, 3, 1, 4).reshape(b, gh * gw, 3 * px)
        picked = torch.gather(cells, 1, hr_cells[:, :, None].expand(-1, -1, cells.shape[-1]))
        patches = self.encoder_patch_proj[0](picked.reshape(b * n, 3, LOW_RES_CELL, LOW_RES_CELL))  # [bn, C, 2, 2]
        tokens = patches.flatten(2).transpose(1, 2).reshape(b, n * 4, dim)
        return tokens + self.encoder_pos_embeds.reshape(-1, dim)[high_res_index(hr_cells, gw)]

    def memory_positions(self, hr_cells: torch.Tensor, other_index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Decoder memory positions in memory order: level sine table + level embedding per token."""
        gh, gw = grid
        dim = self.cfg.dim
        hr = self.memory_sine_0.reshape(-1, dim)[high_res_index(hr_cells, gw)] + self.level_embed[0]
        source = torch.cat([self.memory_sine_1[:gh, :gw].reshape(-1, dim) + self.level_embed[1],
                            self.memory_sine_2[:gh // 2, :gw // 2].reshape(-1, dim) + self.level_embed[2]])
        return torch.cat([hr, source[other_index]], dim=1)

    def encode(self, image: torch.Tensor, low_res_tokens: torch.Tensor, cls: torch.Tensor, hr_cells: torch.Tensor,
               hr_mask: torch.Tensor, other_index: torch.Tensor, other_mask: torch.Tensor) -> torch.Tensor:
        """Decoder memory ``[B, 4*n_hr + n_other, C]`` from the packed buffers (padding rows carry no
        information: every attention masks them as keys)."""
        b, dim = image.shape[0], self.cfg.dim
        gh, gw = cells_of(image)
        zero = hr_mask.new_zeros(b, 1)
        token_mask = per_token(hr_mask)
        hr = torch.cat([self.encoder_cr_token.expand(b, 1, dim), self.high_res_tokens(image, hr_cells)], dim=1)
        hr_keys = torch.cat([zero, token_mask], dim=1)
        for block in self.encoder.blocks[:self.cfg.hr_blocks]:
            hr = block(hr, hr_keys)
        pooled = background_tokens(low_res_tokens, (gh, gw))
        source = torch.cat([low_res_tokens, pooled], dim=1)
        others = torch.gather(source, 1, other_index[:, :, None].expand(-1, -1, dim))
        x = torch.cat([cls[:, None], hr[:, 1:], others], dim=1)
        keys = torch.cat([zero, token_mask, other_mask], dim=1)
        for block in self.encoder.blocks[self.cfg.hr_blocks:]:
            x = block(x, keys)
        return self.feature_proj(self.encoder.norm(x[:, 1:]))

    def decoder_states(self, memory: torch.Tensor, memory_pos: torch.Tensor,
                       memory_mask: torch.Tensor | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(normalised output of every decoder layer ``[B, Q, C]``, the anchor each layer started from)."""
        b = memory.shape[0]
        # repeat, not expand: ExecuTorch folds parameter-only ops into constants and rejects 0-stride ones.
        tgt = self.tgt_embed.weight[None].repeat(b, 1, 1)
        anchors = torch.sigmoid(self.refpoint_embed.weight)[None].repeat(b, 1, 1)
        return self.decoder.decoder(tgt, anchors, memory, memory_pos, memory_mask)

    def pose_6d(self, states: list[torch.Tensor]) -> torch.Tensor:
        """``[B, Q, 144]``: the mean pose plus every layer's residual (SAT-HMR's interleaved 6D layout)."""
        return self.mean_pose + sum(head(h) for head, h in zip(self.pose_head, states))

    def decode(self, memory: torch.Tensor, memory_pos: torch.Tensor,
               memory_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """-> ``global_orient [B,Q,1,3,3]``, ``body_pose [B,Q,23,3,3]``, ``betas [B,Q,10]``,
        ``transl [B,Q,3]`` (camera frame, m), ``boxes [B,Q,4]`` (cx, cy, w, h over the 1288 canvas),
        ``confidence [B,Q]``."""
        b = memory.shape[0]
        hs, used = self.decoder_states(memory, memory_pos, memory_mask)
        betas = self.mean_shape + sum(head(h) for head, h in zip(self.shape_head, hs))
        rotmats = rot6d_to_rotmat_interleaved(self.pose_6d(hs).reshape(b, -1, NUM_JOINTS, 6))
        boxes = torch.sigmoid(self.bbox_embed[-1](hs[-1]) + inverse_sigmoid(used[-1]))
        confidence = torch.sigmoid(self.conf_head(hs[-1]))[..., 0]
        return rotmats[:, :, :1], rotmats[:, :, 1:], betas, camera_translation(self.cam_head(hs[-1])), boxes, confidence

    def stage2(self, image: torch.Tensor, low_res_tokens: torch.Tensor, cls: torch.Tensor, hr_cells: torch.Tensor,
               hr_mask: torch.Tensor, other_index: torch.Tensor, other_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory = self.encode(image, low_res_tokens, cls, hr_cells, hr_mask, other_index, other_mask)
        memory_pos = self.memory_positions(hr_cells, other_index, cells_of(image))
        return self.decode(memory, memory_pos, torch.cat([per_token(hr_mask), other_mask], dim=1))


def background_tokens(low_res_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Every 2x2 block of encoded low-res tokens max-pooled: ``[B, H*W, C] -> [B, H/2 * W/2, C]`` (rank <= 5)."""
    b, _, dim = low_res_tokens.shape
    gh, gw = grid
    blocks = low_res_tokens.reshape(b * gh // 2, 2, gw // 2, 2, dim).amax(dim=(1, 3))
    return blocks.reshape(b, -1, dim)


def per_token(hr_mask: torch.Tensor) -> torch.Tensor:
    """Per-cell mask ``[B, n]`` -> per high-res token ``[B, 4n]`` (a cell's 4 tokens are adjacent)."""
    return hr_mask[:, :, None].expand(-1, -1, 4).reshape(hr_mask.shape[0], -1)


def camera_translation(cam: torch.Tensor) -> torch.Tensor:
    """SAT-HMR's camera ``(c_x, c_y, c_s)`` -> translation: s = 2 sigmoid(c_s) + 1e-6, t = (c_x/s, c_y/s,
    2 f / (s * 1288)) with the fixed 60 degree field of view."""
    s = 2 * torch.sigmoid(cam[..., 2:3]) + 1e-6
    return torch.cat([cam[..., :2] / s, 2 * FOCAL_PX / (s * CANVAS)], dim=-1)


STAGE1_INPUTS = ["image"]
STAGE1_OUTPUTS = ["scale_map", "low_res_tokens", "cls"]
STAGE2_INPUTS = ["image", "low_res_tokens", "cls", "hr_cells", "hr_mask", "other_index", "other_mask"]
STAGE2_OUTPUTS = ["global_orient", "body_pose", "betas", "transl", "boxes", "confidence"]


class Stage1Graph(nn.Module):
    """What stage-1 artifacts export (shares the model's parameters)."""

    def __init__(self, model: SatHmr):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model.stage1(image)


class Stage2Graph(nn.Module):
    """What stage-2 artifacts export, one static shape per bucket (shares the model's parameters)."""

    def __init__(self, model: SatHmr):
        super().__init__()
        self.model = model

    def forward(self, image, low_res_tokens, cls, hr_cells, hr_mask, other_index, other_mask):
        return self.model.stage2(image, low_res_tokens, cls, hr_cells, hr_mask, other_index, other_mask)


def init_sat_hmr(model: SatHmr) -> None:
    """Seeded weights with the published shapes (tests and demos; real use loads the checkpoint). Box and
    confidence heads start as published (last box layer zero, confidence prior 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    for name in ("encoder_pos_embeds", "encoder_cr_token", "level_embed", "tgt_embed.weight"):
        nn.init.trunc_normal_(model.get_parameter(name), std=0.02)
    with torch.no_grad():
        model.refpoint_embed.weight.uniform_(-2.0, 2.0)  # unsigmoided anchors spread over the canvas
        model.mean_pose.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(NUM_JOINTS))  # identity, interleaved
        model.mean_shape.zero_()
    for mlp in model.bbox_embed:
        nn.init.zeros_(mlp.layers[-1].weight)
        nn.init.zeros_(mlp.layers[-1].bias)
    nn.init.constant_(model.conf_head.bias, -math.log(99.0))
    model.refresh_constants()


# Published entries that this model does not hold: training-only denoising, the SMPL layer's buffers and
# lookup tables for the reference's z-ordering / camera intrinsics (computed on the host here).
_DROPPED_PREFIXES = ("dn_enc.", "human_model.")
_DROPPED_KEYS = {"cam_intrinsics", "z_order_map", "y_coords", "x_coords"}


def filter_sat_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED_KEYS}
