"""Write an edgehmr reference bundle from your own code's outputs (docs/reference-bundles.md).

Needs only numpy: run it beside the training code your checkpoint came from, on the network inputs and outputs
that code computes (e.g. on your A100, TF32 off), then check an artifact against it:

    edgehmr validate runs/hmr2-vit-s-openvino-int8 --reference my-reference

Example, with 4D-Humans' HMR2 model loaded from the same checkpoint you convert::

    batch = {"img": crops}                                  # [N, 3, 256, 256] from your dataset code
    with torch.no_grad():
        out = model.forward_step(batch)                     # plain PyTorch
    images = crops[..., 32:-32]                             # the 256x192 network input
    write_reference_bundle("my-reference", "hmr2-vit-s", "hmr2_release.ckpt", images.cpu().numpy(), {
        "global_orient": out["pred_smpl_params"]["global_orient"].cpu().numpy(),
        "body_pose": out["pred_smpl_params"]["body_pose"].cpu().numpy(),
        "betas": out["pred_smpl_params"]["betas"].cpu().numpy(),
        "pred_cam": out["pred_cam"].cpu().numpy(),
        "pred_cam_t": out["pred_cam_t"].cpu().numpy(),
    }, preprocessing="hmr2", code="4D-Humans@6ec7965 forward_step", device="A100")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_reference_bundle(folder: str | Path, model: str, checkpoint: str | Path, images: np.ndarray,
                           outputs: dict[str, np.ndarray], preprocessing: str | dict, code: str,
                           device: str = "", samples: list[str] | None = None) -> Path:
    """``images``: the network inputs [N, 3, H, W]; ``outputs``: arrays [N, ...] named as the edgehmr model's
    outputs (an artifact's metadata.json lists them); ``preprocessing``: the crop rule name (``hmr2``, ``vitpose-udp``)
    or, for SAT-HMR, ``{"name": "sat-canvas", "canvas": [W, H]}``; ``code``: what produced the outputs."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; choose a new folder for the bundle")
    images = np.ascontiguousarray(images, dtype=np.float32)
    meta = {
        "kind": "edgehmr-reference",
        "schema_version": 1,
        "producer": {"kind": "external", "code": code, "device": device},
        "model": {"model": model, "checkpoint_sha256": sha256_of(checkpoint)},
        "preprocessing": {"name": preprocessing} if isinstance(preprocessing, str) else preprocessing,
        "samples": samples or [f"sample-{i}" for i in range(len(images))],
    }
    # Written next to the destination, then renamed: a failure leaves nothing half-written.
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.savez(stage / "inputs.npz", image=images)
        np.savez(stage / "outputs.npz", **{k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v
                                           for k, v in outputs.items()})
        (stage / "bundle.json").write_text(json.dumps(meta, indent=1))
        os.replace(stage, folder)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return folder
