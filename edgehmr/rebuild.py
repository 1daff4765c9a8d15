"""The float32 torch module an artifact part was converted from, rebuilt from its metadata.

Runtimes that cannot run here (Core ML off macOS) simulate a part's numerics in torch; they start from this
module. The weights are checked against the hashes the artifact recorded, so a simulation never runs other
weights than the artifact's, and a pickled checkpoint is only reopened if it is the very file the user trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from edgehmr.artifact import CROP_PART
from edgehmr.errors import InputError
from edgehmr.models import LoadedModel, load_model
from edgehmr.tasks import CROPS, FRAMES, artifact_task


def rebuild_model(meta: dict) -> LoadedModel:
    """The model the artifact was converted from: its checkpoint (hash-checked) or its seeded weights."""
    model = meta["model"]
    checkpoint = None if model["weights"] == "untrained" else model["weights"]
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"Simulating this artifact needs the checkpoint it was built from ({checkpoint}); it is "
                         f"not there. Run it on its device, or restore the file.")
    trust = False
    if checkpoint is not None:
        from edgehmr.models._checkpoint import file_sha256

        # Checked before loading: a trusted (pickled) checkpoint is only reopened if it is the very file the user
        # trusted at conversion time.
        if file_sha256(checkpoint) != model["checkpoint_sha256"]:
            raise InputError(f"{checkpoint} changed since the artifact was converted (sha256 differs). Reconvert, "
                             f"or run it on its device.")
        trust = meta.get("spec", {}).get("trust_checkpoint", False)
    loaded = load_model(model["model"], checkpoint, trust_checkpoint=trust,
                        seed=model["seed"] if model["seed"] is not None else 0)
    if loaded.weights_sha256 != model["weights_sha256"]:
        raise InputError("The rebuilt weights do not match the artifact's (weights_sha256 differs): the "
                         "checkpoint changed since conversion. Reconvert, or run it on its device.")
    return loaded


def _crop_parts(meta: dict, loaded: LoadedModel) -> dict[str, Callable[[], nn.Module]]:
    def crop_module() -> nn.Module:
        sampler = meta.get("spec", {}).get("sampler")
        if sampler:
            loaded.module.set_sampler(sampler)
        if not meta.get("with_mesh"):
            return loaded.module
        from edgehmr.models.hmr2 import HMR2WithMesh
        from edgehmr.models.smpl import SMPLLayer, load_smpl

        return HMR2WithMesh(loaded.module, SMPLLayer(load_smpl(meta["smpl"]["source"]))).eval()

    return {CROP_PART: crop_module}


def _frame_parts(meta: dict, loaded: LoadedModel) -> dict[str, Callable[[], nn.Module]]:
    from edgehmr.models.sat_hmr import Stage1Graph, Stage2Graph

    return {"stage1": lambda: Stage1Graph(loaded.module).eval(), "stage2": lambda: Stage2Graph(loaded.module).eval()}


# The export module of each part, by the task's input: what the converter was given.
PART_MODULES = {CROPS: _crop_parts, FRAMES: _frame_parts}


def simulation_module(meta: dict, part: str) -> nn.Module:
    """The float32 export module of ``part`` (weights checked against the artifact's hashes)."""
    builders = PART_MODULES[artifact_task(meta).input](meta, rebuild_model(meta))
    if part not in builders:
        raise InputError(f"The artifact has no part '{part}' to simulate; it has {sorted(builders)}.")
    return builders[part]().eval()
