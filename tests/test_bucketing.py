"""Host-side static-shape bucketing: the selection rule, bucket choice, overflow by demotion, and padding
invariance of masked attention against the unpadded (dynamic) sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgehmr.bucketing import (MASK_PAD, Bucket, BucketTable, buckets_from_counts, classify, pack)

GRID = (46, 46)


def _maps(people: list[tuple[int, int, int, int, float, float]], seed: int = 0):
    """Confidence/scale maps with rectangular people (y0, x0, y1, x1, confidence, scale) on background noise."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 0.2, GRID).astype(np.float32)
    scale = rng.uniform(0.0, 1.0, GRID).astype(np.float32)
    for y0, x0, y1, x1, c, s in people:
        conf[y0:y1, x0:x1] = c
        scale[y0:y1, x0:x1] = s
    return conf, scale


def _table() -> BucketTable:
    return BucketTable((Bucket.of(16, 640), Bucket.of(64, 1024), Bucket.of(128, GRID[0] * GRID[1])), GRID)


def test_selection_rule_matches_the_paper_on_a_hand_made_map():
    # one small person (scale 0.2) on a 4x4 aligned patch, one large person (scale 0.8) on a 6x6 patch
    conf, scale = _maps([(2, 2, 6, 6, 0.9, 0.2), (20, 20, 26, 26, 0.8, 0.8)])
    sel = classify(conf, scale)
    assert sel.hr_cells == 16 and sel.low_res.sum() == 36
    # 4 + 9 person blocks; every other 2x2 block of the 23x23 block grid is background
    assert sel.background.sum() == 23 * 23 - 4 - 9
    assert sel.memory_tokens == 4 * 16 + 36 + (23 * 23 - 13)


def test_a_block_with_one_valid_cell_keeps_all_four_cells():
    conf, scale = _maps([(4, 4, 5, 5, 0.9, 0.8)])  # a single valid, large-scale cell
    sel = classify(conf, scale)
    assert sel.low_res.sum() == 4 and sel.low_res[4:6, 4:6].all() and not sel.background[2, 2]


def test_image_with_no_person_is_all_background_and_takes_the_smallest_bucket():
    conf, scale = _maps([])
    packed = pack(classify(conf, scale), _table())
    assert packed.bucket == Bucket.of(16, 640) and packed.demoted == 0
    real = packed.memory_mask == 0
    assert real.sum() == 23 * 23 and (packed.memory_mask[~real] == MASK_PAD).all()
    assert (packed.other_index[:23 * 23] >= GRID[0] * GRID[1]).all()  # all indices point at pooled blocks


def test_overflow_demotes_least_confident_small_cells_and_reports_it():
    # 200 small cells: more than the largest bucket's 128 high-res cells
    people = [(0, 0, 10, 10, 0.95, 0.1), (20, 0, 30, 10, 0.5, 0.1)]
    conf, scale = _maps(people)
    sel = classify(conf, scale)
    assert sel.hr_cells == 200
    packed = pack(sel, _table())
    assert packed.bucket == Bucket.of(128, GRID[0] * GRID[1]) and packed.demoted == 72
    hr = set(packed.hr_cells[(packed.memory_mask[: 4 * 128 : 4] == 0)].tolist())
    confident = {y * GRID[1] + x for y in range(10) for x in range(10)}
    assert confident <= hr  # the confident person keeps full resolution; the other one is partly demoted


def test_every_image_fits_the_table_even_with_every_cell_small():
    conf = np.ones(GRID, np.float32)
    scale = np.zeros(GRID, np.float32)
    packed = pack(classify(conf, scale), _table())
    assert packed.bucket.hr_cells == 128 and packed.demoted == GRID[0] * GRID[1] - 128


def test_table_from_calibration_counts_covers_them_and_always_fits():
    rng = np.random.default_rng(1)
    selections = []
    for i in range(40):
        n = int(rng.integers(0, 4))
        people = [(int(rng.integers(0, 40)), int(rng.integers(0, 40)), 0, 0, 0.9, float(rng.uniform(0, 1)))
                  for _ in range(n)]
        people = [(y, x, y + 6, x + 6, c, s) for y, x, _, _, c, s in people]
        selections.append(classify(*_maps(people, seed=i)))
    table = buckets_from_counts(selections, GRID, count=4)
    assert len(table.buckets) >= 2 and max(b.other for b in table.buckets) >= GRID[0] * GRID[1]
    assert all(table.choose(s)[2] == 0 for s in selections)  # calibration images never overflow
    memories = [b.memory for b in table.buckets]
    assert memories == sorted(memories)
    with pytest.raises(ValueError, match="one per cell"):
        BucketTable((Bucket.of(16, 640),), GRID)


