"""The small interface every target converter implements.

A converter module exposes ``convert(job, out_dir) -> ConvertResult`` for every :class:`ExportJob`, one entry or
many. It writes its model file(s) into ``out_dir`` (a staging folder the caller renames into place when everything
succeeded) and never touches anything else. :func:`edgehmr.converters.convert.convert_part` is the one way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgehmr.artifact import DEFAULT_ENTRY
from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.capabilities import Precision


def node_scope(node: torch.fx.Node) -> str | None:
    """Innermost module path of an exported FX node ('' for ops of the top module), None without a module stack
    (nodes that torch.export adds itself)."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


# A calibration sample: one value per model input, with the entry's shapes (batch axis included).
Sample = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class ExportJob:
    """What a converter turns into one part of an artifact: a module and its fixed-shape entries.

    A crop model has one entry (its batch); SAT-HMR's stage 2 one per bucket. Every entry has the same inputs,
    ranks, dtypes and batch; only the sizes of other axes differ, and the artifact stores the weights once.
    """
    module: nn.Module  # eval, float32, returns a tuple of tensors in output_names order
    entries: dict[str, tuple[torch.Tensor, ...]]  # entry name -> example inputs; the first entry is the default
    input_names: list[str]
    output_names: list[str]
    precision: Precision
    model_name: str
    calibration: dict[str, list[Sample]] | None = None  # entry -> calibration samples (calibrated precisions)
    recipe: QuantRecipe | None = None  # what stays float under INT8; None = DEFAULT_INT8_RECIPE
    # Where a converter may keep calibration statistics for the next conversion of the same graph and samples (the
    # --max-drift search's steps differ only in what stays float); None: calibrate every time.
    statistics_dir: Path | None = None

    @classmethod
    def single(cls, module: nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: list[str],
               output_names: list[str], precision: Precision, model_name: str,
               calibration: list[Sample] | None = None, recipe: QuantRecipe | None = None) -> "ExportJob":
        """A job with one entry (:data:`DEFAULT_ENTRY`)."""
        return cls(module, {DEFAULT_ENTRY: tuple(example_inputs)}, list(input_names), list(output_names), precision,
                   model_name, {DEFAULT_ENTRY: calibration} if calibration else None, recipe)

    @property
    def default_entry(self) -> str:
        return next(iter(self.entries))

    @property
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """The default entry's example inputs."""
        return self.entries[self.default_entry]

    @property
    def batch(self) -> int:
        return int(self.example_inputs[0].shape[0])

    @property
    def int8_recipe(self) -> QuantRecipe:
        return self.recipe or DEFAULT_INT8_RECIPE

    def recipe_json(self) -> dict:
        """The INT8 recipe as metadata records it (lists, as it reads back from metadata.json)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.int8_recipe.to_json().items()}

    def with_entry(self, entry: str) -> "ExportJob":
        """The job of one entry only (its calibration included)."""
        calibration = {entry: self.calibration[entry]} if self.calibration and entry in self.calibration else None
        return replace(self, entries={entry: self.entries[entry]}, calibration=calibration)


# INT8 without a model-specific recipe: every linear/conv/matmul INT8, softmax and LayerNorm float (neither runtime
# speeds them up in INT8; see edgehmr.calibration.recipes).
DEFAULT_INT8_RECIPE = QuantRecipe("multishape-default", (), ("softmax", "layernorm"))


def batched_samples(images: np.ndarray, batch: int) -> list[Sample]:
    """Calibration images ``[N, ...]`` as samples of one static batch each (a partial last batch is dropped)."""
    return [(images[i:i + batch],) for i in range(0, len(images) - batch + 1, batch)]


@dataclass
class ConvertResult:
    model_file: str  # relative to the artifact folder
    details: dict = field(default_factory=dict)  # target-specific facts recorded in metadata.json
    kept_fp32: list[str] = field(default_factory=list)  # ops deliberately left in higher precision


def relpath(path: Path, root: Path) -> str:
    return str(path.relative_to(root))
