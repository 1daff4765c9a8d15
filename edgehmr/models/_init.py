"""The seeded "untrained" initialisation the timm-style backbones share."""

from __future__ import annotations

from torch import nn


def init_linear_or_norm(m: nn.Module) -> bool:
    """Truncated-normal (std 0.02) linear weights with zero biases, unit LayerNorms; True if ``m`` was one.

    Called per module inside each backbone's own loop, so the random draws keep the module order."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
        return True
    if isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
        return True
    return False
