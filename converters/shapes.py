"""Entries of a job: the analysis of which axes differ between them, and their calibration samples.

An :class:`~edgehmr.converters.base.ExportJob` with several entries (SAT-HMR's stage 2: one per bucket) becomes
one artifact on every target, weights stored once:

- onnx: one graph whose axes that differ between entries are dynamic; ONNX Runtime runs each entry's shape.
- openvino: one IR with those axes dynamic; the runner reshapes a copy per entry to its static shapes and
  compiles it, so each entry runs as a static graph.
- executorch: one ``.pte``; fp32 one method with those axes dynamic, int8 one method per entry.
- coreml: one multifunction ``.mlpackage``, one function per entry (iOS 18 / macOS 15).
- tensorrt: the dynamic ONNX, built into one engine with one optimization profile per entry (min = opt = max).

A job with one entry has no dynamic axes: every helper here then yields a static export.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from edgehmr.converters.base import ExportJob
from edgehmr.converters.capabilities import TARGETS, Precision, get_target
from edgehmr.errors import ConversionError, SpecError


def multishape_targets() -> list[str]:
    """Targets that hold multi-shape artifacts (``TargetCaps.multishape``); anything else is refused before any
    work."""
    return [caps.id for caps in TARGETS.values() if caps.multishape]


def supported_precisions(target_id: str, job: ExportJob) -> tuple[Precision, ...]:
    """What the capability table lets ``target_id`` convert ``job`` to: every precision for one entry, the
    ``multishape`` ones for several."""
    caps = get_target(target_id)
    return caps.precisions if len(job.entries) == 1 else caps.multishape


def check_precision(target_id: str, job: ExportJob) -> None:
    """One clear line for a target or precision the capability table does not list for this job."""
    supported = supported_precisions(target_id, job)
    if not supported:
        have = ", ".join(multishape_targets())
        raise ConversionError(f"Target '{target_id}' has no multi-shape export; targets with one: {have}.")
    if job.precision not in supported:
        have = ", ".join(p.value for p in supported)
        kind = "multi-shape artifacts" if len(job.entries) > 1 else "this model"
        raise ConversionError(f"{job.precision.value} is not supported for {kind} yet on target '{target_id}' "
                              f"({job.model_name}); it supports {have}.")
    if job.precision in get_target(target_id).calibrated and not job.calibration:
        raise ConversionError(f"{job.precision.value} export of {job.model_name} needs calibration inputs per entry "
                              f"(ExportJob.calibration).")
    unknown = sorted(set(job.calibration or {}) - set(job.entries))
    if unknown:
        raise SpecError(f"Calibration names entries {unknown} that {job.model_name} does not have.")


def prepare(target_id: str, job: ExportJob) -> None:
    """What every converter checks first (also when called directly)."""
    validate_job(job)
    check_precision(target_id, job)


def validate_job(job: ExportJob) -> None:
    """Entries must agree on everything but the sizes of non-batch axes: same inputs, ranks, dtypes and batch."""
    if not job.entries:
        raise SpecError(f"Export of {job.model_name} needs at least one entry.")
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


def entry_shapes(job: ExportJob) -> dict[str, dict[str, list[int]]]:
    return {entry: {n: list(t.shape) for n, t in zip(job.input_names, inputs)} for entry, inputs in job.entries.items()}


def _varying_axes(job: ExportJob) -> dict[tuple[str, int], tuple[int, ...]]:
    """(input, axis) -> its size in each entry (entry order), for the axes whose size differs between entries.
    Axis 0 (batch) is never among them."""
    varying = {}
    for i, name in enumerate(job.input_names):
        for axis in range(1, job.entries[job.default_entry][i].dim()):
            sizes = tuple(int(inputs[i].shape[axis]) for inputs in job.entries.values())
            if len(set(sizes)) > 1:
                varying[(name, axis)] = sizes
    return varying


def dynamic_axes(job: ExportJob) -> dict[str, dict[int, tuple[int, int]]]:
    """Input name -> {axis: (min size, max size)} for the axes whose size differs between entries."""
    axes: dict[str, dict[int, tuple[int, int]]] = {}
    for (name, axis), sizes in _varying_axes(job).items():
        axes.setdefault(name, {})[axis] = (min(sizes), max(sizes))
    return axes


def dim_names(job: ExportJob) -> dict[tuple[str, int], str]:
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


def torch_dynamic_shapes(job: ExportJob) -> tuple[dict[int, object] | None, ...] | None:
    """``dynamic_shapes`` for torch.export / torch.onnx.export, one item per input (None: that input is static);
    None when no axis differs between the entries (one entry: a static export)."""
    ranges = dynamic_axes(job)
    if not ranges:
        return None
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


def export_entry(job: ExportJob) -> str:
    """The entry traced for the dynamic export: the default one unless a varying axis of it has size 0 or 1,
    which torch.export would specialise (fix) instead of keeping symbolic."""
    varying = _varying_axes(job)
    for index, entry in enumerate(job.entries):
        if all(sizes[index] >= 2 for sizes in varying.values()):
            return entry
    raise SpecError(f"Every entry of {job.model_name} has a varying axis of size 0 or 1; torch.export needs one "
                    f"entry where each of them is at least 2 to keep it dynamic.")


def export_job(job: ExportJob, entry: str | None = None) -> ExportJob:
    """The job of the entry that is traced (with :func:`torch_dynamic_shapes` for the others' sizes)."""
    return job.with_entry(entry or export_entry(job))


def dynamic_axes_json(job: ExportJob) -> dict[str, dict[str, dict]]:
    """JSON form of the dynamic axes for metadata: {input: {axis: {"min", "max", "dim"}}}."""
    names = dim_names(job)
    return {name: {str(axis): {"min": lo, "max": hi, "dim": names[(name, axis)]} for axis, (lo, hi) in axes.items()}
            for name, axes in dynamic_axes(job).items()}


def calibration_counts(job: ExportJob) -> dict[str, int]:
    return {entry: len(samples) for entry, samples in (job.calibration or {}).items()}


def calibration_feeds(job: ExportJob) -> list[dict[str, np.ndarray]]:
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
