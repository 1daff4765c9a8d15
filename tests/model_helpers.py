"""Test helpers: the registered tiny models, the slow tier's published sizes, and which layers a model runs."""

from __future__ import annotations

import pytest
import torch

from edgehmr.models import get_model_info, load_model
from edgehmr.models.vit import ViT

# The registered tiny models (edgehmr/models/tiny.py) every code-path test converts; the published sizes they stand
# for run the same tests in the slow tier (make test-slow).
HMR = "test-hmr2"
POSE = "test-vitpose"


def slow(*names: str) -> list:
    """Published-size models as parameters of the slow tier."""
    return [pytest.param(name, marks=pytest.mark.slow) for name in names]


def family(name: str) -> str:
    return get_model_info(name).family


def hmr2_depths(name: str) -> tuple[int, int]:
    """(ViT blocks, SMPL-head decoder layers) of an HMR2.0 model, read from the built module: assertions count
    layers from these instead of writing one size's numbers."""
    module = get_model_info(name).build()
    return len(module.backbone.blocks), len(module.smpl_head.transformer.transformer.layers)


def tiny_vit() -> ViT:
    """The backbone of the registered tiny HMR2.0 (2 blocks, 64 wide, seeded): real model code, small enough to
    lower several times in a test."""
    return load_model(HMR).module.backbone


def called_layers(module: torch.nn.Module, image: torch.Tensor) -> list[str]:
    """Names of the linear/conv modules a forward pass really calls, found with forward hooks, independently of
    torch.export (HMR2's ``to_token_embedding`` only contributes its bias to the folded zero-token query)."""
    called, hooks = [], []
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            hooks.append(m.register_forward_hook(lambda *_, name=name: called.append(name)))
    with torch.no_grad():
        module(image)
    for h in hooks:
        h.remove()
    return called
