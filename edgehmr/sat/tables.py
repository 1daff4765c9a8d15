"""Where a SAT-HMR artifact's bucket table comes from: ``--buckets``, calibration frames, or a canvas default."""

from __future__ import annotations

import numpy as np
import torch

from edgehmr.bucketing import (CONF_THRESHOLD, HR_TOKENS_PER_CELL, MASK_PAD, SCALE_THRESHOLD, Bucket, BucketTable,
                               Selection, classify, full_coverage)
from edgehmr.errors import InputError, SpecError
from edgehmr.models.sat_hmr import SatHmr

HR_STEP, OTHER_STEP = 4, 32
# Tables fitted to calibration frames round the other-token capacity to 8 instead: the frames' own counts are
# known, and finer capacities cut padding (bench/bucketing.py's scene model, 8 buckets: mean overhead 1.16x with
# steps of 32, 1.08x with 8). Guessed tables (the canvas default, full coverage) keep the coarser step.
FIT_OTHER_STEP = 8


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


def with_full_coverage(table: BucketTable) -> BucketTable:
    """``table`` plus the buckets that make every frame fit as selected (:func:`edgehmr.bucketing.full_coverage`):
    the default, so that an artifact never sees a small person at lower resolution than the original does."""
    added = full_coverage(table.buckets, table.grid, HR_STEP, OTHER_STEP)
    return BucketTable(table.buckets + added, table.grid) if added else table


def default_table(grid: tuple[int, int]) -> BucketTable:
    """Without calibration frames: a geometric ladder up to one token per cell, with room for a quarter of the
    cells at high resolution (fit it to data with ``--calib``); :func:`with_full_coverage` adds what crowded frames
    need."""
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


def table_json(table: BucketTable, origin: str, hits: dict[str, int] | None = None,
               coverage: dict | None = None) -> dict:
    """The bucket table as ``metadata.json`` records it: what an app needs to pack inputs itself. ``coverage``:
    the full-coverage buckets and how many calibration frames needed them (:func:`coverage_json`)."""
    return {
        "origin": origin,
        "full_coverage": coverage,
        "grid": list(table.grid),
        "buckets": [{"name": b.name, "hr_cells": b.hr_cells, "other": b.other, "memory": b.memory,
                     "calibration_hits": (hits or {}).get(b.name)} for b in table.buckets],
        "selection": {"confidence_gt": CONF_THRESHOLD, "scale_lt": SCALE_THRESHOLD,
                      "rule": "valid = c > conf; small = valid and s < scale; 2x2 blocks with a valid cell keep "
                              "their cells (small: 4 high-res tokens, else 1 low-res), other blocks become one "
                              "max-pooled background token"},
        "choice": "the bucket needing the fewest demotions, then the cheapest "
                  "(10.5*memory + 12*hr_cells: linear work in ViT-B blocks)",
        "can_demote": table.can_demote,
        "overflow": ("demote the least-confident small cells to low-res tokens until the image fits; reported"
                     if table.can_demote else "cannot happen: every frame fits a bucket as selected"),
        "mask": {"real": 0.0, "padding": MASK_PAD, "hr_tokens_per_cell": HR_TOKENS_PER_CELL,
                 "order": "hr_cells (row-major cell index) then other_index (low-res cells H*W, then background "
                          "blocks offset by H*W); padding indices 0"},
    }


def coverage_json(fitted: BucketTable, final: BucketTable, selections: list[Selection]) -> dict:
    """What the full-coverage buckets add to ``fitted``: their names, and how many of the calibration frames would
    have overflowed without them (with how many small cells demoted in all)."""
    demotions = [fitted.choose(s)[2] for s in selections]
    return {"buckets": [b.name for b in final.buckets if b not in fitted.buckets],
            "frames": len(selections) if selections else None,
            "frames_overflowing_without": sum(d > 0 for d in demotions) if selections else None,
            "cells_demoted_without": sum(demotions) if selections else None}


DEMOTION_NOTE = ("the bucket table can demote (--allow-demotion, or converted before full coverage was the default): a "
                 "frame that overflows the largest bucket sees some small people at low resolution, which the "
                 "original never does")


def demotion_note(data: dict) -> list[str]:
    """The note validate, profile and report carry for an artifact whose table can demote (metadata ``buckets``)."""
    can = data.get("can_demote")
    return [DEMOTION_NOTE] if (table_from_json(data).can_demote if can is None else can) else []


def table_from_json(data: dict) -> BucketTable:
    """The table metadata.json records (its fields' types are checked by :func:`edgehmr.artifact.check_fields`)."""
    try:
        return BucketTable(tuple(Bucket.of(b["hr_cells"], b["other"]) for b in data["buckets"]), tuple(data["grid"]))
    except ValueError as e:
        raise InputError(f"metadata.json: the bucket table cannot be used ({e}); re-run 'edgehmr convert'.") from None
