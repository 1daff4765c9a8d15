"""Static-shape bucketing for scale-adaptive tokens: the host step between SAT-HMR's two static stages.

Stage 1 (one static graph) ends with the scale map: for every low-res cell (28 px of the 1288 canvas: a 46x46
grid) a person confidence ``c`` and a scale ``s``. Stage 2 (the high-res branch, the shared blocks and the
decoder) needs a token sequence whose length depends on the image; static-shape compilers need fixed lengths.
This module is the host side in between, plain numpy so that apps can port it line by line:

1. :func:`classify` applies SAT-HMR's rule. ``valid = c > 0.3``; ``small = valid and s < 0.5``. A 2x2 block
   with any valid cell keeps its cells: a small cell becomes 4 high-res tokens, another cell one low-res token.
   A block without a valid cell becomes one background token (its 4 encoded cells, max-pooled).
2. :meth:`BucketTable.choose` picks the cheapest bucket that holds the image: a bucket is a capacity for
   high-res cells (4 tokens each) plus a capacity for the other tokens (low-res and background).
   Tables come from calibration images (:func:`buckets_from_counts`: mean plus worst padding overhead).
3. Overflow, when even the largest bucket is too small: the least-confident small cells are demoted to one
   low-res token each (3 tokens fewer per demotion) until the image fits. Nobody is dropped, some people are
   seen at half resolution, and the number of demotions is returned for the report. A table whose largest
   bucket holds one token per cell always fits after demotion (checked when the table is built). The original
   model never demotes, so tables get :func:`full_coverage` buckets by default: then no frame can overflow
   (:func:`never_demotes`), and demotion is an explicit trade of fidelity for memory and compile time.
4. :func:`pack` writes fixed-size index buffers and float additive masks (0 for real tokens, ``MASK_PAD`` for
   padding). -1e4 rather than -inf: finite in fp16/bf16 and never NaN for a fully padded row, on every runtime
   (../shared/research/backend_feasibility.md, section 1).

Token order inside a bucket does not matter to the model (positions are added per token, attention is
permutation-invariant), so the order here is simply high-res cells first, then low-res cells, then background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONF_THRESHOLD = 0.3
SCALE_THRESHOLD = 0.5
MASK_PAD = -1e4
HR_TOKENS_PER_CELL = 4


@dataclass(frozen=True)
class Selection:
    """Which cells of the low-res grid become which tokens."""

    small: np.ndarray  # [H, W] bool: 4 high-res tokens each
    low_res: np.ndarray  # [H, W] bool: one low-res token each
    background: np.ndarray  # [H/2, W/2] bool: one pooled token per block
    confidence: np.ndarray  # [H, W] float: decides who is demoted on overflow

    @classmethod
    def empty(cls, grid: tuple[int, int]) -> Selection:
        """No token at all: packed, every slot of a bucket is padding (export examples, timing)."""
        h, w = grid
        return cls(np.zeros(grid, bool), np.zeros(grid, bool), np.zeros((h // 2, w // 2), bool),
                   np.zeros(grid, np.float32))

    @property
    def hr_cells(self) -> int:
        return int(self.small.sum())

    @property
    def other_tokens(self) -> int:
        return int(self.low_res.sum() + self.background.sum())

    @property
    def memory_tokens(self) -> int:
        return HR_TOKENS_PER_CELL * self.hr_cells + self.other_tokens


def classify(confidence: np.ndarray, scale: np.ndarray, conf_threshold: float = CONF_THRESHOLD,
             scale_threshold: float = SCALE_THRESHOLD) -> Selection:
    h, w = confidence.shape
    if h % 2 or w % 2 or scale.shape != confidence.shape:
        raise ValueError(f"scale map must be two equal even-sized grids, got {confidence.shape} and {scale.shape}")
    valid = confidence > conf_threshold
    small = valid & (scale < scale_threshold)
    block_valid = valid.reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))
    person_cells = block_valid.repeat(2, axis=0).repeat(2, axis=1)
    return Selection(small, person_cells & ~small, ~block_valid, confidence)


def demote(selection: Selection, count: int) -> Selection:
    """Turn the ``count`` least-confident small cells into low-res cells."""
    ys, xs = np.nonzero(selection.small)
    order = np.argsort(selection.confidence[ys, xs], kind="stable")[:count]
    small, low = selection.small.copy(), selection.low_res.copy()
    small[ys[order], xs[order]] = False
    low[ys[order], xs[order]] = True
    return Selection(small, low, selection.background, selection.confidence)


@dataclass(frozen=True, order=True)
class Bucket:
    memory: int  # sort key: the attention cost grows with the memory length
    hr_cells: int
    other: int

    @classmethod
    def of(cls, hr_cells: int, other: int) -> Bucket:
        return cls(HR_TOKENS_PER_CELL * hr_cells + other, hr_cells, other)

    @property
    def name(self) -> str:
        return f"b{self.hr_cells}x{self.other}"

    def holds(self, selection: Selection) -> bool:
        return selection.hr_cells <= self.hr_cells and selection.other_tokens <= self.other


@dataclass(frozen=True)
class BucketTable:
    buckets: tuple[Bucket, ...]
    grid: tuple[int, int]  # low-res grid (H, W)

    def __post_init__(self):
        if not self.buckets:
            raise ValueError("a bucket table needs at least one bucket")
        cells = self.grid[0] * self.grid[1]
        if max(b.other for b in self.buckets) < cells:
            raise ValueError(f"the largest bucket holds {max(b.other for b in self.buckets)} low-res/background "
                             f"tokens; it needs {cells} (one per cell) so that overflow can always be resolved")
        object.__setattr__(self, "buckets", tuple(sorted(self.buckets)))

    @property
    def can_demote(self) -> bool:
        """Whether some frame would overflow the largest bucket and see small people at low resolution."""
        return not never_demotes(self.buckets, self.grid)

    def choose(self, selection: Selection) -> tuple[Bucket, Selection, int]:
        """(bucket, selection that fits it, number of small cells demoted to fit).

        Demoting ``d`` cells fits a bucket when ``hr_cells - d <= bucket.hr_cells`` and
        ``other_tokens + d <= bucket.other``. The bucket needing the fewest demotions wins, the cheaper on ties
        (:func:`bucket_cost`).
        The largest bucket (one token per cell) always fits: after demoting every small cell the image has at
        most one token per cell.
        """
        best: tuple[int, Bucket] | None = None
        for bucket in sorted(self.buckets, key=bucket_cost):  # the first with the fewest demotions is cheapest
            need = max(selection.hr_cells - bucket.hr_cells, 0)
            if selection.other_tokens + need <= bucket.other and (best is None or need < best[0]):
                best = (need, bucket)
        if best is None:  # unreachable for a valid table; never return something silently wrong
            raise RuntimeError(f"no bucket of {self} can hold {selection.memory_tokens} tokens even after demotion")
        need, bucket = best
        return bucket, demote(selection, need) if need else selection, need


@dataclass(frozen=True)
class Packed:
    """Fixed-size stage-2 inputs for one image and bucket (the stage-2 graph's ``hr_cells``, ``hr_mask``,
    ``other_index`` and ``other_mask`` inputs, without the batch axis)."""

    bucket: Bucket
    hr_cells: np.ndarray  # [bucket.hr_cells] int64: flat cell index y*W+x of each high-res cell (0 for padding)
    hr_mask: np.ndarray  # [bucket.hr_cells] float32 additive mask per cell (its 4 tokens share it)
    other_index: np.ndarray  # [bucket.other] int64: index into [low-res cells (H*W) | background blocks (H*W/4)]
    other_mask: np.ndarray  # [bucket.other] float32 additive mask
    demoted: int  # small cells seen at low resolution because of overflow

    @property
    def memory_mask(self) -> np.ndarray:
        """Additive mask over the decoder memory: 4 entries per high-res cell, then the others."""
        return np.concatenate([np.repeat(self.hr_mask, HR_TOKENS_PER_CELL), self.other_mask])

    def feeds(self) -> dict[str, np.ndarray]:
        """Stage-2 inputs by graph input name, with a batch axis of 1."""
        # reshape, not [None]: a new axis gets stride 0, which some exporters (ExecuTorch) reject in examples.
        return {name: getattr(self, name).reshape(1, -1) for name in ("hr_cells", "hr_mask", "other_index", "other_mask")}


def pack(selection: Selection, table: BucketTable) -> Packed:
    bucket, fitted, demoted = table.choose(selection)
    return pack_into(fitted, bucket, table.grid, demoted)


def pack_into(fitted: Selection, bucket: Bucket, grid: tuple[int, int], demoted: int = 0) -> Packed:
    """Fixed-size buffers of ``bucket`` for a selection that it holds."""
    if not bucket.holds(fitted):
        raise ValueError(f"bucket {bucket.name} cannot hold {fitted.hr_cells} high-res cells and "
                         f"{fitted.other_tokens} other tokens")
    h, w = grid
    hr = np.flatnonzero(fitted.small.ravel())
    others = np.concatenate([np.flatnonzero(fitted.low_res.ravel()), h * w + np.flatnonzero(fitted.background.ravel())])
    hr_cells, hr_mask = _padded(hr, bucket.hr_cells)
    other_index, other_mask = _padded(others, bucket.other)
    return Packed(bucket, hr_cells, hr_mask, other_index, other_mask, demoted)


def _padded(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``index`` padded with 0 to ``size`` and its additive mask (0 real, ``MASK_PAD`` padding)."""
    buffer = np.zeros(size, np.int64)
    buffer[:len(index)] = index
    mask = np.full(size, MASK_PAD, np.float32)
    mask[:len(index)] = 0.0
    return buffer, mask


