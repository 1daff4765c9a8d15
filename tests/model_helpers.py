"""Test helpers: which layers a model really runs, and a tiny ViT for multi-shape artifact tests."""

from __future__ import annotations

import torch

from edgehmr.models.vit import ViT, ViTConfig


def tiny_vit() -> ViT:
    """A 2-block, 64-wide ViT (seeded): real model code, small enough to convert twice in a test."""
    torch.manual_seed(0)
    return ViT(ViTConfig(embed_dim=64, depth=2, num_heads=4)).eval()


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
