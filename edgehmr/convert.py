"""``edgehmr convert``: spec -> model -> target converter -> artifact folder with ``metadata.json``."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from edgehmr.artifact import CROP_PART, METADATA, SCHEMA_VERSION, artifact_name, file_hashes, staged_dir, write_json
from edgehmr.calibration.dataset import CalibrationSet, build_calibration
from edgehmr.calibration.recipes import QuantRecipe, check_scopes
from edgehmr.converters.base import ExportJob, batched_samples
from edgehmr.converters.capabilities import TargetCaps, get_target
from edgehmr.converters.convert import convert_part, part_metadata
from edgehmr.progress import step
from edgehmr.environment import environment
from edgehmr.errors import SpecError
from edgehmr.models import LoadedModel, load_model
from edgehmr.models.geometry import CROP_SIZE, FOCAL_LENGTH
from edgehmr.models.hmr2 import MESH_OUTPUTS, HMR2WithMesh
from edgehmr.models.smpl import SMPLLayer, load_smpl
from edgehmr.spec import ConvertSpec
from edgehmr.tasks import KEYPOINTS, MESH

MESH_MODEL_SCOPE = "hmr2"  # attribute names inside HMR2WithMesh
MESH_SMPL_SCOPE = "smpl"

# What an app does with a crop model's outputs, by the task's output.
POSTPROCESS = {
    MESH: {
        "rotations": "rotation matrices; HMR2.0 6D convention applied inside the graph",
        "camera": {"focal_length_px": FOCAL_LENGTH, "crop_size_px": CROP_SIZE,
                   "crop_translation": "t = (tx, ty, 2*f/(crop*s))",
                   "full_image_translation": "f_full = f/crop*max(W,H); bs = box_side*s; "
                                             "t = (2*(cx-W/2)/bs + tx, 2*(cy-H/2)/bs + ty, 2*f_full/bs)"},
    },
    KEYPOINTS: {
        "keypoints": "COCO-17", "decoder": "argmax + DARK-UDP (Gaussian blur 11x11), optional flip averaging",
        "heatmap_to_image": "x = x_hm*(w_roi)/(48-1) + cx - w_roi/2; y likewise with 64 and h_roi",
    },
}


def build_export_module(loaded: LoadedModel, spec: ConvertSpec) -> tuple[torch.nn.Module, list[str], dict | None]:
    module, outputs, smpl_meta = loaded.module, list(loaded.info.output_names), None
    if spec.with_mesh:
        smpl = load_smpl(spec.smpl)
        module = HMR2WithMesh(loaded.module, SMPLLayer(smpl)).eval()
        outputs += [o.name for o in MESH_OUTPUTS]
        smpl_meta = {"source": smpl.source, "joints": "24 SMPL joints (posed, body frame)"}
    return module, outputs, smpl_meta


def export_recipe(recipe: QuantRecipe | None, module: torch.nn.Module, with_mesh: bool) -> QuantRecipe | None:
    """The spec's recipe, re-rooted for the mesh wrapper (which also keeps SMPL skinning float)."""
    if recipe is None:
        return None
    if with_mesh:
        scopes = tuple(f"{MESH_MODEL_SCOPE}.{s}" for s in recipe.keep_float_scopes) + (MESH_SMPL_SCOPE,)
        recipe = dataclasses.replace(recipe, keep_float_scopes=scopes)
    check_scopes(recipe, module)
    return recipe


@contextlib.contextmanager
def sampler_applied(module: torch.nn.Module, sampler: str | None):
    """Export with the spec's deformable-attention sampler; the loaded model (shared by callers) is restored."""
    if sampler is None:
        yield
        return
    before = module.sampler
    module.set_sampler(sampler)
    try:
        yield
    finally:
        module.set_sampler(before)


def calibration_for(spec: ConvertSpec, loaded: LoadedModel, progress=None) -> CalibrationSet | None:
    if not spec.calib:
        return None
    return build_calibration(spec.calib, loaded.info.crop, spec.calib_count, spec.calib_boxes, spec.seed, progress)


def artifact_path(spec: ConvertSpec) -> Path:
    return Path(spec.out_dir) / artifact_name(spec.model, spec.target, spec.precision.value, spec.with_mesh)


def convert(spec: ConvertSpec, loaded: LoadedModel | None = None, calibration: CalibrationSet | None = None,
            statistics_dir: Path | None = None) -> Path:
    """Run the conversion described by ``spec``; returns the artifact folder. ``statistics_dir``: where the
    converter may keep calibration statistics for a later conversion of the same model and samples
    (:attr:`ExportJob.statistics_dir`)."""
    caps = get_target(spec.target)
    loaded = loaded or load_model(spec.model, spec.checkpoint, trust_checkpoint=spec.trust_checkpoint, seed=spec.seed)
    calibration = calibration or calibration_for(spec, loaded)
    step("building the export module" + (" with SMPL" if spec.with_mesh else ""))
    module, output_names, smpl_meta = build_export_module(loaded, spec)
    recipe = export_recipe(spec.recipe, module, spec.with_mesh)
    info = loaded.info
    gen = torch.Generator().manual_seed(spec.seed)
    example = tuple(torch.randn(spec.batch, *t.shape[1:], generator=gen) for t in info.inputs)
    if calibration is not None and len(calibration.images) < spec.batch:
        raise SpecError(f"{len(calibration.images)} calibration samples cannot fill one batch of {spec.batch}.")
    job = ExportJob.single(module, example, [t.name for t in info.inputs], output_names, spec.precision, spec.model,
                           batched_samples(calibration.images, spec.batch) if calibration is not None else None,
                           recipe)
    job = dataclasses.replace(job, statistics_dir=statistics_dir)
    final = artifact_path(spec)
    start = time.perf_counter()
    with staged_dir(final) as stage, sampler_applied(loaded.module, spec.sampler):
        result = convert_part(caps.id, job, stage)
        step("writing metadata.json")
        with torch.no_grad():
            shapes = [list(o.shape) for o in module(*example)]
        write_metadata(stage, loaded, caps, spec, start, {
            "with_mesh": spec.with_mesh,
            "smpl": smpl_meta,
            "inputs": [{"name": t.name, "shape": [spec.batch, *t.shape[1:]], "dtype": "float32",
                        "meaning": t.meaning} for t in info.inputs],
            "outputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in zip(output_names, shapes)],
            "preprocessing": info.crop.to_json(),
            "postprocessing": POSTPROCESS[info.task.output],
            "parts": {CROP_PART: part_metadata(caps.id, job, result)},
            "quantization": None if recipe is None else {
                "recipe": recipe.to_json(),
                "calibration": calibration.describe() if calibration is not None else None,
            },
        })
    return final


def write_metadata(stage: Path, loaded: LoadedModel, caps: TargetCaps, spec: ConvertSpec, started: float,
                   fields: dict) -> None:
    """The one writer of ``metadata.json``: what every artifact records (model, task, target, precision, file
    hashes, environment, time), then the task's own ``fields`` (the parts; a crop model's inputs and outputs,
    SAT-HMR's canvas and buckets), with the file hashes taken last, over everything in the staging folder."""
    info = loaded.info
    record = {
        "schema_version": SCHEMA_VERSION,
        "model": loaded.describe() | {"family": info.family, "description": info.description},
        "task": info.task.name,
        "target": caps.id,
        "runtime": caps.runtime,
        "precision": spec.precision.value,
        "spec": spec.to_dict(),  # the whole resolved spec: what was asked for, defaults filled in
    } | fields
    record |= {
        "files_sha256": file_hashes(stage),
        "environment": environment("cpu"),
        "convert_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(stage / METADATA, record)
