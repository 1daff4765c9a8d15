"""Test helper: which layers a model really runs."""

from __future__ import annotations

import torch


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
