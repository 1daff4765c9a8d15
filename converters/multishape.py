"""Multi-shape artifacts: one model, several static input shapes ("entries"), weights stored once.

SAT-HMR's stage 2 takes token buffers padded to one of a few bucket lengths. Exporting one artifact per bucket
would store the weights once per bucket; instead every target holds all entries in one artifact:

- onnx: one graph whose axes that differ between entries are dynamic; ONNX Runtime runs each entry's shape.
- openvino: one IR with those axes dynamic; the runner reshapes a copy per entry to its static shapes and
  compiles it, so each entry runs as a static graph.
- executorch: one ``.pte`` with one method per entry (XNNPACK data shared between methods).
- coreml: one multifunction ``.mlpackage``, one function per entry (iOS 18 / macOS 15).
- tensorrt: the dynamic ONNX, built into one engine with one optimization profile per entry (min = opt = max).

Each target's converter module has ``convert_multishape(job, out_dir)`` and each runner module
``open_multishape_runner(artifact_dir, part, threads, simulation_module)``; this module holds what they share:
the job, the dynamic-axis analysis, the metadata record of a converted part and the runner interface.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.capabilities import TARGETS, Precision, get_target
from edgehmr.errors import ConversionError, InputError, SpecError


@dataclass(frozen=True)
class MultiShapeJob:
    module: nn.Module  # eval, float32, returns a tuple of tensors in output_names order
    entries: dict[str, tuple[torch.Tensor, ...]]  # entry name -> example inputs; the first entry is the default
    input_names: list[str]
    output_names: list[str]
    precision: Precision
    model_name: str
    calibration: dict[str, list[tuple[np.ndarray, ...]]] | None = None  # entry -> calibration inputs (int8 only)
    recipe: QuantRecipe | None = None  # int8: what stays float; None = DEFAULT_INT8_RECIPE

    @property
    def default_entry(self) -> str:
        return next(iter(self.entries))

    @property
    def int8_recipe(self) -> QuantRecipe:
        return self.recipe or DEFAULT_INT8_RECIPE

    def recipe_json(self) -> dict:
        """The INT8 recipe as metadata records it (lists, as it reads back from metadata.json)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.int8_recipe.to_json().items()}


# INT8 without a model-specific recipe: every linear/conv/matmul INT8, softmax and LayerNorm float (neither runtime
# speeds them up in INT8; see edgehmr.calibration.recipes).
DEFAULT_INT8_RECIPE = QuantRecipe("multishape-default", (), ("softmax", "layernorm"))


def multishape_targets() -> list[str]:
    """Targets that hold multi-shape artifacts (``TargetCaps.multishape``); anything else is refused before any
    work."""
    return [caps.id for caps in TARGETS.values() if caps.multishape]


def check_precision(target_id: str, job: MultiShapeJob) -> None:
    """One clear line for a target or precision without a multi-shape path."""
    supported = get_target(target_id).multishape
    if not supported:
        have = ", ".join(multishape_targets())
        raise ConversionError(f"Target '{target_id}' has no multi-shape export; targets with one: {have}.")
    if job.precision not in supported:
        have = ", ".join(p.value for p in supported)
        raise ConversionError(f"{job.precision.value} is not supported for multi-shape artifacts yet on target "
                              f"'{target_id}' ({job.model_name}); it supports {have}.")
    if job.precision == Precision.int8 and get_target(target_id).calibrated and not job.calibration:
        raise ConversionError(f"INT8 multi-shape export of {job.model_name} needs calibration inputs per entry "
                              f"(MultiShapeJob.calibration).")


def prepare(target_id: str, job: MultiShapeJob) -> None:
    """What every target's ``convert_multishape`` checks first (also when called directly)."""
    check_precision(target_id, job)
    validate_job(job)


def validate_job(job: MultiShapeJob) -> None:
    """Entries must agree on everything but the sizes of non-batch axes: same inputs, ranks, dtypes and batch."""
    if not job.entries:
        raise SpecError(f"Multi-shape export of {job.model_name} needs at least one entry.")
    first_name = job.default_entry
    first = job.entries[first_name]
    for name, inputs in job.entries.items():
        if len(inputs) != len(job.input_names):
            raise SpecError(f"Entry '{name}' has {len(inputs)} inputs; input_names lists {len(job.input_names)}.")
        for input_name, t, ref in zip(job.input_names, inputs, first):
            if t.dim() != ref.dim() or t.dtype != ref.dtype:
                raise SpecError(f"Input '{input_name}' of entry '{name}' is {t.dtype} of rank {t.dim()}; entry "
                                f"'{first_name}' has {ref.dtype} of rank {ref.dim()}. Entries differ in sizes only.")
            if t.dim() and t.shape[0] != ref.shape[0]:
                raise SpecError(f"Input '{input_name}' of entry '{name}' has batch {t.shape[0]}, entry "
                                f"'{first_name}' {ref.shape[0]}: the batch axis is the same for every entry.")