def test_fitted_table_is_not_improved_by_any_single_swap():
    """The fitted table minimises mean plus worst padding overhead over the calibration scenes: no single swap of
    a fitted bucket (the always-fitting one excepted) for another candidate capacity lowers it."""
    from edgehmr.bucketing import _round_up, bucket_cost

    rng = np.random.default_rng(3)
    selections = []
    for i in range(30):
        people = [(int(y), int(x), int(y) + size, int(x) + size, 0.9, scale)
                  for size, scale in ((2, 0.1), (6, 0.9)) for _ in range(int(rng.integers(0, 4)))
                  for y, x in [rng.integers(0, 40, 2)]]
        selections.append(classify(*_maps(people, seed=i)))
    table = buckets_from_counts(selections, GRID, count=4, hr_step=4, other_step=8)
    needs = [(s.hr_cells, s.other_tokens) for s in selections]
    exact = [bucket_cost(Bucket.of(max(h, 1), o)) for h, o in needs]

    def objective(buckets):
        ratios = [min(bucket_cost(b) for b in buckets if b.hr_cells >= h and b.other >= o) / e
                  for (h, o), e in zip(needs, exact)]
        return sum(ratios) / len(ratios) + max(ratios)

    fitted = list(table.buckets)
    largest = max(fitted, key=lambda b: b.other)
    candidates = {Bucket.of(_round_up(h, 4), _round_up(o, 8)) for h, o in needs} - set(fitted)
    best = objective(fitted)
    for i, bucket in enumerate(fitted):
        if bucket == largest:
            continue
        for c in candidates:
            assert objective(fitted[:i] + [c] + fitted[i + 1:]) >= best - 1e-12, (bucket.name, c.name)
    assert all(table.choose(s)[2] == 0 for s in selections)


def _masked_attention(q, k, v, mask):
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + mask, dim=-1) @ v


def test_padded_bucket_equals_the_unpadded_sequence():
    """Stage 2 in miniature: gather tokens by the packed indices into a bucket, attend with the additive mask,
    and compare the real queries' outputs with the dynamic reference (boolean indexing, no padding)."""
    torch.manual_seed(0)
    conf, scale = _maps([(2, 2, 6, 6, 0.9, 0.2), (20, 20, 26, 26, 0.8, 0.8)])
    sel = classify(conf, scale)
    cells, dim = GRID[0] * GRID[1], 32
    low_tokens = torch.randn(cells, dim)
    bg_tokens = torch.randn(cells // 4, dim)
    hr_tokens = torch.randn(cells, 4, dim)  # 4 high-res tokens per cell
    wq, wk, wv = (torch.randn(dim, dim) / dim ** 0.5 for _ in range(3))

    # dynamic reference: exactly the selected tokens
    ref_mem = torch.cat([hr_tokens[torch.from_numpy(sel.small.ravel())].reshape(-1, dim),
                         low_tokens[torch.from_numpy(sel.low_res.ravel())],
                         bg_tokens[torch.from_numpy(sel.background.ravel())]])
    ref = _masked_attention(ref_mem @ wq, ref_mem @ wk, ref_mem @ wv, torch.zeros(len(ref_mem)))

    packed = pack(sel, _table())
    mem = torch.cat([hr_tokens[torch.from_numpy(packed.hr_cells)].reshape(-1, dim),
                     torch.cat([low_tokens, bg_tokens])[torch.from_numpy(packed.other_index)]])
    mask = torch.from_numpy(packed.memory_mask)
    out = _masked_attention(mem @ wq, mem @ wk, mem @ wv, mask)
    real = out[mask == 0]
    assert len(mem) == packed.bucket.memory > len(ref_mem)
    assert torch.allclose(real, ref, atol=1e-5)
