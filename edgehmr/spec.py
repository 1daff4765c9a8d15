"""The conversion spec: every option resolved and checked once, then passed to every stage unchanged."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgehmr.converters.capabilities import DEFAULT_TARGET, Precision, get_target, parse_precision
from edgehmr.errors import InputError, SpecError
from edgehmr.models import get_model_info


@dataclass(frozen=True)
class ConvertSpec:
    model: str
    target: str
    precision: Precision
    checkpoint: str | None
    trust_checkpoint: bool
    with_mesh: bool
    smpl: str  # "synthetic" or a path; used only with_mesh
    batch: int
    out_dir: str
    seed: int

    def to_json(self) -> str:
        d = asdict(self)
        d["precision"] = self.precision.value
        return json.dumps(d, indent=2)


def resolve_spec(model: str, target: str = DEFAULT_TARGET, precision: str = "fp32", checkpoint: str | None = None,
                 trust_checkpoint: bool = False, with_mesh: bool = False, smpl: str = "synthetic", batch: int = 1,
                 out_dir: str = "runs", seed: int = 0) -> ConvertSpec:
    info = get_model_info(model)
    caps = get_target(target)
    prec = parse_precision(precision, caps)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"Checkpoint not found: {checkpoint}")
    if with_mesh and info.family != "hmr2":
        raise SpecError(f"--with-mesh needs an HMR model; {model} predicts 2D keypoints only.")
    if with_mesh and smpl != "synthetic" and not Path(smpl).is_file():
        raise InputError(f"SMPL model file not found: {smpl}. Pass SMPL_NEUTRAL.pkl (or its .npz) with --smpl.")
    if batch < 1:
        raise SpecError(f"--batch must be at least 1 (got {batch}).")
    return ConvertSpec(model, caps.id, prec, checkpoint, trust_checkpoint, with_mesh, smpl, batch, out_dir, seed)