def entry_shapes(job: MultiShapeJob) -> dict[str, dict[str, list[int]]]:
    return {entry: {n: list(t.shape) for n, t in zip(job.input_names, inputs)} for entry, inputs in job.entries.items()}


def _varying_axes(job: MultiShapeJob) -> dict[tuple[str, int], tuple[int, ...]]:
    """(input, axis) -> its size in each entry (entry order), for the axes whose size differs between entries.
    Axis 0 (batch) is never among them."""
    varying = {}
    for i, name in enumerate(job.input_names):
        for axis in range(1, job.entries[job.default_entry][i].dim()):
            sizes = tuple(int(inputs[i].shape[axis]) for inputs in job.entries.values())
            if len(set(sizes)) > 1:
                varying[(name, axis)] = sizes
    return varying


def dynamic_axes(job: MultiShapeJob) -> dict[str, dict[int, tuple[int, int]]]:
    """Input name -> {axis: (min size, max size)} for the axes whose size differs between entries."""
    axes: dict[str, dict[int, tuple[int, int]]] = {}
    for (name, axis), sizes in _varying_axes(job).items():
        axes.setdefault(name, {})[axis] = (min(sizes), max(sizes))
    return axes


def dim_names(job: MultiShapeJob) -> dict[tuple[str, int], str]:
    """(input, axis) -> name of its symbolic dimension. Axes with the same size in every entry share one name.

    reason: an index tensor and its mask (both [B, n]) must be one symbol for torch.export, or the graph cannot
    prove they match where they meet. Axes that merely happen to agree in every entry are tied as well: the
    artifact then only accepts them equal, which every entry satisfies.
    """
    by_pattern: dict[tuple[int, ...], str] = {}
    names = {}
    for (name, axis), sizes in _varying_axes(job).items():
        if sizes not in by_pattern:
            by_pattern[sizes] = re.sub(r"\W", "_", f"{name}_dim{axis}")
        names[(name, axis)] = by_pattern[sizes]
    return names


def torch_dynamic_shapes(job: MultiShapeJob) -> tuple[dict[int, object] | None, ...]:
    """``dynamic_shapes`` for torch.export / torch.onnx.export, one item per input (None: fully static)."""
    ranges = dynamic_axes(job)
    dims: dict[str, torch.export.Dim] = {}
    for (name, axis), dim_name in dim_names(job).items():
        lo, hi = ranges[name][axis]
        # reason: torch.export specialises sizes 0 and 1, so the symbolic range starts at 2 unless an entry is smaller.
        dims.setdefault(dim_name, torch.export.Dim(dim_name, min=min(lo, 2), max=hi))
    names = dim_names(job)
    shapes = []
    for i, name in enumerate(job.input_names):
        spec = {axis: dims[names[(name, axis)]] for axis in range(job.entries[job.default_entry][i].dim())
                if (name, axis) in names}
        shapes.append(spec or None)
    return tuple(shapes)


def export_entry(job: MultiShapeJob) -> str:
    """The entry traced for the dynamic export: the default one unless a varying axis of it has size 0 or 1,
    which torch.export would specialise (fix) instead of keeping symbolic."""
    varying = _varying_axes(job)
    for index, entry in enumerate(job.entries):
        if all(sizes[index] >= 2 for sizes in varying.values()):
            return entry
    raise SpecError(f"Every entry of {job.model_name} has a varying axis of size 0 or 1; torch.export needs one "
                    f"entry where each of them is at least 2 to keep it dynamic.")


def export_job(job: MultiShapeJob, entry: str | None = None) -> ExportJob:
    """The single-shape job of one entry, so converters reuse their single-shape export helpers."""
    entry = entry or export_entry(job)
    return ExportJob(job.module, job.entries[entry], job.input_names, job.output_names, job.precision,
                     job.model_name)


def dynamic_axes_json(job: MultiShapeJob) -> dict[str, dict[str, dict]]:
    """JSON form of the dynamic axes for metadata: {input: {axis: {"min", "max", "dim"}}}."""
    names = dim_names(job)
    return {name: {str(axis): {"min": lo, "max": hi, "dim": names[(name, axis)]} for axis, (lo, hi) in axes.items()}
            for name, axes in dynamic_axes(job).items()}


