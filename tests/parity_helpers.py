"""Golden parity cases: what the ORIGINAL implementations compute (tests/data/parity/<case>/, copied from the
project's shared fixtures), and the deterministic weights they were computed with.

Every case names the original repository@commit in its ``case.json``. The weights are not stored: they are
regenerated here from the key names and shapes in ``keys.json`` by the fixtures' recipe (every tensor from its own
numpy generator seeded with the CRC-32 of its key), then the case's overrides are applied. The recipe is written
out below rather than imported so that the project's tests do not depend on anything outside the repository.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PARITY_DIR = Path(__file__).parent / "data" / "parity"


def recipe_tensor(key: str, shape) -> np.ndarray:
    """One tensor of the recipe, from its key and shape only."""
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    if len(shape) >= 2:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    last = key.split(".")
    if key.endswith("running_var"):
        values = 1.0 + 0.1 * np.abs(rng.standard_normal(shape))
    elif key.endswith("weight") or last[-1] == "gamma" or "ls1" in last or "ls2" in last:  # scale-like
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    else:  # biases, running means, embeddings of one dimension
        values = 0.02 * rng.standard_normal(shape)
    return values.astype(np.float32)


def _overridden(value: np.ndarray, spec: dict) -> np.ndarray:
    out = value.astype(np.float64)
    if "value" in spec:
        out = np.broadcast_to(np.asarray(spec["value"], np.float64), value.shape).copy()
    if "scale" in spec:
        out = out * np.asarray(spec["scale"], np.float64)
    if "add" in spec:
        out = out + np.asarray(spec["add"], np.float64)
    return out.astype(np.float32)


def recipe_weights(shapes: dict, overrides: dict | None = None) -> dict[str, np.ndarray]:
    """Every key of ``shapes`` from the recipe, then ``overrides`` (alias / value / scale / add) in file order."""
    weights = {key: recipe_tensor(key, shape) for key, shape in shapes.items()}
    for key, spec in (overrides or {}).items():
        if key not in weights:
            raise KeyError(f"override names a key the case does not have: {key}")
        weights[key] = weights[spec["alias"]].copy() if "alias" in spec else _overridden(weights[key], spec)
    return weights


@dataclass(frozen=True)
class ParityCase:
    name: str
    meta: dict  # case.json
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    shapes: dict[str, list[int]]  # keys.json

    @property
    def original(self) -> str:
        return self.meta["original"]

    @property
    def tolerances(self) -> dict:
        return self.meta["tolerances_fp32_abs"]

    def weights(self) -> dict[str, torch.Tensor]:
        """The recipe weights as torch tensors, in the published key layout of the case."""
        made = recipe_weights(self.shapes, self.meta["weights"].get("overrides"))
        return {k: torch.from_numpy(v) for k, v in made.items()}

    def checkpoint(self, path: Path, wrapper: str | None, extra: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the weights as a published checkpoint file (``wrapper``: ``state_dict``, ``model`` or None for a
        flat state dict) plus the model's own non-float buffers (``extra``)."""
        state = {**self.weights(), **(extra or {})}
        torch.save({wrapper: state} if wrapper else state, path)
        return path


def load_case(name: str) -> ParityCase:
    folder = PARITY_DIR / name
    with np.load(folder / "inputs.npz") as i, np.load(folder / "outputs.npz") as o:
        inputs, outputs = dict(i), dict(o)
    return ParityCase(name, json.loads((folder / "case.json").read_text()), inputs, outputs,
                      json.loads((folder / "keys.json").read_text()))


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shape {a.shape} vs golden {b.shape}"
    return float(np.abs(a - b).max()) if a.size else 0.0


def assert_close(name: str, ours, golden, tol: float) -> float:
    """Max |ours - golden| within the case's absolute tolerance; returns it (for the parity table of docs/models.md)."""
    diff = max_abs_diff(ours, golden)
    assert diff <= tol, f"{name}: max |ours - original| = {diff:.3g} > tolerance {tol:g}"
    return diff
