"""The runner interface: one ``Runner`` per runtime serves every artifact part, one entry or many.

A target's runner module exposes ``open_runner(artifact_dir, part, options) -> Runner`` for a part record
(:func:`edgehmr.artifact.parts`); :func:`open_artifact_runner` is the one way in for an artifact (validate,
profile, the Predictor, SAT-HMR's pipeline, debug drift, the benchmarks), :func:`open_part_runner` for a part
converted on its own.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgehmr.artifact import parts
from edgehmr.converters.capabilities import get_target
from edgehmr.errors import EdgeHMRError, InputError


@dataclass(frozen=True)
class RunOptions:
    threads: int | None = None  # intra-op threads where the runtime lets Python set them
    # OpenVINO: one compiled model with bounded dynamic axes for every entry instead of one static compiled model
    # per entry; the CPU plugin repacks weights per compiled model, so this holds them once (measured on SAT-HMR
    # stage 2, 3 buckets: 1.9 GB vs 3.6 GB peak) at 1-3% more latency. Other runtimes hold weights once already.
    shared_weights: bool = False
    # The float32 torch module the part was converted from, built on demand, for runtimes that cannot run here
    # and simulate instead (Core ML off macOS); None: such a runtime refuses with its reason.
    simulation: Callable[[], object] | None = None


class Runner(ABC):
    """Runs one entry of a part: feeds must have exactly that entry's shapes."""

    # "runtime" when the target's own runtime runs the model; otherwise a description of the simulation.
    execution = "runtime"

    def __init__(self, part: dict):
        self.part = part
        self.entries: list[str] = list(part["entries"])
        self.input_names: list[str] = list(part["input_names"])
        self.output_names: list[str] = list(part["output_names"])

    @property
    def default_entry(self) -> str:
        return self.entries[0]

    def model_names(self) -> tuple[set[str], set[str]] | None:
        """(input names, output names) the loaded model file declares, where the runtime tells them (None where
        inputs and outputs are positional); checked against the part record when the runner opens."""
        return None

    @property
    def simulated(self) -> bool:
        return self.execution != "runtime"

    def run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference of ``entry``; float inputs as float32, integer inputs (indices) as int64. Returns float32
        outputs by name."""
        outputs = self._run(entry, self.checked_feeds(entry, feeds))
        return {n: np.array(outputs[n], dtype=np.float32, copy=True) for n in self.output_names}

    @abstractmethod
    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with feeds already checked against the entry's shapes and normalised to float32 / int64."""

    def checked_feeds(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if entry not in self.part["entries"]:
            raise InputError(f"Unknown entry '{entry}'; this artifact has {self.entries}.")
        shapes = self.part["entries"][entry]
        checked = {}
        for name in self.input_names:
            if name not in feeds:
                raise InputError(f"Entry '{entry}' needs input '{name}'; got {sorted(feeds)}.")
            value = np.asarray(feeds[name])
            if list(value.shape) != list(shapes[name]):
                raise InputError(f"Input '{name}' of entry '{entry}' has shape {list(value.shape)}; the entry is "
                                 f"fixed to {shapes[name]}. Pad to the entry's shape, or use the entry that "
                                 f"fits: {self.entries}.")
            if np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float32, copy=False)
            elif np.issubdtype(value.dtype, np.integer):
                value = value.astype(np.int64, copy=False)
            else:
                raise InputError(f"Input '{name}' is {value.dtype}; runners take float or integer arrays.")
            checked[name] = np.ascontiguousarray(value)
        return checked


def open_artifact_runner(artifact_dir: str | Path, meta: dict, part: str | None = None, threads: int | None = None,
                         shared_weights: bool = False, simulate: bool = True) -> Runner:
    """The runner of one part of an artifact read with :func:`edgehmr.artifact.read_metadata` (``part`` may be
    left out when there is one: a crop model's). ``simulate=False``: a runtime that cannot run here refuses at once
    instead of building its simulation (profile measures the device, never a simulation)."""
    from edgehmr.rebuild import simulation_module

    artifact_dir = Path(artifact_dir)
    available = parts(meta)
    if part is None:
        if len(available) != 1:
            raise InputError(f"{artifact_dir} has parts {sorted(available)}; name the one to run.")
        part = next(iter(available))
    if part not in available:
        raise InputError(f"{artifact_dir} has no part '{part}'; it has {sorted(available)}.")
    options = RunOptions(threads, shared_weights, (lambda: simulation_module(meta, part)) if simulate else None)
    return open_part_runner(artifact_dir, available[part], options)


def open_part_runner(artifact_dir: str | Path, part: dict, options: RunOptions = RunOptions()) -> Runner:
    """The runner of a part record (:func:`edgehmr.converters.convert.part_metadata`) whose file lies in
    ``artifact_dir``; its target's runner module opens it."""
    runner_module = importlib.import_module(get_target(part["target"]).runner)
    path = Path(artifact_dir) / part["file"]
    try:
        runner = runner_module.open_runner(Path(artifact_dir), part, options)
    except EdgeHMRError:
        raise
    except Exception as e:  # noqa: BLE001 - each runtime reports an unloadable file with its own error types
        raise InputError(f"{path} cannot be loaded by {part['target']} ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:160]}): it is damaged or not this target's model "
                         f"file; re-run 'edgehmr convert'.") from None
    declared = runner.model_names()
    if declared is not None:
        for kind, want, have in (("input", runner.input_names, declared[0]), ("output", runner.output_names,
                                                                               declared[1])):
            if missing := [n for n in want if n not in have]:
                raise InputError(f"{path} has no {kind} '{missing[0]}' that metadata.json names (it has "
                                 f"{sorted(have)}); the two do not belong together: re-run 'edgehmr convert'.")
        if unfed := sorted(declared[0] - set(runner.input_names)):
            raise InputError(f"{path} takes input '{unfed[0]}', which metadata.json does not list; the two do not "
                             f"belong together: re-run 'edgehmr convert'.")
    return runner


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
