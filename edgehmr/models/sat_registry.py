"""Registers ``sat-hmr``: the published SAT-HMR (DINOv2 ViT-B/14 encoder, DAB-DETR decoder, 50 queries)."""

from __future__ import annotations

import torch

from edgehmr.models._registry import ModelInfo, TensorInfo, register
from edgehmr.models.sat_hmr import CANVAS, PUBLISHED, SatConfig, SatHmr, filter_sat_checkpoint, init_sat_hmr


def sat_outputs(q: int) -> tuple[TensorInfo, ...]:
    return (
        TensorInfo("global_orient", ("B", q, 1, 3, 3), "per query: root rotation matrix, SMPL body frame -> camera"),
        TensorInfo("body_pose", ("B", q, 23, 3, 3), "per query: 23 body joint rotation matrices"),
        TensorInfo("betas", ("B", q, 10), "per query: SMPL shape coefficients"),
        TensorInfo("transl", ("B", q, 3), "per query: camera-frame translation (m), 60-degree field of view"),
        TensorInfo("boxes", ("B", q, 4), "per query: box (cx, cy, w, h) normalised by the 1288 canvas"),
        TensorInfo("confidence", ("B", q), "per query: person confidence (keep > 0.3)"),
    )


FRAME_INPUT = TensorInfo("image", ("B", 3, CANVAS, CANVAS), "full frame on the canvas, see preprocessing")


def plain_644_forward(model: SatHmr) -> None:
    """One 1288x1288 frame with every cell at low resolution (the paper's plain "644" token count, 2116)."""
    cells = (CANVAS // 28) ** 2
    model.requires_grad_(False)  # views of the query embeddings would otherwise trip the FLOP counter's hooks
    image = torch.empty(1, 3, CANVAS, CANVAS)
    scale_map, tokens, cls = model.stage1(image)
    hr = torch.zeros(1, 4, dtype=torch.long)
    model.stage2(image, tokens, cls, hr, torch.empty(1, 4), torch.zeros(1, cells, dtype=torch.long),
                 torch.empty(1, cells))


def sat_info(name: str, description: str, cfg: SatConfig, init_weights=init_sat_hmr,
             test_only: bool = False) -> ModelInfo:
    return ModelInfo(
        name=name,
        family="sat-hmr",
        description=description,
        build=lambda: SatHmr(cfg),
        init_weights=init_weights,
        filter_checkpoint=filter_sat_checkpoint,
        crop=None,
        inputs=(FRAME_INPUT,),
        outputs=sat_outputs(cfg.queries),
        checkpoint_layout="SAT-HMR .pth (sat_644.pth): flat state dict of the published Model",
        cost_forward=plain_644_forward,
        test_only=test_only,
    )


register(sat_info("sat-hmr", "SAT-HMR multi-person (scale-adaptive tokens, 50 queries; GMACs: 1288² frame at 2116 "
                  "tokens)", PUBLISHED))
