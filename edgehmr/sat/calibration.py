"""INT8 calibration samples for a SAT-HMR artifact: stage 1 on the frames, stage 2 per bucket.

Stage 2's buckets share weights and so one set of quantization scales; every bucket still gets its own samples,
so the scales cover what each bucket sees (its token mix and its amount of padding). A bucket is calibrated on the
frames it would be chosen for first, then on other frames it holds; a bucket that holds no calibration frame as
is gets frames packed into it with the documented overflow rule (demotion), so that no bucket goes uncalibrated.
Samples are capped per bucket (each carries the full canvas image).
"""

from __future__ import annotations

import numpy as np
import torch

from edgehmr.bucketing import BucketTable, Selection, demote, pack_into
from edgehmr.models.sat_hmr import SatHmr

MAX_PER_BUCKET = 8


def _fit(selection: Selection, bucket) -> Selection | None:
    need = max(selection.hr_cells - bucket.hr_cells, 0)
    fitted = demote(selection, need) if need else selection
    return fitted if bucket.holds(fitted) else None


@torch.no_grad()
def sat_calibration(model: SatHmr, images: list[np.ndarray], selections: list[Selection], table: BucketTable,
                    per_bucket: int = MAX_PER_BUCKET) -> tuple[dict, dict]:
    """-> (stage-1 samples ``{"canvas": [(image,), ...]}``, stage-2 samples ``{bucket: [inputs, ...]}``)."""
    stage1 = {"canvas": [(image[None],) for image in images]}
    firsts = [table.choose(s)[0] for s in selections]
    stage2: dict[str, list[tuple[np.ndarray, ...]]] = {}
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for bucket in table.buckets:
        own = [i for i, b in enumerate(firsts) if b == bucket]
        others = [i for i, s in enumerate(selections) if i not in own and bucket.holds(s)]
        order = own + others or list(range(len(selections)))
        samples = []
        for i in order:
            fitted = _fit(selections[i], bucket)
            if fitted is None:
                continue
            if i not in cache:
                _, tokens, cls = model.stage1(torch.from_numpy(images[i][None]))
                cache[i] = tokens.numpy(), cls.numpy()
            packed = pack_into(fitted, bucket, table.grid)
            samples.append((images[i][None], *cache[i], *packed.feeds().values()))
            if len(samples) == per_bucket:
                break
        if samples:
            stage2[bucket.name] = samples
    return stage1, stage2
