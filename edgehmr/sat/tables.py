"""Where a SAT-HMR artifact's bucket table comes from: ``--buckets``, calibration frames, or a canvas default."""

from __future__ import annotations

import numpy as np
import torch

from edgehmr.bucketing import (CONF_THRESHOLD, HR_TOKENS_PER_CELL, MASK_PAD, SCALE_THRESHOLD, Bucket, BucketTable,
                               Selection, classify)
from edgehmr.errors import SpecError
from edgehmr.models.sat_hmr import SatHmr

HR_STEP, OTHER_STEP = 4, 32


def parse_buckets(text: str, grid: tuple[int, int]) -> BucketTable:
    """``"8x256,32x640,128x2116"``: high-res cells x other tokens per bucket."""
    buckets = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            hr, other = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SpecError(f"--buckets takes HRxOTHER items separated by commas, e.g. 8x256,32x2116 "
                            f"(got '{item}').") from None
        if hr < 1 or other < 2:
            raise SpecError(f"bucket {item}: needs at least 1 high-res cell and 2 other tokens (padding is masked, "
                            f"so a bucket larger than an image needs is always safe).")
        buckets.append(Bucket.of(hr, other))
    if not buckets:
        raise SpecError("--buckets is empty.")
    try:
        return BucketTable(tuple(buckets), grid)
    except ValueError as e:
        raise SpecError(f"--buckets: {e}") from None


def default_table(grid: tuple[int, int]) -> BucketTable:
    """Without calibration frames: a geometric ladder up to one token per cell, with room for a quarter of the
    cells at high resolution (fit it to data with ``--calib``)."""
    cells = grid[0] * grid[1]

    def up(v, step):
        return max(step, -(-int(v) // step) * step)

    ladder = [(cells / 32, cells / 3), (cells / 16, cells / 2), (cells / 8, cells * 3 / 4), (cells / 4, cells)]
    return BucketTable(tuple({Bucket.of(up(h, HR_STEP), up(o, OTHER_STEP)) for h, o in ladder}), grid)


@torch.no_grad()
def selections_of(model: SatHmr, images: list[np.ndarray]) -> list[Selection]:
    """Token selections of calibration frames (stage 1 in PyTorch FP32)."""
    out = []
    for image in images:
        scale_map = model.stage1(torch.from_numpy(image[None]))[0][0].numpy()
        out.append(classify(scale_map[0], scale_map[1]))
    return out


def table_json(table: BucketTable, origin: str, hits: dict[str, int] | None = None) -> dict:
    """The bucket table as ``metadata.json`` records it: what an app needs to pack inputs itself."""
    return {
        "origin": origin,
        "grid": list(table.grid),
        "buckets": [{"name": b.name, "hr_cells": b.hr_cells, "other": b.other, "memory": b.memory,
                     "calibration_hits": (hits or {}).get(b.name)} for b in table.buckets],
        "selection": {"confidence_gt": CONF_THRESHOLD, "scale_lt": SCALE_THRESHOLD,
                      "rule": "valid = c > conf; small = valid and s < scale; 2x2 blocks with a valid cell keep "
                              "their cells (small: 4 high-res tokens, else 1 low-res), other blocks become one "
                              "max-pooled background token"},
        "choice": "the bucket needing the fewest demotions, then the cheapest "
                  "(10.5*memory + 12*hr_cells: linear work in ViT-B blocks)",
        "overflow": "demote the least-confident small cells to low-res tokens until the image fits; reported",
        "mask": {"real": 0.0, "padding": MASK_PAD, "hr_tokens_per_cell": HR_TOKENS_PER_CELL,
                 "order": "hr_cells (row-major cell index) then other_index (low-res cells H*W, then background "
                          "blocks offset by H*W); padding indices 0"},
    }


def table_from_json(data: dict) -> BucketTable:
    return BucketTable(tuple(Bucket.of(b["hr_cells"], b["other"]) for b in data["buckets"]), tuple(data["grid"]))
