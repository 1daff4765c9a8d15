"""The small interface every target converter implements.

A converter module exposes ``convert(job, out_dir) -> ConvertResult``. It writes its model file(s) into ``out_dir``
(a staging folder the caller renames into place when everything succeeded) and never touches anything else.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.capabilities import Precision


def node_scope(node: torch.fx.Node) -> str | None:
    """Innermost module path of an exported FX node ('' for ops of the top module), None without a module stack
    (nodes that torch.export adds itself)."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


@dataclass(frozen=True)
class ExportJob:
    module: nn.Module  # eval mode, float32, returns a tuple in ``output_names`` order
    example_inputs: tuple[torch.Tensor, ...]  # static shapes: the artifact is fixed to these
    input_names: list[str]
    output_names: list[str]
    precision: Precision
    model_name: str
    calibration: np.ndarray | None = None  # [N, ...] model inputs, for precisions that need calibration
    recipe: QuantRecipe | None = None  # what stays float under INT8

    @property
    def batch(self) -> int:
        return int(self.example_inputs[0].shape[0])


@dataclass
class ConvertResult:
    model_file: str  # relative to the artifact folder
    details: dict = field(default_factory=dict)  # target-specific facts recorded in metadata.json
    kept_fp32: list[str] = field(default_factory=list)  # ops deliberately left in higher precision


def relpath(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


@contextlib.contextmanager
def vendor_quiet():
    """Silence vendor tools while they work: progress bars (stderr), version warnings and log lines about native
    pieces that exist only on other platforms. Their exceptions still propagate; converters turn those into
    one clear message."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
