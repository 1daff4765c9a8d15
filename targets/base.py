"""The runner interface: what validate and profile need from any runtime."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from edgehmr.converters.capabilities import get_target


class Runner(ABC):
    input_names: list[str]
    output_names: list[str]
    execution = "runtime"  # what runs the model; simulations say so here, and reports carry it

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference with static-shape float32 inputs; returns float32 outputs by name."""


def open_artifact_runner(artifact_dir: Path, metadata: dict, threads: int | None = None) -> Runner:
    caps = get_target(metadata["target"])
    return importlib.import_module(caps.runner).open_runner(artifact_dir, metadata, threads)


@contextlib.contextmanager
def native_output_silenced():
    """Silence what native runtime code prints straight to the process's stdout/stderr (e.g. ExecuTorch's CPU
    probing on x86: "Failed to open midr file"); Python-level redirection cannot catch it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
