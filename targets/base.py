"""The runner interface: what validate and profile need from any runtime."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from edgehmr.converters.capabilities import get_target


class Runner(ABC):
    input_names: list[str]
    output_names: list[str]

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference with static-shape float32 inputs; returns float32 outputs by name."""


def open_artifact_runner(artifact_dir: Path, metadata: dict, threads: int | None = None) -> Runner:
    caps = get_target(metadata["target"])
    return importlib.import_module(caps.runner).open_runner(artifact_dir, metadata, threads)
