"""Reference bundles: FP32 outputs (TF32 off) for a set of network inputs, saved with the model and environment.

Layout of a bundle folder::

    bundle.json   model id + weights or checkpoint hash, preprocessing, producer, environment, sample names
    inputs.npz    image [N, 3, 256, 192] float32 (crop models; SAT-HMR: [N, 3, H, W] on the canvas), ...
    outputs.npz   one array per network output, [N, ...] float32

Two producers write them. ``edgehmr reference`` runs edgehmr's own PyTorch model (the command users run on their
reference GPU, ``--device cuda``). A user's own training code can write one too, so that artifacts are checked
against the implementation the checkpoint was trained with rather than against our re-implementation of it:
``producer.kind`` is then ``external`` and the model is identified by the checkpoint file's sha256 (schema and a
worked example: docs/reference-bundles.md).
"""

from __future__ import annotations

import contextlib
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
from edgehmr.jsonfile import read_json_object
from edgehmr.models import LoadedModel
from edgehmr.preprocess import prepare_crop

BUNDLE_KIND = "edgehmr-reference"
BUNDLE_JSON = "bundle.json"
EDGEHMR_PRODUCER = "edgehmr"  # made by 'edgehmr reference' (our re-implementation)
EXTERNAL_PRODUCER = "external"  # written by the user's own code (docs/reference-bundles.md)


@dataclass
class Bundle:
    path: Path
    meta: dict
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return int(self.inputs["image"].shape[0])

    @property
    def external(self) -> bool:
        return self.meta["producer"]["kind"] == EXTERNAL_PRODUCER

    def describe_reference(self) -> str:
        """One line for reports: which implementation produced the outputs that an artifact is compared with."""
        producer, env = self.meta["producer"], self.meta.get("environment") or {}
        where = env.get("device_name") or env.get("device") or producer.get("device")
        where = f" on {where}" if where else ""
        if self.external:
            return f"external reference: {producer.get('code') or 'user code'}{where}"
        return f"edgehmr reference: edgehmr's PyTorch model{where}"


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
            "producer": {"kind": EDGEHMR_PRODUCER, "code": "edgehmr PyTorch model (edgehmr reference)"},
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
    meta = read_json_object(meta_path, "a reference bundle's bundle.json", "re-create the bundle.")
    try:
        with np.load(path / "inputs.npz", allow_pickle=False) as zi, \
                np.load(path / "outputs.npz", allow_pickle=False) as zo:
            inputs = {k: zi[k] for k in zi.files}
            outputs = {k: zo[k] for k in zo.files}
    except (OSError, ValueError) as e:
        raise InputError(f"Reference bundle {path} is incomplete or corrupt ({e}); re-create it.") from None
    if not isinstance(meta, dict) or meta.get("kind") != BUNDLE_KIND:
        raise InputError(f"{meta_path} is not an edgehmr reference bundle (\"kind\" must be \"{BUNDLE_KIND}\").")
    _check_bundle_meta(meta, inputs, meta_path)
    return Bundle(path, meta, inputs, outputs)


def _check_bundle_meta(meta: dict, inputs: dict[str, np.ndarray], meta_path: Path) -> None:
    """The fields validate relies on, checked once here so a hand-written bundle fails with one line."""
    meta.setdefault("producer", {"kind": EDGEHMR_PRODUCER})  # bundles written before producers were recorded
    producer, model = meta.get("producer"), meta.get("model")
    if not isinstance(producer, dict) or producer.get("kind") not in (EDGEHMR_PRODUCER, EXTERNAL_PRODUCER):
        raise InputError(f"{meta_path}: \"producer\" must be an object with \"kind\" \"{EXTERNAL_PRODUCER}\" or "
                         f"\"{EDGEHMR_PRODUCER}\" (see docs/reference-bundles.md).")
    hash_key = "checkpoint_sha256" if producer["kind"] == EXTERNAL_PRODUCER else "weights_sha256"
    if not isinstance(model, dict) or not isinstance(model.get("model"), str) or not isinstance(model.get(hash_key), str):
        raise InputError(f"{meta_path}: \"model\" must name the model id and its \"{hash_key}\" "
                         f"(see docs/reference-bundles.md).")
    if not isinstance(meta.get("preprocessing"), dict) or not isinstance(meta["preprocessing"].get("name"), str):
        raise InputError(f"{meta_path}: \"preprocessing\" must be an object with the preprocessing \"name\" "
                         f"(hmr2, vitpose-udp or sat-canvas; see docs/reference-bundles.md).")
    image = inputs.get("image")
    if image is None or image.ndim != 4 or image.dtype != np.float32 or not len(image):
        raise InputError(f"{meta_path.parent}/inputs.npz needs \"image\", float32 [N, 3, H, W] with N >= 1 "
                         f"(found {'none' if image is None else f'{image.dtype} {list(image.shape)}'}).")
