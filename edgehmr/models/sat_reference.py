"""Dynamic-shape SAT-HMR reference: boolean indexing and unpadded sequences, as in the paper's code.

Used only to check the bucketed two-stage path (and to make reference bundles): it shares the weights of
:class:`~edgehmr.models.sat_hmr.SatHmr` but selects tokens in torch with its own code, builds exactly the image's
sequence (no buffers, no masks) and runs the encoder and decoder on it. One image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgehmr.models.sat_hmr import SatHmr, cells_of, high_res_index

CONF_THRESHOLD = 0.3
SCALE_THRESHOLD = 0.5


@dataclass
class TokenSelection:
    small: torch.Tensor  # [H, W] bool: cells seen at high resolution (4 tokens each)
    low_res: torch.Tensor  # [H, W] bool: cells kept as one low-res token
    background: torch.Tensor  # [H/2, W/2] bool: blocks pooled into one token


def select_tokens(scale_map: torch.Tensor, conf_threshold: float = CONF_THRESHOLD,
                  scale_threshold: float = SCALE_THRESHOLD) -> TokenSelection:
    """SAT-HMR's rule on one ``[2, H, W]`` scale map: valid = c > 0.3, small = valid and s < 0.5; a 2x2 block
    with any valid cell keeps its cells, a block without one becomes a background token."""
    conf, scale = scale_map[0], scale_map[1]
    h, w = conf.shape
    valid = conf > conf_threshold
    small = valid & (scale < scale_threshold)
    block_valid = valid.reshape(h // 2, 2, w // 2, 2).sum(dim=(1, 3)) > 0
    kept = block_valid.repeat_interleave(2, 0).repeat_interleave(2, 1)
    return TokenSelection(small, kept & ~small, ~block_valid)


@torch.no_grad()
def reference_memory(model: SatHmr, image: torch.Tensor, low_res_tokens: torch.Tensor, cls: torch.Tensor,
                     sel: TokenSelection) -> tuple[torch.Tensor, torch.Tensor]:
    """(memory ``[1, N, C]``, memory positions ``[1, N, C]``) for exactly the selected tokens, in the order
    high-res cells, low-res cells, background blocks."""
    dim, (gh, gw) = model.cfg.dim, cells_of(image)
    hr_cells = torch.nonzero(sel.small.reshape(-1))[:, 0][None]
    hr = torch.cat([model.encoder_cr_token[None], model.high_res_tokens(image, hr_cells)], dim=1)
    for block in model.encoder.blocks[:model.cfg.hr_blocks]:
        hr = block(hr)
    pooled = low_res_tokens.reshape(1, gh // 2, 2, gw // 2, 2, dim).amax(dim=(2, 4)).reshape(1, -1, dim)
    low, bg = sel.low_res.reshape(-1), sel.background.reshape(-1)
    x = torch.cat([cls[:, None], hr[:, 1:], low_res_tokens[:, low], pooled[:, bg]], dim=1)
    for block in model.encoder.blocks[model.cfg.hr_blocks:]:
        x = block(x)
    memory = model.feature_proj(model.encoder.norm(x[:, 1:]))
    pos = torch.cat([
        model.memory_sine_0.reshape(-1, dim)[high_res_index(hr_cells, gw)[0]] + model.level_embed[0],
        model.memory_sine_1[:gh, :gw].reshape(-1, dim)[low] + model.level_embed[1],
        model.memory_sine_2[:gh // 2, :gw // 2].reshape(-1, dim)[bg] + model.level_embed[2],
    ])
    return memory, pos[None]


@torch.no_grad()
def reference_forward(model: SatHmr, image: torch.Tensor,
                      selection: TokenSelection | None = None) -> tuple[tuple[torch.Tensor, ...], TokenSelection]:
    """One image ``[1, 3, H, W]`` -> (the six stage-2 outputs, the selection used). ``selection`` overrides the
    scale-map rule (to compare against a bucketed run that demoted cells on overflow)."""
    scale_map, tokens, cls = model.stage1(image)
    sel = selection if selection is not None else select_tokens(scale_map[0])
    memory, pos = reference_memory(model, image, tokens, cls, sel)
    return model.decode(memory, pos, None), sel


def from_host(small, low_res, background) -> TokenSelection:
    """A host-side selection (numpy boolean grids, :class:`edgehmr.bucketing.Selection`) as torch masks."""
    return TokenSelection(*(torch.as_tensor(a, dtype=torch.bool) for a in (small, low_res, background)))
