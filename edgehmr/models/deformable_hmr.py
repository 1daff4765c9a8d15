"""DeformableHMR: ViTPose features at two depths, JBU-upsampled, decoded by multi-scale deformable attention.

After "Deformable Transformer with Feature Upsampling for Human Mesh Recovery" / DeforHMR (Heo et al., 3DV 2025):
the ViTPose encoder's tokens at the middle and the last block (blocks 16 and 32 of ViT-H; the same relative
depths for S/B/L), each upsampled by learned joint bilateral upsamplers (FeatUp JBU) under the input crop, feed a
Deformable-DETR decoder with 26 queries (24 joint rotations, 1 shape, 1 camera) read out by three linears, added
to the mean SMPL parameters (one iterative-error-feedback round, as HMR2.0's head with ``IEF_ITERS = 1``).
Outputs are HMR2.0's, so validation, ``--with-mesh`` and the apps treat it as an HMR model.

The published code is no longer reachable, so the checkpoint layout and the decoder sizes are ours (Deformable
DETR's defaults where the paper gives none: 256 wide, 8 heads, 4 points per head and level, 6 post-norm layers,
1024-wide ReLU feed-forward):

- ``backbone.*``: the ViTPose / 4D-Humans ViT (an HMR2.0 or ViTPose backbone loads as is);
- ``head.input_proj.{level}.{0: 1x1 conv C -> 256, 1: GroupNorm(32)}`` (Deformable DETR's names);
- ``head.upsamplers.{level}.up{k}.*``, ``head.upsamplers.{level}.fixup_proj.1.*`` (FeatUp's ``JBUStack`` names,
  ``log2(factor)`` stages; absent at x1);
- ``head.query_embed.weight [26, 512]`` (query position | content), ``head.reference_points.*``,
  ``head.layers.{i}.{self_attn.in_proj_*, self_attn.out_proj, norm2, cross_attn.*, norm1, linear1, linear2, norm3}``
  (Deformable DETR's ``DeformableTransformerDecoderLayer`` names);
- ``head.decpose [6 <- 256]`` (shared by the 24 joint queries), ``head.decshape``, ``head.deccam`` and the mean
  buffers ``head.init_body_pose / init_betas / init_cam`` (HMR2.0's names).

reason for projecting before upsampling: the JBU filter is the same for every channel and the 1x1 projection is
per pixel, so they commute; upsampling 256 channels instead of the ViT's 384-1280 costs 256/C as much.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgehmr.models._init import init_linear_or_norm
from edgehmr.models._registry import ModelInfo, register
from edgehmr.models.attention import attend, split_fused
from edgehmr.models.deformable_attention import SAMPLERS, MSDeformAttn, init_msdeform_attn
from edgehmr.models.geometry import cam_crop_to_translation, rot6d_to_rotmat
from edgehmr.models.hmr2 import HMR2_OUTPUTS, IMAGE_INPUT, filter_4dhumans_checkpoint
from edgehmr.models.hmr2_head import NUM_JOINTS, init_smpl_readouts
from edgehmr.models.jbu import JBUStack
from edgehmr.models.vit import GRID, VIT_SIZES, ViT, ViTConfig, init_vit_weights
from edgehmr.preprocess import HMR2_CROP

# Measured with ExecuTorch 1.5.1 (converters/executorch.py's torchao PT2E + XNNPACK dynamic-INT8 path).
UNSUPPORTED = {
    "executorch/int8": "XNNPACK's partitioner finds a dependency cycle in the dynamically quantized graph "
                       "(ExecuTorch 1.5.1; pytorch/executorch#18397 fixes one such cycle). Use executorch fp32, or "
                       "INT8 on onnx / openvino / tensorrt.",
}
FACTORS = (1, 2, 4, 8)
DEFAULT_FACTOR = 4  # the paper's best
NUM_QUERIES = NUM_JOINTS + 2  # 24 joint rotations, shape, camera


@dataclass(frozen=True)
class DecoderConfig:
    dim: int = 256
    heads: int = 8
    points: int = 4
    layers: int = 6
    ffn: int = 1024
    levels: int = 2
    groups: int = 32  # GroupNorm after each level's projection


class SelfAttention(nn.Module):
    """Self-attention over the queries with ``nn.MultiheadAttention``'s parameter names, written as plain
    matmuls (``edgehmr.models.attention``) so every target sees the same graph."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, qk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        dim = v.shape[-1]
        # reason: slicing the fused weight makes it a computed tensor, which XNNPACK does not delegate; projecting
        # both inputs with the whole constant weight and slicing the outputs costs 26 tokens' worth of extra MACs.
        q, k, _ = split_fused(F.linear(qk, self.in_proj_weight, self.in_proj_bias), 3)
        v = split_fused(F.linear(v, self.in_proj_weight, self.in_proj_bias), 3)[2]
        return self.out_proj(attend(q, k, v, self.heads, (dim // self.heads) ** -0.5, scale_query=True))


class DecoderLayer(nn.Module):
    """Deformable DETR's decoder layer: self-attention, deformable cross-attention, feed-forward; post-norm."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cross_attn = MSDeformAttn(cfg.dim, cfg.levels, cfg.heads, cfg.points)
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.self_attn = SelfAttention(cfg.dim, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.linear1 = nn.Linear(cfg.dim, cfg.ffn)
        self.linear2 = nn.Linear(cfg.ffn, cfg.dim)
        self.norm3 = nn.LayerNorm(cfg.dim)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, reference_points: torch.Tensor,
                value: torch.Tensor, level_shapes: tuple[tuple[int, int], ...]) -> torch.Tensor:
        tgt = self.norm2(tgt + self.self_attn(tgt + query_pos, tgt))
        tgt = self.norm1(tgt + self.cross_attn(tgt + query_pos, reference_points, value, level_shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class DeformableSMPLHead(nn.Module):
    """Two ``[B, C, 16, 12]`` feature maps + the crop (JBU guidance) -> rotation matrices, betas, camera."""

    def __init__(self, context_dim: int, factor: int, cfg: DecoderConfig = DecoderConfig()):
        super().__init__()
        if factor not in FACTORS:
            raise ValueError(f"upsampling factor must be one of {FACTORS}, got {factor}")
        self.cfg, self.factor = cfg, factor
        self.level_shapes = tuple((GRID[0] * factor, GRID[1] * factor) for _ in range(cfg.levels))
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(context_dim, cfg.dim, 1), nn.GroupNorm(cfg.groups, cfg.dim))
            for _ in range(cfg.levels))
        self.upsamplers = nn.ModuleList(JBUStack(cfg.dim, factor) for _ in range(cfg.levels)) if factor > 1 else None
        self.query_embed = nn.Embedding(NUM_QUERIES, 2 * cfg.dim)
        self.reference_points = nn.Linear(cfg.dim, 2)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.decpose = nn.Linear(cfg.dim, 6)
        self.decshape = nn.Linear(cfg.dim, 10)
        self.deccam = nn.Linear(cfg.dim, 3)
        self.register_buffer("init_body_pose", torch.zeros(1, NUM_JOINTS * 6))
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.zeros(1, 3))

    def set_sampler(self, sampler: str) -> None:
        """``grid_sample`` (default) or ``gather``: see ``edgehmr.models.deformable_attention``."""
        for layer in self.layers:
            layer.cross_attn.sampler = sampler

    def value_maps(self, features: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """Projected (and upsampled) levels, flattened row-major and concatenated: ``[B, sum(h*w), dim]``."""
        levels = []
        for i, feat in enumerate(features):
            x = self.input_proj[i](feat)
            if self.upsamplers is not None:
                x = self.upsamplers[i](x, image)
            levels.append(x.flatten(2).transpose(1, 2))
        return torch.cat(levels, dim=1)

    def forward(self, features: list[torch.Tensor], image: torch.Tensor):
        batch, dim = image.shape[0], self.cfg.dim
        value = self.value_maps(features, image)
        embed = self.query_embed.weight
        query_pos = embed[:, :dim].reshape(1, NUM_QUERIES, dim).expand(batch, NUM_QUERIES, dim)
        tgt = embed[:, dim:].reshape(1, NUM_QUERIES, dim).expand(batch, NUM_QUERIES, dim)
        refs = torch.sigmoid(self.reference_points(query_pos))  # [B, 26, 2]; every level is the whole crop
        refs = refs[:, :, None, :].expand(batch, NUM_QUERIES, self.cfg.levels, 2)
        for layer in self.layers:
            tgt = layer(tgt, query_pos, refs, value, self.level_shapes)
        pose6d = self.decpose(tgt[:, :NUM_JOINTS]) + self.init_body_pose.reshape(1, NUM_JOINTS, 6)
        betas = self.decshape(tgt[:, NUM_JOINTS]) + self.init_betas
        cam = self.deccam(tgt[:, NUM_JOINTS + 1]) + self.init_cam
        return rot6d_to_rotmat(pose6d), betas, cam


def tap_depths(depth: int) -> tuple[int, int]:
    """Middle and last block (16 and 32 of ViT-H's 32)."""
    return depth // 2, depth


class DeformableHMR(nn.Module):
    def __init__(self, vit: ViTConfig, factor: int = DEFAULT_FACTOR, decoder: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.taps = tap_depths(vit.depth)
        self.backbone = ViT(vit)
        self.head = DeformableSMPLHead(vit.embed_dim, factor, decoder)

    def set_sampler(self, sampler: str) -> None:
        self.head.set_sampler(sampler)

    @property
    def sampler(self) -> str:
        return self.head.layers[0].cross_attn.sampler

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tokens = self.backbone.tapped_tokens(image, self.taps)
        batch, _, width = tokens[0].shape
        features = [t.transpose(1, 2).reshape(batch, width, GRID[0], GRID[1]) for t in tokens]
        rotmats, betas, cam = self.head(features, image)
        return rotmats[:, :1], rotmats[:, 1:], betas, cam, cam_crop_to_translation(cam)


def init_deformable_hmr(model: DeformableHMR) -> None:
    """Seeded "untrained" weights: the ViT as for HMR2.0; Deformable DETR's decoder init (xavier projections,
    ring-shaped sampling offsets) with small random offset/weight predictors so queries differ; FeatUp's JBU
    init (PyTorch's conv defaults, unit temperature and sigma); HMR2.0's plausible SMPL readouts."""
    init_vit_weights(model.backbone)
    head = model.head
    for m in head.modules():
        if init_linear_or_norm(m):
            continue
        if isinstance(m, SelfAttention):
            nn.init.xavier_uniform_(m.in_proj_weight)
            nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, MSDeformAttn):
            init_msdeform_attn(m)
    for proj in head.input_proj:
        nn.init.xavier_uniform_(proj[0].weight)
        nn.init.zeros_(proj[0].bias)
    nn.init.normal_(head.query_embed.weight)
    nn.init.xavier_uniform_(head.reference_points.weight)
    nn.init.zeros_(head.reference_points.bias)
    init_smpl_readouts(head)


def deformable_info(name: str, description: str, vit: ViTConfig, factor: int,
                    decoder: DecoderConfig = DecoderConfig(), test_only: bool = False) -> ModelInfo:
    return ModelInfo(
        name=name,
        family="hmr2",
        description=description,
        build=lambda: DeformableHMR(vit, factor, decoder),
        init_weights=init_deformable_hmr,
        filter_checkpoint=filter_4dhumans_checkpoint,
        crop=HMR2_CROP,
        inputs=(IMAGE_INPUT,),
        outputs=HMR2_OUTPUTS,
        checkpoint_layout="edgehmr DeformableHMR layout: backbone.* (ViTPose ViT), head.* "
                          "(see edgehmr.models.deformable_hmr)",
        recipe="deformable-hmr" if factor > 1 else "deformable-hmr-x1",
        samplers=SAMPLERS,
        unsupported_targets=UNSUPPORTED,
        test_only=test_only,
    )


def _register() -> None:
    for size in ("s", "b", "l", "h"):
        taps = tap_depths(VIT_SIZES[size].depth)
        for factor in FACTORS:
            suffix = "" if factor == DEFAULT_FACTOR else f"-x{factor}"
            up = "no upsampling" if factor == 1 else f"JBU x{factor}"
            register(deformable_info(
                f"deformable-hmr-vit-{size}{suffix}",
                f"DeformableHMR on ViTPose ViT-{size.upper()} (blocks {taps[0]}+{taps[1]}, {up})",
                VIT_SIZES[size], factor))


_register()
