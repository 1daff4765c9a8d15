"""Shared SAT-HMR test fixtures: a small configuration of the published architecture and scenes."""

from __future__ import annotations

import numpy as np
import torch

from edgehmr.bucketing import classify
from edgehmr.models.sat_hmr import SatConfig, SatHmr, init_sat_hmr

# Every structural feature of the published model (LayerScale blocks, both branches, 2+ decoder layers so the
# layer-0-only projections and query scaling both run, aliased box heads), at a size tests can afford.
TINY = SatConfig(dim=64, heads=4, blocks=4, hr_blocks=1, extra_blocks=1, dec_heads=2, dec_layers=2, ffn=96,
                 queries=8)


def tiny_sat(seed: int = 0) -> SatHmr:
    torch.manual_seed(seed)
    model = SatHmr(TINY).eval()
    init_sat_hmr(model)
    return model


def scene(grid: tuple[int, int], people: list[tuple[int, int, int, int, float, float]], seed: int = 0):
    """Host selection for a scale map with rectangles (y0, x0, y1, x1, confidence, scale) on low background."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0, 0.2, grid).astype(np.float32)
    scale = np.ones(grid, np.float32)
    for y0, x0, y1, x1, c, s in people:
        conf[y0:y1, x0:x1], scale[y0:y1, x0:x1] = c, s
    return classify(conf, scale)


def varied_tiny_sat(seed: int = 0) -> SatHmr:
    """The tiny model with a scale head that spreads confidence and scale over (0, 1), so that frames select
    different token mixes and hit different buckets (seeded heads sit near 0.5 everywhere)."""
    model = tiny_sat(seed)
    with torch.no_grad():
        last = model.scale_head.layers[-1]
        last.weight.normal_(0, 3.0 / last.weight.shape[1] ** 0.5, generator=torch.Generator().manual_seed(seed))
    return model


def loaded_tiny(module: SatHmr):
    """A LoadedModel for the registered ``sat-hmr`` entry holding the tiny module (seeded, untrained)."""
    from edgehmr.models import LoadedModel, get_model_info
    from edgehmr.models._checkpoint import weights_sha256

    return LoadedModel(get_model_info("sat-hmr"), module, "untrained", None, weights_sha256(module), 0)