# Relative cost of one token slot, in ViT-B blocks' linear work (12 d^2 MACs per token): every memory slot runs the
# 9 shared blocks and the decoder's three memory projections in 6 layers (18 d^2 = 1.5 blocks); a high-res slot
# also runs the 3-block high-res branch. Linear in tokens: a ranking proxy, not a latency model.
SHARED_BLOCK_COST, DECODER_MEMORY_COST, HR_BRANCH_COST = 9.0, 1.5, 3.0


def bucket_cost(bucket: Bucket) -> float:
    return ((SHARED_BLOCK_COST + DECODER_MEMORY_COST) * bucket.memory
            + HR_BRANCH_COST * HR_TOKENS_PER_CELL * bucket.hr_cells)


def buckets_from_counts(selections: list[Selection], grid: tuple[int, int], count: int = 4,
                        hr_step: int = 4, other_step: int = 32) -> BucketTable:
    """A table of ``count`` buckets from the token counts of calibration images.

    Candidates are the images' own (high-res cells, other tokens), rounded up to the steps. Each image's padding
    overhead is the cost of the cheapest bucket holding it over the cost of its exact token count; relative
    rather than absolute, so that small scenes (where padding hurts most, in proportion) weigh as much as crowded
    ones. The table minimises the mean overhead plus the worst one: the mean alone leaves a few scenes between
    two buckets far off (seeded 672 canvas, 8 buckets: worst 1.21x the exact-count latency, mean 1.10x). Starting
    from the always-fitting bucket (one token per cell), candidates are added greedily, then single swaps of a
    chosen bucket for a candidate are taken while they lower the objective (greedy alone stops at the first
    bucket set that no single addition improves).
    """
    if not selections:
        raise ValueError("no calibration images to size the buckets from")
    cells = grid[0] * grid[1]
    needs = [(s.hr_cells, s.other_tokens) for s in selections]
    largest = Bucket.of(_round_up(max(h for h, _ in needs), hr_step),
                        max(_round_up(max(o for _, o in needs), other_step), cells))
    candidates = sorted({Bucket.of(_round_up(h, hr_step), _round_up(o, other_step)) for h, o in needs} - {largest})
    exact = [bucket_cost(Bucket.of(max(h, 1), o)) for h, o in needs]

    def objective(table: list[Bucket]) -> float:
        ratios = [min(bucket_cost(b) for b in table if b.hr_cells >= h and b.other >= o) / e
                  for (h, o), e in zip(needs, exact)]
        return sum(ratios) / len(ratios) + max(ratios)

    chosen = [largest]
    while len(chosen) < count and candidates:
        best = min(candidates, key=lambda c: objective(chosen + [c]))
        if objective(chosen + [best]) >= objective(chosen):
            break
        chosen.append(best)
        candidates.remove(best)
    current = objective(chosen)
    improved = True
    while improved:
        improved = False
        for i in range(1, len(chosen)):  # the always-fitting bucket stays
            for candidate in list(candidates):
                trial = chosen[:i] + [candidate] + chosen[i + 1:]
                score = objective(trial)
                if score < current - 1e-12:
                    candidates.remove(candidate)
                    candidates.append(chosen[i])
                    chosen, current, improved = trial, score, True
    return BucketTable(tuple(chosen), grid)


