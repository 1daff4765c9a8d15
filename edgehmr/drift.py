"""``edgehmr debug drift``: where a quantized or reduced-precision graph first departs from FP32, layer by layer.

The artifact and an FP32 build of the same model and weights (rebuilt from the checkpoint the artifact records,
its hash checked) run on the reference bundle's inputs with every intermediate tensor they share exposed. For each
shared tensor, in graph order:

- ``rel_l2``: its relative L2 error against FP32;
- ``added``: that error minus the largest error among the tensors it was computed from, i.e. the error this
  layer introduced rather than inherited. The ranking is by ``added``: the first layer of a bad chain stands out,
  the ones after it (which only carry the error along) do not.

Each runtime's probe lives in its home: :mod:`edgehmr.targets.onnxruntime_drift` (onnx, and tensorrt's Q/DQ ONNX),
:mod:`edgehmr.targets.openvino_drift`, :mod:`edgehmr.targets.executorch_drift` (the ExecuTorch runtime's own
intermediate outputs of the model lowered again with one XNNPACK call per op); the capability table's ``drift``
field says which target uses which. Core ML cannot run here; its artifacts are told to use coremltools' comparator
on macOS.
"""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgehmr.artifact import parts, read_metadata
from edgehmr.converters.capabilities import get_target
from edgehmr.errors import InputError, SpecError
from edgehmr.reference import load_bundle


@dataclass
class LayerDrift:
    tensor: str
    op: str
    node: str
    rel_l2: float
    added: float
    order: int  # position in the graph (topological)
    scope: str = ""  # module path of the op that computed it ('' when the runtime's graph does not say)


@dataclass
class GraphTensor:
    """One intermediate tensor the artifact and the FP32 graph share, and the float tensors it was computed from."""

    name: str
    op: str
    node: str
    inputs: list[str]
    scope: str = ""


def tensor_errors(tensors: list[GraphTensor], got: dict[str, np.ndarray],
                  want: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative L2 error against FP32 of each shared float tensor both runs hold."""
    errors: dict[str, float] = {}
    for t in tensors:
        a, r = got.get(t.name), want.get(t.name)
        if a is None or r is None or a.shape != r.shape or not np.issubdtype(r.dtype, np.floating):
            continue
        a, r = a.astype(np.float64), r.astype(np.float64)
        errors[t.name] = float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-12))
    return errors


def rank_errors(tensors: list[GraphTensor], errors: dict[str, float], top: int) -> list[LayerDrift]:
    """The part of each tensor's error its layer added (its error minus its inputs' worst), ranked."""
    layers = []
    for i, t in enumerate(tensors):
        if t.name in errors:
            inherited = max((errors.get(n, 0.0) for n in t.inputs), default=0.0)
            layers.append(LayerDrift(t.name, t.op, t.node, errors[t.name], errors[t.name] - inherited, i, t.scope))
    return sorted(layers, key=lambda layer: -layer.added)[:top]


def rank(tensors: list[GraphTensor], got: dict[str, np.ndarray], want: dict[str, np.ndarray],
         top: int) -> list[LayerDrift]:
    """Relative L2 error per shared tensor (graph order) and the part of it each layer added."""
    return rank_errors(tensors, tensor_errors(tensors, got, want), top)


def reference_job(meta: dict):
    """The export job of the model and weights the artifact was converted from (checkpoint hash checked), FP32."""
    import torch

    from edgehmr.artifact import CROP_PART
    from edgehmr.converters.base import ExportJob
    from edgehmr.converters.capabilities import Precision
    from edgehmr.rebuild import simulation_module

    module = simulation_module(meta, CROP_PART)
    example = tuple(torch.zeros(i["shape"]) for i in meta["inputs"])
    return ExportJob.single(module, example, [i["name"] for i in meta["inputs"]],
                            [o["name"] for o in meta["outputs"]], Precision.fp32, meta["model"]["model"])


def reference_onnx(meta: dict) -> onnx.ModelProto:
    """FP32 ONNX of the model and weights the artifact was converted from."""
    from edgehmr.converters.onnx import torch2onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = torch2onnx(reference_job(meta), Path(tmp) / "reference.onnx")
        return onnx.load(str(path))


def worst_per_layer(per_batch: list[list[LayerDrift]]) -> list[LayerDrift]:
    """One entry per layer, the one where it added the most error, ranked."""
    merged: dict[str, LayerDrift] = {}
    for layers in per_batch:
        for layer in layers:
            if layer.tensor not in merged or layer.added > merged[layer.tensor].added:
                merged[layer.tensor] = layer
    return sorted(merged.values(), key=lambda layer: -layer.added)


# A probe is ``layer_drift(artifact folder, metadata, input batches, strict) -> (a note appended to the method line,
# the layers)`` in its runtime's home (edgehmr.targets.<runtime>_drift); the capability table's ``drift`` field
# names it and the method line. ``strict=False``: a probe that cannot vouch for its numbers (OpenVINO's gap check)
# still ranks and states the gap in its note; the --max-drift search ranks only to choose what to try next, and
# measures every step on the artifact itself.


def drift_targets() -> list[str]:
    from edgehmr.converters.capabilities import TARGETS

    return [caps.id for caps in TARGETS.values() if caps.drift]


def debug_drift(artifact_dir: str | Path, bundle_dir: str | Path, samples: int = 4, top: int = 10,
                strict: bool = True) -> dict:
    artifact_dir = Path(artifact_dir)
    meta = read_metadata(artifact_dir)
    drift = get_target(meta["target"]).drift
    if drift is None or len(parts(meta)) > 1:
        raise SpecError(f"debug drift runs {', '.join(drift_targets())} artifacts (not multi-stage SAT-HMR yet). For "
                        f"{meta['target']}: convert the same model with -t onnx or -t openvino at this precision "
                        f"and debug that, or use the vendor tool (coremltools' comparator on macOS).")
    bundle = load_bundle(bundle_dir)
    name = meta["inputs"][0]["name"]
    batch = int(meta["inputs"][0]["shape"][0])
    images = bundle.inputs["image"][:max(batch, min(samples, bundle.count))]
    if len(images) < batch:
        raise InputError(f"the bundle has {len(images)} samples, the artifact takes batches of {batch}.")
    batches = [{name: images[i:i + batch]} for i in range(0, len(images) - batch + 1, batch)]
    method, probe = drift
    note, layers = importlib.import_module(probe).layer_drift(artifact_dir, meta, batches, strict)
    method += note
    return {"artifact": str(artifact_dir), "target": meta["target"], "precision": meta["precision"],
            "samples": batch * len(batches), "method": method, "layers": [asdict(layer) for layer in layers[:top]]}
