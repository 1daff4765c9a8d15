"""Float16 headroom: the largest activation magnitude a model produces, per op, measured in float32.

Float16 overflows past 65504; attention logits and softmax inputs are the usual suspects in ViTs. An fp16
artifact records the measured maximum and the op it came from, so "does anything need float32?" is answered by
a number rather than a guess (and re-measured on every conversion, for every checkpoint).
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

FP16_MAX = 65504.0


class _MaxAbs(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.peaks: dict[str, float] = {}
        self.softmax_input = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") == "softmax" and isinstance(args[0], torch.Tensor):
            self.softmax_input = max(self.softmax_input, float(args[0].detach().abs().max()))
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
            name = getattr(func, "__name__", str(func))
            self.peaks[name] = max(self.peaks.get(name, 0.0), float(out.detach().abs().max()))
        return out


def activation_peaks(module: torch.nn.Module, inputs: list[tuple[torch.Tensor, ...]]) -> dict:
    """Largest |activation| over ``inputs``, the op that produced it, its float16 headroom, and the largest
    |softmax input| (attention logits)."""
    mode = _MaxAbs()
    with torch.no_grad(), mode:
        for args in inputs:
            module(*args)
    op, peak = max(mode.peaks.items(), key=lambda kv: kv[1])
    return {"max_abs": round(peak, 3), "op": op, "fp16_headroom": round(FP16_MAX / peak, 1) if peak else None,
            "softmax_input_max_abs": round(mode.softmax_input, 3)}
