"""Runs a two-stage SAT-HMR artifact on any target: stage 1, the host's bucketing, stage 2 on the chosen bucket.

This is the Python form of what an app does around the artifact (the C++ runtime mirrors it): the host step is
:mod:`edgehmr.bucketing`, plain numpy, reading the bucket table and rules from ``metadata.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgehmr.artifact import parts, read_metadata
from edgehmr.bucketing import Selection, classify, pack
from edgehmr.errors import InputError
from edgehmr.models.sat_hmr import LOW_RES_CELL
from edgehmr.sat.tables import table_from_json
from edgehmr.targets.base import open_artifact_runner
from edgehmr.tasks import FRAMES, artifact_task

STAGE1_ENTRY = "canvas"


@dataclass
class SatResult:
    outputs: dict[str, np.ndarray]  # stage-2 outputs, batch axis kept: [1, 50, ...]
    scale_map: np.ndarray  # [2, H/28, W/28]
    selection: Selection  # the rule's selection on this target's scale map (before any demotion)
    bucket: str
    demoted: int  # small cells seen at low resolution because the largest bucket was too small


def _check_layout(meta: dict, table) -> None:
    """The canvas, the bucket table and the two parts' entries must describe the same artifact."""
    canvas, found = meta["canvas"], parts(meta)
    grid = (canvas["height"] // LOW_RES_CELL, canvas["width"] // LOW_RES_CELL)
    stage1, stage2 = found.get("stage1"), found.get("stage2")
    problem = None
    if stage1 is None or stage2 is None:
        problem = "it needs the parts stage1 and stage2"
    elif tuple(table.grid) != grid:
        problem = f"its bucket grid {list(table.grid)} is not the {canvas['width']}x{canvas['height']} canvas's"
    elif (stage1["entries"].get(STAGE1_ENTRY) or {}).get("image") != [1, 3, canvas["height"], canvas["width"]]:
        problem = f"stage1 has no '{STAGE1_ENTRY}' entry taking the canvas"
    elif missing := [b.name for b in table.buckets if b.name not in stage2["entries"]]:
        problem = f"stage2 has no entry for bucket {missing[0]}"
    if problem:
        raise InputError(f"metadata.json does not describe a SAT-HMR artifact: {problem}; re-run 'edgehmr convert'.")


class SatPipeline:
    def __init__(self, artifact_dir: str | Path, threads: int | None = None, shared_weights: bool = False,
                 verify: bool = True, simulate: bool = True):
        """``shared_weights``: OpenVINO compiles stage 2 once for every bucket (weights held once, 1-3% slower)
        instead of once per bucket (see :class:`edgehmr.targets.base.RunOptions`).
        ``verify``: check the files against the sha256 hashes metadata.json records.
        ``simulate``: see :func:`edgehmr.targets.base.open_artifact_runner`."""
        self.artifact_dir = Path(artifact_dir)
        self.meta = read_metadata(self.artifact_dir, verify=verify)
        if artifact_task(self.meta).input != FRAMES:
            raise InputError(f"{artifact_dir} is not a SAT-HMR artifact (model {self.meta['model']['model']}).")
        self.table = table_from_json(self.meta["buckets"])
        rule = self.meta["buckets"]["selection"]
        self.thresholds = (rule["confidence_gt"], rule["scale_lt"])
        _check_layout(self.meta, self.table)
        self.stage1, self.stage2 = (open_artifact_runner(self.artifact_dir, self.meta, name, threads, shared_weights,
                                                         simulate) for name in ("stage1", "stage2"))
        self.execution = self.stage2.execution

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        canvas = self.meta["canvas"]
        return 1, 3, canvas["height"], canvas["width"]

    def run(self, image: np.ndarray) -> SatResult:
        """``image [1, 3, H, W]`` float32 on the artifact's canvas (:func:`edgehmr.sat.frame.prepare_frame`)."""
        if tuple(image.shape) != self.input_shape:
            raise InputError(f"frame of shape {tuple(image.shape)}, the artifact's canvas needs {self.input_shape}; "
                             f"prepare it with edgehmr.sat.frame.prepare_frame.")
        first = self.stage1.run(STAGE1_ENTRY, {"image": image})
        scale_map = first["scale_map"][0]
        selection = classify(scale_map[0], scale_map[1], *self.thresholds)
        packed = pack(selection, self.table)
        feeds = {"image": image, "low_res_tokens": first["low_res_tokens"], "cls": first["cls"]} | packed.feeds()
        outputs = self.stage2.run(packed.bucket.name, feeds)
        return SatResult(outputs, scale_map, selection, packed.bucket.name, packed.demoted)
