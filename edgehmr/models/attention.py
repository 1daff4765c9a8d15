"""Multi-head attention written with 3-D batched matmuls, shared by the ViT and the HMR2.0 decoder.

reason: 4-D ``q @ k.T`` lowers in ExecuTorch to expand + bmm, and ``qkv[0]`` / ``chunk`` to select/split copies,
none of which XNNPACK takes; folding heads into the batch ([B*H, N, d]) and slicing the fused projection keeps
attention inside the delegate. ONNX Runtime, OpenVINO and Core ML see the same plain MatMul/Softmax.
"""

from __future__ import annotations

import torch


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, H*d] -> [B*H, N, d]``."""
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2).reshape(b * heads, n, c // heads)


def merge_heads(t: torch.Tensor, batch: int) -> torch.Tensor:
    """``[B*H, N, d] -> [B, N, H*d]``."""
    bh, n, d = t.shape
    heads = bh // batch
    return t.reshape(batch, heads, n, d).transpose(1, 2).reshape(batch, n, heads * d)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float,
           scale_query: bool, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention over ``[B, N, C]`` inputs -> ``[B, Nq, C]``.

    ``scale_query`` picks where the scale is applied, matching each published model's float rounding: ViTPose
    scales q before the product, HMR2.0's decoder scales the logits after it.
    """
    batch = q.shape[0]
    qh, kh, vh = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)
    if key_mask is not None:  # additive [B, Nk]: 0 for real keys, -1e4 for padding (static-shape buckets)
        key_mask = key_mask[:, None, None, :].expand(batch, heads, 1, -1).reshape(batch * heads, 1, -1)
    return merge_heads(attend_heads(qh, kh, vh, scale, key_mask, scale_query), batch)


def attend_heads(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, scale: float,
                 key_mask: torch.Tensor | None = None, scale_query: bool = False) -> torch.Tensor:
    """Softmax attention on heads already folded into the batch: ``[B*H, N, d]`` (q/k and v widths may differ,
    as in conditional cross-attention); ``key_mask`` is additive ``[B*H, 1, Nk]``."""
    logits = torch.bmm(qh * scale, kh.transpose(1, 2)) if scale_query else torch.bmm(qh, kh.transpose(1, 2)) * scale
    if key_mask is not None:
        logits = logits + key_mask
    return torch.bmm(torch.softmax(logits, dim=-1), vh)


def split_fused(t: torch.Tensor, parts: int) -> list[torch.Tensor]:
    """Equal slices of a fused projection along the last dim (slices, not ``chunk``: see the module note)."""
    width = t.shape[-1] // parts
    return [t[..., i * width:(i + 1) * width] for i in range(parts)]
