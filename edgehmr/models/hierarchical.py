"""Truncated hierarchical encoders (Swin, GroupMixFormer, VMamba) for HMR2.0 and ViTPose heads.

After "On the Use of Hierarchical Vision Foundation Models for Low-Cost Human Mesh Recovery and Pose Estimation"
(Tarashima et al., 2025): the first two or three stages of a hierarchical encoder carry what HMR and pose need, at
a fraction of the cost. Every variant hands its head the 16x12 grid a 256x192 ViT/16 would:

- ``-s2``: stage-2 output (stride 8, 32x24) + a 3x3 stride-2 conv -> 16x12;
- ``-s3``: stage-3 output (stride 16) as is;
- ``-s4``: stage-4 output (stride 32, 8x6) + a 2x2 stride-2 transposed conv -> 16x12.

The stage output is layer-normalised over channels first (the per-output norms of detection/pose Swin backbones);
channels stay the stage's, so the HMR2.0 decoder's context dim is the stage width and the heatmap head's input
too. Not verified against the paper's code (not readable here): the adapters' kernel sizes and the norm.

Checkpoint layout (ours, since the paper's repository could not be read): ``backbone.*`` in the family's published
classification layout (so an ImageNet backbone maps onto it key for key; stages past the truncation, the
classifier and size-dependent buffers are dropped on load), ``neck.norm.*``, ``neck.proj.*`` (S2/S4), and the
head's own layout: ``smpl_head.*`` (4D-Humans) or ``keypoint_head.*`` (mmpose).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from edgehmr.models._registry import ModelInfo, register
from edgehmr.models.geometry import cam_crop_to_translation
from edgehmr.models.hmr2 import HMR2_OUTPUTS, IMAGE_INPUT
from edgehmr.models.hmr2_head import PUBLISHED_HEAD, HeadConfig, SMPLTransformerDecoderHead, init_head_weights
from edgehmr.models.vitpose import HEATMAP_INPUT, HEATMAP_OUTPUT
from edgehmr.models.vitpose_head import DECONV_CHANNELS, TopdownHeatmapSimpleHead, init_heatmap_head_weights
from edgehmr.preprocess import HMR2_CROP, VITPOSE_CROP

HEAD_GRID = (16, 12)  # what both heads expect at 256x192 (a ViT/16's token grid)
IMAGE_SIZE = (256, 192)
STAGES = (2, 3, 4)


@dataclass(frozen=True)
class Family:
    key: str  # registry id part: swin | gmf | vmamba
    title: str
    build: Callable[..., nn.Module]  # (cfg, num_stages, image_size) -> backbone with out_channels/out_stride
    sizes: dict
    init: Callable[[nn.Module], None]
    filter: Callable[[dict, int], dict]
    layout: str
    # Registered size -> the released classification checkpoint (and config) whose layout it loads.
    released: dict[str, str] = field(default_factory=dict)
    unsupported_targets: dict[str, str] = field(default_factory=dict)


def _families() -> dict[str, Family]:
    from edgehmr.models.groupmixformer import GMF_SIZES, GroupMixFormer, filter_gmf_checkpoint, init_gmf_weights
    from edgehmr.models.swin import SWIN_SIZES, SwinTransformer, filter_swin_checkpoint, init_swin_weights
    from edgehmr.models.vmamba import VMAMBA_SIZES, VMamba, filter_vmamba_checkpoint, init_vmamba_weights

    return {f.key: f for f in (
        Family("swin", "Swin", SwinTransformer, SWIN_SIZES, init_swin_weights, filter_swin_checkpoint,
               "microsoft/Swin-Transformer classification layout (patch_embed.*, layers.{i}.blocks.{j}.*)",
               {s: f"swin_{n}_patch4_window7_224.pth, configs/swin/swin_{n}_patch4_window7_224.yaml"
                for s, n in (("t", "tiny"), ("s", "small"), ("b", "base"))}),
        Family("gmf", "GroupMixFormer", GroupMixFormer, GMF_SIZES, init_gmf_weights, filter_gmf_checkpoint,
               "AILab-CVC/GroupMixFormer layout (conv_stem.*, patch_embed_layers.{i}.*, "
               "groupmixformer_backbone.{i}.*)",
               {s: f"released GroupMixFormer-{s.upper()}, configs/groupmixformer_{n}.yaml"
                for s, n in (("t", "tiny"), ("s", "small"))}),
        Family("vmamba", "VMamba", VMamba, VMAMBA_SIZES, init_vmamba_weights, filter_vmamba_checkpoint,
               "MzeroMiko/VMamba v2 layout (patch_embed.*, layers.{i}.blocks.{j}.op.*)",
               # Not the README's headline VMamba-T[s1l8] (vssm1_tiny_0230s): see edgehmr.models.vmamba.
               {"t": "VMamba-T[s2l5] vssm_tiny_0230_ckpt_epoch_262.pth, vmambav2_tiny_224.yaml",
                "s": "VMamba-S[s2l15] vssm_small_0229_ckpt_epoch_222.pth, vmambav2_small_224.yaml"},
               {"executorch": "the exported selective scan leaves ~1100 ops outside XNNPACK (its triangular "
                              "masks, the cross-scan flips, the depthwise conv) and the .pte does not load in the "
                              "ExecuTorch 1.5 runtime (method init fails); use onnx or openvino",
                "coreml": "the chunked selective scan uses rank-7 tensors and Core ML allows rank <= 5; use onnx "
                          "or openvino",
                "executorch-coreml": "the chunked selective scan uses rank-7 tensors and Core ML allows rank <= 5"}),
    )}


# Registered sizes per family: the published T/S (and Swin-B); larger GroupMixFormers exist as configs.
REGISTERED_SIZES = {"swin": ("t", "s", "b"), "gmf": ("t", "s"), "vmamba": ("t", "s")}


class TruncationNeck(nn.Module):
    """Stage output ``[B, C, H, W]`` -> tokens ``[B, 192, C]`` on the 16x12 grid (see the module note)."""

    def __init__(self, channels: int, stages: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.stages = stages
        if stages == 2:
            self.proj = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        elif stages == 4:
            self.proj = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x.flatten(2).transpose(1, 2))
        if self.stages == 3:
            return t
        return self.proj(t.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class HierarchicalEncoder(nn.Module):
    """Truncated backbone + neck: image ``[B, 3, 256, 192]`` -> tokens ``[B, 192, C]``."""

    def __init__(self, family: Family, backbone: object, stages: int):
        super().__init__()
        self.backbone = family.build(backbone, num_stages=stages, image_size=IMAGE_SIZE)
        if self.backbone.out_stride != {2: 8, 3: 16, 4: 32}[stages]:
            raise ValueError(f"{family.title} stage {stages} has stride {self.backbone.out_stride}")
        self.channels = self.backbone.out_channels
        self.neck = TruncationNeck(self.channels, stages)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(image))


class HierarchicalHMR2(HierarchicalEncoder):
    def __init__(self, family: Family, backbone: object, stages: int, head: HeadConfig = PUBLISHED_HEAD):
        super().__init__(family, backbone, stages)
        self.smpl_head = SMPLTransformerDecoderHead(self.channels, head)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rotmats, betas, cam = self.smpl_head(super().forward(image))
        return rotmats[:, :1], rotmats[:, 1:], betas, cam, cam_crop_to_translation(cam)


class HierarchicalViTPose(HierarchicalEncoder):
    def __init__(self, family: Family, backbone: object, stages: int, deconv_channels: int = DECONV_CHANNELS):
        super().__init__(family, backbone, stages)
        self.keypoint_head = TopdownHeatmapSimpleHead(self.channels, deconv_channels=deconv_channels)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        t = super().forward(image)
        grid = t.transpose(1, 2).reshape(t.shape[0], self.channels, *HEAD_GRID)
        return (self.keypoint_head(grid),)


def filter_hierarchical_checkpoint(family: Family, stages: int) -> Callable[[dict], dict]:
    """``backbone.*`` through the family's filter (drops what truncation removed); the rest unchanged."""
    def apply(state: dict) -> dict:
        backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        rest = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        return rest | {f"backbone.{k}": v for k, v in family.filter(backbone, stages).items()}
    return apply


