"""ViTPose (classic decoder): ViT encoder + deconvolution heatmap head, 17 COCO keypoints.

Accepted checkpoint: the mmpose ``.pth`` (``state_dict`` with ``backbone.*`` and ``keypoint_head.*``).
Multi-dataset files also carry ``backbone.cls_token`` (unused) and ``associate_keypoint_heads.*``; both are
dropped. ViTPose++ (MoE) files must first be split per dataset.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehmr.models._registry import ModelInfo, TensorInfo, register
from edgehmr.models.vit import VIT_SIZES, ViT, ViTConfig, init_vit_weights
from edgehmr.models.vitpose_head import DECONV_CHANNELS, TopdownHeatmapSimpleHead, init_heatmap_head_weights
from edgehmr.preprocess import VITPOSE_CROP

DROPPED_PREFIXES = ("backbone.cls_token", "associate_keypoint_heads.")


class ViTPose(nn.Module):
    def __init__(self, vit: ViTConfig, deconv_channels: int = DECONV_CHANNELS):
        super().__init__()
        self.backbone = ViT(vit)
        self.keypoint_head = TopdownHeatmapSimpleHead(vit.embed_dim, deconv_channels=deconv_channels)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.keypoint_head(self.backbone(image)),)


def filter_vitpose_checkpoint(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}


def init_vitpose(model: nn.Module) -> None:
    init_vit_weights(model.backbone)
    init_heatmap_head_weights(model.keypoint_head)


HEATMAP_INPUT = TensorInfo("image", ("B", 3, 256, 192), "person crop, see preprocessing")
HEATMAP_OUTPUT = TensorInfo("heatmaps", ("B", 17, 64, 48), "COCO keypoint heatmaps; decode with DARK-UDP")


def vitpose_info(name: str, description: str, vit: ViTConfig, deconv_channels: int = DECONV_CHANNELS,
                 test_only: bool = False) -> ModelInfo:
    return ModelInfo(
        name=name,
        family="vitpose",
        description=description,
        build=lambda: ViTPose(vit, deconv_channels),
        init_weights=init_vitpose,
        filter_checkpoint=filter_vitpose_checkpoint,
        crop=VITPOSE_CROP,
        inputs=(HEATMAP_INPUT,),
        outputs=(HEATMAP_OUTPUT,),
        checkpoint_layout="mmpose .pth: state_dict with backbone.*, keypoint_head.*",
        test_only=test_only,
    )


for _size in ("s", "b", "l", "h"):
    register(vitpose_info(f"vitpose-{_size}", f"ViTPose-{_size.upper()} top-down 2D pose, 17 COCO keypoints",
                          VIT_SIZES[_size]))
