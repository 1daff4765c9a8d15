"""Shared SAT-HMR test fixtures: the registered tiny model (``test-sat-hmr``) and synthetic scenes."""

from __future__ import annotations

import numpy as np
import torch

from edgehmr.bucketing import classify
from edgehmr.models import LoadedModel, load_model
from edgehmr.models.sat_hmr import SatHmr, init_sat_hmr
from edgehmr.models.tiny import TEST_SAT as TINY

TINY_NAME = "test-sat-hmr"


def loaded_tiny(seed: int = 0) -> LoadedModel:
    """The registered tiny SAT-HMR with seeded weights (its scale head spreads confidence and scale, so frames
    select different token mixes and hit different buckets)."""
    return load_model(TINY_NAME, seed=seed)


def tiny_sat(seed: int = 0) -> SatHmr:
    """The tiny configuration with the published init (scale map near 0.5 everywhere): module-level tests."""
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


SHARED_CANVAS = "336x224"
SHARED_BUCKETS = "24x96"  # the canvas's default ladder's largest; the full-coverage buckets b48x96, b96x64 join it


def shared_sat_artifact(run_wide, target: str):
    """The tiny SAT-HMR (seed 2) at FP32 on 336x224 with the 24x96 bucket and the full-coverage buckets, converted
    once per test run for every test file that needs it (an ExecuTorch lowering takes minutes)."""
    from edgehmr.sat.convert import convert_sat
    from edgehmr.spec import resolve_spec

    def make(folder):
        spec = resolve_spec(TINY_NAME, target, "fp32", out_dir=str(folder), canvas=SHARED_CANVAS,
                            buckets=SHARED_BUCKETS)
        return convert_sat(spec, loaded_tiny(2))

    return run_wide(f"sat-{target}-fp32", make)