def calibration_counts(job: MultiShapeJob) -> dict[str, int]:
    return {entry: len(samples) for entry, samples in (job.calibration or {}).items()}


def calibration_feeds(job: MultiShapeJob) -> list[dict[str, np.ndarray]]:
    """Every entry's calibration samples as feeds (float32 / int64), entry by entry.

    reason: the entries share weights and so one set of quantization scales; calibrating on all of them makes the
    activation ranges cover every bucket's statistics rather than the first one's.
    """
    shapes = entry_shapes(job)
    feeds = []
    for entry, samples in (job.calibration or {}).items():
        for k, sample in enumerate(samples):
            if len(sample) != len(job.input_names):
                raise SpecError(f"Calibration sample {k} of entry '{entry}' has {len(sample)} inputs; the model "
                                f"takes {len(job.input_names)}.")
            feed = {}
            for name, value in zip(job.input_names, sample):
                value = np.asarray(value)
                if list(value.shape) != shapes[entry][name]:
                    raise SpecError(f"Calibration sample {k} of entry '{entry}': input '{name}' has shape "
                                    f"{list(value.shape)}, the entry {shapes[entry][name]}.")
                feed[name] = np.ascontiguousarray(
                    value.astype(np.float32 if np.issubdtype(value.dtype, np.floating) else np.int64, copy=False))
            feeds.append(feed)
    return feeds


def convert_multishape(target_id: str, job: MultiShapeJob, out_dir: Path) -> ConvertResult:
    """Write the target's multi-shape artifact into ``out_dir`` (its converter module's ``convert_multishape``)."""
    caps = get_target(target_id)
    prepare(target_id, job)
    if job.calibration:
        unknown = sorted(set(job.calibration) - set(job.entries))
        if unknown:
            raise SpecError(f"Calibration names entries {unknown} that {job.model_name} does not have.")
    job.module.eval()
    return importlib.import_module(caps.converter).convert_multishape(job, Path(out_dir))


def part_metadata(target_id: str, job: MultiShapeJob, result: ConvertResult) -> dict:
    """The JSON-able record of a converted multi-shape part; :func:`open_multishape_runner` reopens it."""
    first = job.entries[job.default_entry]
    return {
        "target": target_id,
        "file": result.model_file,
        "input_names": list(job.input_names),
        "output_names": list(job.output_names),
        "precision": job.precision.value,
        "entries": entry_shapes(job),
        "input_dtypes": {n: str(t.dtype).removeprefix("torch.") for n, t in zip(job.input_names, first)},
        "details": result.details,
    }


class MultiShapeRunner(ABC):
    """Runs one entry of a multi-shape artifact: feeds must have exactly that entry's shapes."""

    # "runtime" when the target's own runtime runs the model; otherwise a description of the simulation.
    execution = "runtime"

    def __init__(self, part: dict):
        self.part = part
        self.entries: list[str] = list(part["entries"])
        self.input_names: list[str] = list(part["input_names"])
        self.output_names: list[str] = list(part["output_names"])

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
                raise InputError(f"Input '{name}' is {value.dtype}; multi-shape runners take float or integer "
                                 f"arrays.")
            checked[name] = np.ascontiguousarray(value)
        return checked


def open_multishape_runner(artifact_dir: Path, part: dict, threads: int | None = None,
                           simulation_module: nn.Module | None = None,
                           shared_weights: bool = False) -> MultiShapeRunner:
    """Open the runner of a part recorded by :func:`part_metadata`.

    ``simulation_module`` (the float32 module the part was converted from) is used only where the runtime cannot
    run here (Core ML off macOS): the runner then computes in torch and says so in ``execution``.
    ``shared_weights`` (OpenVINO): one compiled model with bounded dynamic axes for every entry instead of one
    static compiled model per entry; the CPU plugin repacks weights per compiled model, so this holds them once
    (measured on SAT-HMR stage 2, 3 buckets: 1.9 GB vs 3.6 GB peak) at 1-3% more latency. Other targets already
    hold weights once and ignore it.
    """
    caps = get_target(part["target"])
    runner_module = importlib.import_module(caps.runner)
    if not hasattr(runner_module, "open_multishape_runner"):
        raise ConversionError(f"Target '{caps.id}' has no multi-shape runner.")
    if shared_weights and caps.id == "openvino":
        return runner_module.open_multishape_runner(Path(artifact_dir), part, threads, simulation_module,
                                                    shared_weights=True)
    return runner_module.open_multishape_runner(Path(artifact_dir), part, threads, simulation_module)
