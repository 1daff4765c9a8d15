"""The one way into a converter: ``convert_part(target, job, out_dir)``, and the metadata record of its result.

Crop models and SAT-HMR's stages take the same road: a job with one entry or several, checked against the
capability table, converted by the target's module, recorded as a part that :func:`edgehmr.targets.base.open_runner`
reopens.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.capabilities import Precision, get_target
from edgehmr.converters.shapes import entry_shapes, prepare
from edgehmr.progress import step


def convert_part(target_id: str, job: ExportJob, out_dir: Path) -> ConvertResult:
    """Write the target's artifact of ``job`` (every entry, weights once) into ``out_dir``."""
    caps = get_target(target_id)
    prepare(target_id, job)
    job.module.eval()
    entries = f" ({len(job.entries)} shapes)" if len(job.entries) > 1 else ""
    step(f"{job.model_name}: converting for {caps.runtime}{entries}")
    return importlib.import_module(caps.converter).convert(job, Path(out_dir))


def part_metadata(target_id: str, job: ExportJob, result: ConvertResult) -> dict:
    """The JSON-able record of a converted part; :func:`edgehmr.targets.base.open_runner` reopens it."""
    first = job.entries[job.default_entry]
    quantized = job.precision in (Precision.int8, Precision.int8_weights)
    return {
        "target": target_id,
        "file": result.model_file,
        "input_names": list(job.input_names),
        "output_names": list(job.output_names),
        "precision": job.precision.value,
        "entries": entry_shapes(job),
        "input_dtypes": {n: str(t.dtype).removeprefix("torch.") for n, t in zip(job.input_names, first)},
        "recipe": job.recipe_json() if quantized else None,
        "details": result.details,
        "kept_fp32_ops": result.kept_fp32,
    }
