"""HMR2.0 (4D-Humans): ViTPose ViT encoder + SMPL transformer-decoder head.

Accepted checkpoint: the 4D-Humans Lightning ``.ckpt`` (``state_dict`` with ``backbone.*`` and ``smpl_head.*``;
``discriminator.*``, ``smpl.*`` and ``initialized`` are training/rendering extras and are dropped). The released
model is ``hmr2-vit-h``; S/B/L are the same architecture on smaller ViTPose backbones (context dim = width).

Input ``image [B, 3, 256, 192]`` (the 4D-Humans 256x256 crop, columns 32..223). The network does not run SMPL;
``--with-mesh`` wraps it with :class:`HMR2WithMesh`.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehmr.models._registry import ModelInfo, TensorInfo, register
from edgehmr.models.geometry import cam_crop_to_translation
from edgehmr.models.hmr2_head import PUBLISHED_HEAD, HeadConfig, SMPLTransformerDecoderHead, init_head_weights
from edgehmr.models.smpl import SMPLLayer
from edgehmr.models.vit import VIT_SIZES, ViT, ViTConfig, init_vit_weights
from edgehmr.preprocess import HMR2_CROP

DROPPED_PREFIXES = ("discriminator.", "smpl.", "initialized")


class HMR2(nn.Module):
    def __init__(self, vit: ViTConfig, head: HeadConfig = PUBLISHED_HEAD):
        super().__init__()
        self.backbone = ViT(vit)
        self.smpl_head = SMPLTransformerDecoderHead(vit.embed_dim, head)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rotmats, betas, cam = self.smpl_head(self.backbone.tokens(image))
        return rotmats[:, :1], rotmats[:, 1:], betas, cam, cam_crop_to_translation(cam)


class HMR2WithMesh(nn.Module):
    """HMR2 + SMPL baked into the graph: also returns body-frame vertices and the 24 SMPL joints."""

    def __init__(self, hmr2: HMR2, smpl: SMPLLayer):
        super().__init__()
        self.hmr2 = hmr2
        self.smpl = smpl

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        global_orient, body_pose, betas, cam, cam_t = self.hmr2(image)
        verts, joints = self.smpl(torch.cat((global_orient, body_pose), dim=1), betas)
        return global_orient, body_pose, betas, cam, cam_t, verts, joints


def filter_4dhumans_checkpoint(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}


def init_hmr2(model: nn.Module) -> None:
    init_vit_weights(model.backbone)
    init_head_weights(model.smpl_head)


HMR2_OUTPUTS = (
    TensorInfo("global_orient", ("B", 1, 3, 3), "root rotation matrix, SMPL body frame -> camera"),
    TensorInfo("body_pose", ("B", 23, 3, 3), "23 body joint rotation matrices (SMPL order, relative to parent)"),
    TensorInfo("betas", ("B", 10), "SMPL shape coefficients"),
    TensorInfo("pred_cam", ("B", 3), "weak-perspective crop camera (s, tx, ty)"),
    TensorInfo("pred_cam_t", ("B", 3), "crop-camera translation (tx, ty, 2*5000/(256*s)), metres"),
)
MESH_OUTPUTS = (
    TensorInfo("vertices", ("B", 6890, 3), "SMPL vertices, body frame, metres"),
    TensorInfo("joints", ("B", 24, 3), "SMPL joints, body frame, metres"),
)
IMAGE_INPUT = TensorInfo("image", ("B", 3, 256, 192), "person crop, see preprocessing")


def hmr2_info(name: str, description: str, vit: ViTConfig, head: HeadConfig = PUBLISHED_HEAD,
              test_only: bool = False) -> ModelInfo:
    return ModelInfo(
        name=name,
        family="hmr2",
        description=description,
        build=lambda: HMR2(vit, head),
        init_weights=init_hmr2,
        filter_checkpoint=filter_4dhumans_checkpoint,
        crop=HMR2_CROP,
        inputs=(IMAGE_INPUT,),
        outputs=HMR2_OUTPUTS,
        checkpoint_layout="4D-Humans Lightning .ckpt: state_dict with backbone.*, smpl_head.*",
        test_only=test_only,
    )


for _size in ("s", "b", "l", "h"):
    register(hmr2_info(f"hmr2-vit-{_size}", f"HMR2.0 on ViTPose ViT-{_size.upper()}"
                       + (" (the released 4D-Humans model)" if _size == "h" else ""), VIT_SIZES[_size]))
