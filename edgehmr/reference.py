"""Reference bundles: FP32 PyTorch outputs (TF32 off) for a set of crops, saved with the model hash and environment.

Layout of a bundle folder::

    bundle.json   model id + weights hash, preprocessing, environment (device name, versions), sample names
    inputs.npz    image [N, 3, 256, 192] float32, center [N, 2], size [N, 2], image_size [N, 2]
    outputs.npz   one array per network output, [N, ...] float32

This is the command users run on their reference GPU (``--device cuda``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from edgehmr.artifact import staged_dir, write_json
from edgehmr.calibration.sources import Sample
from edgehmr.environment import environment
from edgehmr.errors import InputError, SpecError
from edgehmr.models import LoadedModel
from edgehmr.preprocess import prepare_crop

BUNDLE_KIND = "edgehmr-reference"
BUNDLE_JSON = "bundle.json"


@dataclass
class Bundle:
    path: Path
    meta: dict
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return int(self.inputs["image"].shape[0])


@contextlib.contextmanager
def strict_fp32():
    """Disable TF32 (and reduced-precision reductions) so CUDA results are true FP32."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction) = saved[:3]
        torch.set_float32_matmul_precision(saved[3])


def crops_from_samples(samples: list[Sample], loaded: LoadedModel) -> dict[str, np.ndarray]:
    crops = [prepare_crop(s.image, s.box, loaded.info.crop) for s in samples]
    return {
        "image": np.stack([c.image for c in crops]),
        "center": np.stack([c.center for c in crops]),
        "size": np.stack([c.size for c in crops]),
        "image_size": np.stack([c.image_size for c in crops]),
    }


def run_reference(loaded: LoadedModel, images: np.ndarray, device: str = "cpu", batch_size: int = 8,
                  progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError("--device cuda was asked for but no CUDA GPU is visible to PyTorch here.")
    module = loaded.module.to(device)
    chunks: list[tuple[torch.Tensor, ...]] = []
    with strict_fp32(), torch.no_grad():
        for i in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[i:i + batch_size]).to(device)
            chunks.append(tuple(o.float().cpu() for o in module(batch)))
            if progress:
                progress(len(batch))
    loaded.module.to("cpu")
    names = loaded.info.output_names
    return {n: torch.cat([c[k] for c in chunks]).numpy() for k, n in enumerate(names)}


def make_bundle(loaded: LoadedModel, samples: list[Sample], out: Path, device: str = "cpu", source: str = "",
                batch_size: int = 8, progress: Callable[[int], None] | None = None) -> Path:
    inputs = crops_from_samples(samples, loaded)
    outputs = run_reference(loaded, inputs["image"], device, batch_size, progress)
    return save_bundle(out, loaded, inputs, outputs, loaded.info.crop.to_json(), source, [s.name for s in samples],
                       device)


def save_bundle(out: Path, loaded: LoadedModel, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                preprocessing: dict, source: str, sample_names: list[str], device: str,
                extra: dict | None = None) -> Path:
    """Write a bundle folder atomically (nothing half-written on error)."""
    with staged_dir(out) as stage:
        np.savez(stage / "inputs.npz", **inputs)
        np.savez(stage / "outputs.npz", **outputs)
        write_json(stage / BUNDLE_JSON, {
            "kind": BUNDLE_KIND,
            "schema_version": 1,
            "model": loaded.describe() | {"family": loaded.info.family},
            "preprocessing": preprocessing,
            "source": source,
            "samples": sample_names,
            "tf32": False,
            "environment": environment(device),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        } | (extra or {}))
    return out


def load_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    meta_path = path / BUNDLE_JSON
    if not meta_path.is_file():
        raise InputError(f"{path} is not a reference bundle (no {BUNDLE_JSON}); create one with 'edgehmr reference'.")
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(path / "inputs.npz", allow_pickle=False) as zi, \
                np.load(path / "outputs.npz", allow_pickle=False) as zo:
            inputs = {k: zi[k] for k in zi.files}
            outputs = {k: zo[k] for k in zo.files}
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise InputError(f"Reference bundle {path} is incomplete or corrupt ({e}); re-create it.") from None
    if meta.get("kind") != BUNDLE_KIND:
        raise InputError(f"{meta_path} is not an edgehmr reference bundle.")
    return Bundle(path, meta, inputs, outputs)
