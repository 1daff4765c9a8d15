"""The model registry: one ``ModelInfo`` per user-facing model id (``edgehmr models`` lists it)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from edgehmr.errors import SpecError
from edgehmr.preprocess import CropRule
from edgehmr.tasks import Task, family_task


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str, ...]  # "B" for the batch dimension
    meaning: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "hmr2" | "vitpose" | "sat-hmr": the architecture family; its task (below) selects the steps
    description: str
    build: Callable[[], nn.Module]  # architecture only, parameters uninitialised
    init_weights: Callable[[nn.Module], None]  # seeded "untrained" weights
    filter_checkpoint: Callable[[dict], dict]  # published layout -> our state dict (drops training-only keys)
    crop: CropRule | None  # person-crop rule; None for full-frame models (SAT-HMR)
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    checkpoint_layout: str  # human description of the accepted published layout
    # Runs one representative forward for `edgehmr models`' GMACs where ``module(image)`` is not the model's
    # whole computation (two-stage models); None: ``module(inputs[0])``.
    cost_forward: Callable[[nn.Module], object] | None = None
    # Key of the default INT8 recipe (calibration.recipes.DEFAULT_RECIPES); None: the family's.
    recipe: str | None = None
    # "target" or "target/precision" -> why this model cannot be converted so (convert refuses with that reason)
    unsupported_targets: dict[str, str] = field(default_factory=dict)
    # Deformable-attention sampling formulations the module can export (first: default); ``--sampler`` picks one
    # and the module's ``set_sampler(name)`` applies it.
    samplers: tuple[str, ...] = ()
    # A tiny test model (``test-*``): the family's real code at a size tests convert in seconds; hidden from
    # ``edgehmr models`` unless ``--all``, usable by every command.
    test_only: bool = False

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def task(self) -> Task:
        """What the pipeline does with this model (crops or frames in, mesh or keypoints out)."""
        return family_task(self.family)


_REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name} registered twice")
    _REGISTRY[info.name] = info
    return info


def list_models(include_test: bool = False) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, info in _REGISTRY.items() if include_test or not info.test_only)


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"Unknown model '{name}'.{hint} Run 'edgehmr models' for the list.")
    return _REGISTRY[name]


def _ensure_loaded() -> None:
    # Importing the family modules registers their variants.
    from edgehmr.models import deformable_hmr, hierarchical, hmr2, sat_registry, tiny, vitpose  # noqa: F401