def _init(family: Family, head_init: Callable[[nn.Module], None], head: str) -> Callable[[nn.Module], None]:
    def init(model: nn.Module) -> None:
        family.init(model.backbone)
        for m in model.neck.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        head_init(getattr(model, head))
    return init


def hierarchical_hmr2_info(family: Family, name: str, what: str, backbone: object, stages: int,
                           head: HeadConfig = PUBLISHED_HEAD, test_only: bool = False) -> ModelInfo:
    return ModelInfo(
        name=name, family="hmr2", description=f"HMR2.0 head on {what}",
        build=lambda: HierarchicalHMR2(family, backbone, stages, head),
        init_weights=_init(family, init_head_weights, "smpl_head"),
        filter_checkpoint=filter_hierarchical_checkpoint(family, stages),
        crop=HMR2_CROP, inputs=(IMAGE_INPUT,), outputs=HMR2_OUTPUTS,
        checkpoint_layout=f"backbone.* ({family.layout}), neck.*, smpl_head.* (4D-Humans)",
        recipe=f"hmr2-{family.key}", unsupported_targets=family.unsupported_targets, test_only=test_only)


def hierarchical_vitpose_info(family: Family, name: str, what: str, backbone: object, stages: int,
                              deconv_channels: int = DECONV_CHANNELS, test_only: bool = False) -> ModelInfo:
    return ModelInfo(
        name=name, family="vitpose", description=f"top-down 2D pose (ViTPose head) on {what}",
        build=lambda: HierarchicalViTPose(family, backbone, stages, deconv_channels),
        init_weights=_init(family, init_heatmap_head_weights, "keypoint_head"),
        filter_checkpoint=filter_hierarchical_checkpoint(family, stages),
        crop=VITPOSE_CROP, inputs=(HEATMAP_INPUT,), outputs=(HEATMAP_OUTPUT,),
        checkpoint_layout=f"backbone.* ({family.layout}), neck.*, keypoint_head.* (mmpose)",
        recipe=f"vitpose-{family.key}", unsupported_targets=family.unsupported_targets, test_only=test_only)


def register_family(family: Family) -> None:
    for size in REGISTERED_SIZES[family.key]:
        for stages in STAGES:
            tag = f"{family.key}-{size}-s{stages}"
            what = f"{family.title}-{size.upper()} truncated after stage {stages}"
            if size in family.released:
                what += f" (backbone layout: {family.released[size]})"
            register(hierarchical_hmr2_info(family, f"hmr2-{tag}", what, family.sizes[size], stages))
            register(hierarchical_vitpose_info(family, f"vitpose-{tag}", what, family.sizes[size], stages))


FAMILIES = _families()
for _family in FAMILIES.values():
    register_family(_family)