def never_demotes(buckets, grid: tuple[int, int]) -> bool:
    """True when every possible frame fits some bucket as selected, without demotion.

    A frame with ``h`` small cells has at most ``cells - h`` other tokens (each is a low-res cell or a background
    block of 4 cells, and small cells are neither), and every ``h`` from 0 to ``cells`` can occur with that many.
    """
    cells = grid[0] * grid[1]
    return all(any(b.hr_cells >= h and b.other >= cells - h for b in buckets) for h in range(cells + 1))


def full_coverage(buckets, grid: tuple[int, int], hr_step: int = 4, other_step: int = 32) -> tuple[Bucket, ...]:
    """The buckets to add to ``buckets`` so that :func:`never_demotes` holds: a staircase over ``small + other <=
    cells`` above what the table already covers. With ``h0`` the high-res capacity of the table's buckets that
    hold one token per cell, at most two: ``(cells/2, cells - h0)`` (when ``h0 < cells/2``) and
    ``(cells, cells - max(h0, cells/2))``, the bucket that holds every cell at high resolution. Empty when the
    table never demotes already."""
    if never_demotes(buckets, grid):
        return ()
    cells = grid[0] * grid[1]
    h0 = max((b.hr_cells for b in buckets if b.other >= cells), default=0)
    steps = ([(cells // 2, cells - h0)] if h0 < cells // 2 else []) + [(cells, cells - max(h0, cells // 2))]
    added = tuple(Bucket.of(_round_up(h, hr_step), _round_up(o, other_step)) for h, o in steps)
    assert never_demotes(tuple(buckets) + added, grid)
    return added


def _round_up(value: int, step: int) -> int:
    return max(step, -(-int(value) // step) * step)
