"""ViTPose (classic decoder): ViT encoder + deconvolution heatmap head, 17 COCO keypoints.

Accepted checkpoint: the mmpose ``.pth`` (``state_dict`` with ``backbone.*`` and ``keypoint_head.*``).
Multi-dataset files also carry ``backbone.cls_token`` (unused) and ``associate_keypoint_heads.*``; both are
dropped. ViTPose++ (MoE) files must first be split per dataset.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehmr.models._registry import ModelInfo, TensorInfo, register
from edgehmr.models.vit import VIT_SIZES, ViT, init_vit_weights
from edgehmr.models.vitpose_head import TopdownHeatmapSimpleHead, init_heatmap_head_weights
from edgehmr.preprocess import VITPOSE_CROP

DROPPED_PREFIXES = ("backbone.cls_token", "associate_keypoint_heads.")


class ViTPose(nn.Module):
    def __init__(self, size: str):
        super().__init__()
        self.backbone = ViT(VIT_SIZES[size])
        self.keypoint_head = TopdownHeatmapSimpleHead(VIT_SIZES[size].embed_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.keypoint_head(self.backbone(image)),)


def filter_vitpose_checkpoint(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}


def _init(model: nn.Module) -> None:
    init_vit_weights(model.backbone)
    init_heatmap_head_weights(model.keypoint_head)


for _size in ("s", "b", "l", "h"):
    register(ModelInfo(
        name=f"vitpose-{_size}",
        family="vitpose",
        description=f"ViTPose-{_size.upper()} top-down 2D pose, 17 COCO keypoints",
        build=lambda s=_size: ViTPose(s),
        init_weights=_init,
        filter_checkpoint=filter_vitpose_checkpoint,
        crop=VITPOSE_CROP,
        inputs=(TensorInfo("image", ("B", 3, 256, 192), "person crop, see preprocessing"),),
        outputs=(TensorInfo("heatmaps", ("B", 17, 64, 48), "COCO keypoint heatmaps; decode with DARK-UDP"),),
        checkpoint_layout="mmpose .pth: state_dict with backbone.*, keypoint_head.*",
    ))
