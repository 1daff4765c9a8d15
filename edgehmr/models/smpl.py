"""SMPL: an export-clean linear blend skinning layer, safe model-file loading, and a synthetic model.

The layer takes rotation matrices (HMR2.0 outputs them, so no Rodrigues) and runs in the dtype of its buffers.
The kinematic chain is a Python loop over the fixed SMPL parent table, so it unrolls into a static graph.
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgehmr.errors import InputError

# The 24 SMPL joints in kinematic-tree order (the order of ``joints`` outputs and of the pose rotations).
SMPL_JOINT_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hand", "right_hand")

NUM_VERTICES = 6890
NUM_JOINTS = 24
NUM_BETAS = 10
NUM_FACES = 13776
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass(frozen=True)
class SMPLData:
    """The arrays of an SMPL model file, as plain float64/int64 numpy arrays with the published shapes."""

    v_template: np.ndarray  # [6890, 3] metres
    shapedirs: np.ndarray  # [6890, 3, >=10]
    posedirs: np.ndarray  # [6890, 3, 207]
    J_regressor: np.ndarray  # [24, 6890] dense
    weights: np.ndarray  # [6890, 24]
    kintree_table: np.ndarray  # [2, 24]
    f: np.ndarray  # [13776, 3]
    source: str = "synthetic"

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in REQUIRED_KEYS}


# ---------------------------------------------------------------------------------------------------------------
# Loading official files without chumpy, scipy or arbitrary pickled code.


class _ArrayStateStub:
    """Stands in for chumpy ``Ch`` and scipy sparse matrices: keeps the pickled state, runs nothing."""

    def __setstate__(self, state):
        self.state = state

    def to_numpy(self) -> np.ndarray:
        st = self.state
        if isinstance(st, dict) and "indptr" in st:  # scipy csc_matrix
            shape = tuple(st.get("_shape", st.get("shape")))
            dense = np.zeros(shape, dtype=np.float64)
            indptr, indices, data = st["indptr"], st["indices"], st["data"]
            for col in range(shape[1]):
                rows = indices[indptr[col]:indptr[col + 1]]
                dense[rows, col] = data[indptr[col]:indptr[col + 1]]
            return dense
        if isinstance(st, dict) and "x" in st:  # chumpy Ch keeps its value in 'x'
            return np.asarray(st["x"])
        raise InputError(f"SMPL file holds an object this loader does not know ({type(st).__name__} state).")


def _safe_reconstructor(cls, base, state):
    if cls is not _ArrayStateStub:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return _ArrayStateStub()


class _SMPLUnpickler(pickle.Unpickler):
    """Allows only what official SMPL pickles contain: numpy arrays, chumpy Ch, scipy sparse matrices."""

    _NUMPY = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._NUMPY:
            return getattr(np, name) if module == "numpy" else getattr(np._core.multiarray, name)
        if module.startswith("chumpy") or (module.startswith("scipy.sparse") and name.endswith("_matrix")):
            return _ArrayStateStub
        if (module, name) in {("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")}:
            return _safe_reconstructor
        if (module, name) in {("__builtin__", "object"), ("builtins", "object")}:
            return object
        if (module, name) == ("_codecs", "encode"):  # protocol-2 pickles store array bytes through it
            return codecs.encode
        raise pickle.UnpicklingError(f"SMPL file references '{module}.{name}', which a model file should not")


def _to_array(value) -> np.ndarray:
    return value.to_numpy() if isinstance(value, _ArrayStateStub) else np.asarray(value)


def load_smpl_data(path: str | Path) -> SMPLData:
    """Read an SMPL model file (official Python-2 .pkl, a plain-dict .pkl, or a converted .npz) safely."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SMPL model file not found: {path}. Download SMPL_NEUTRAL.pkl from the SMPL site, "
                         f"or use --smpl synthetic for a shape-only stand-in.")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        else:
            raw = _SMPLUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except OSError as e:
        raise InputError(f"Cannot read SMPL model file {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - hostile bytes make the unpickler raise anything (MemoryError included)
        raise InputError(f"Cannot read SMPL model file {path}: it is damaged or not an SMPL model "
                         f"({type(e).__name__}: {str(e)[:120]}).") from None
    if not isinstance(raw, dict):
        raise InputError(f"SMPL model file {path} holds a {type(raw).__name__}, not an SMPL model's dict.")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise InputError(f"SMPL model file {path} lacks {', '.join(missing)}; is it an SMPL (not SMPL-X) model?")
    kinds = {"kintree_table": np.int64, "f": np.int64}
    try:
        arrays = {k: _to_array(raw[k]).astype(kinds.get(k, np.float64)) for k in REQUIRED_KEYS}
    except (TypeError, ValueError) as e:
        raise InputError(f"SMPL model file {path}: an array is not numeric ({str(e)[:120]}).") from None
    data = SMPLData(**arrays, source=str(path))
    _check_shapes(data)
    return data


def _check_shapes(d: SMPLData) -> None:
    expected = {"v_template": (NUM_VERTICES, 3), "posedirs": (NUM_VERTICES, 3, 207),
                "J_regressor": (NUM_JOINTS, NUM_VERTICES), "weights": (NUM_VERTICES, NUM_JOINTS)}
    for key, shape in expected.items():
        if getattr(d, key).shape != shape:
            raise InputError(f"SMPL model {d.source}: {key} has shape {getattr(d, key).shape}, expected {shape}.")
    if d.shapedirs.ndim != 3 or d.shapedirs.shape[:2] != (NUM_VERTICES, 3) or d.shapedirs.shape[2] < NUM_BETAS:
        raise InputError(f"SMPL model {d.source}: shapedirs has shape {d.shapedirs.shape}, expected (6890, 3, >=10).")
    if d.kintree_table.shape != (2, NUM_JOINTS) or d.f.ndim != 2 or d.f.shape[1] != 3:
        raise InputError(f"SMPL model {d.source}: kintree_table {d.kintree_table.shape} / f {d.f.shape} are not "
                         f"(2, 24) / (F, 3).")
    parents = d.kintree_table[0, 1:]
    if np.any(parents < 0) or np.any(parents >= np.arange(1, NUM_JOINTS)):
        raise InputError(f"SMPL model {d.source}: kintree_table's parents must precede their joints.")
    if d.f.size and (d.f.min() < 0 or d.f.max() >= NUM_VERTICES):
        raise InputError(f"SMPL model {d.source}: face indices outside 0..{NUM_VERTICES - 1}.")
    if not all(np.isfinite(getattr(d, k)).all() for k in ("v_template", "shapedirs", "posedirs", "J_regressor",
                                                           "weights")):
        raise InputError(f"SMPL model {d.source} holds NaN or infinite values.")


def save_smpl_npz(data: SMPLData, path: str | Path) -> Path:
    """Write the chumpy-free .npz form (loads with ``allow_pickle=False``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, **data.as_dict())
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Synthetic model with the real array shapes, for tests and the demo.


def synthetic_smpl_data(seed: int = 0) -> SMPLData:
    """A seeded body-sized stand-in with SMPL's array shapes, parent table and normalised weights.

    Not a human body: vertices are scattered around 24 joint positions laid out like SMPL's rest skeleton, so
    joint regression, skinning and mm-scale errors behave as they would on the real model.
    """
    rng = np.random.default_rng(seed)
    rest_joints = _synthetic_rest_joints()
    owner = rng.integers(0, NUM_JOINTS, NUM_VERTICES)
    v_template = rest_joints[owner] + rng.normal(0.0, 0.04, (NUM_VERTICES, 3))
    d2 = ((v_template[:, None, :] - rest_joints[None]) ** 2).sum(-1)
    weights = np.exp(-d2 / 0.01)
    weights /= weights.sum(1, keepdims=True)
    j_reg = np.zeros((NUM_JOINTS, NUM_VERTICES))
    for j in range(NUM_JOINTS):
        near = np.argsort(d2[:, j])[:12]
        j_reg[j, near] = rng.uniform(0.5, 1.0, near.size)
        j_reg[j] /= j_reg[j].sum()
    kintree = np.stack((np.array([4294967295] + list(SMPL_PARENTS[1:])), np.arange(NUM_JOINTS))).astype(np.int64)
    return SMPLData(
        v_template=v_template,
        shapedirs=rng.normal(0.0, 0.01, (NUM_VERTICES, 3, NUM_BETAS)),
        posedirs=rng.normal(0.0, 0.002, (NUM_VERTICES, 3, 207)),
        J_regressor=j_reg,
        weights=weights,
        kintree_table=kintree,
        f=rng.integers(0, NUM_VERTICES, (NUM_FACES, 3)).astype(np.int64),
        source="synthetic",
    )


def _synthetic_rest_joints() -> np.ndarray:
    """Rough SMPL rest skeleton (metres, y up): offsets from each joint's parent."""
    offsets = np.array([
        [0, 0.0, 0], [0.06, -0.09, 0], [-0.06, -0.09, 0], [0, 0.11, 0], [0.04, -0.38, 0], [-0.04, -0.38, 0],
        [0, 0.13, 0], [0, -0.4, -0.04], [0, -0.4, -0.04], [0, 0.05, 0], [0, -0.05, 0.12], [0, -0.05, 0.12],
        [0, 0.21, 0], [0.08, 0.12, 0], [-0.08, 0.12, 0], [0, 0.09, 0.05], [0.09, 0.03, 0], [-0.09, 0.03, 0],
        [0.26, 0, 0], [-0.26, 0, 0], [0.25, 0, 0], [-0.25, 0, 0], [0.08, 0, 0], [-0.08, 0, 0],
    ])
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        joints[j] = offsets[j] + (joints[SMPL_PARENTS[j]] if j else np.array([0.0, 0.2, 0.0]))
    return joints


def load_smpl(spec: str | Path | None) -> SMPLData:
    """``None`` or ``"synthetic"`` -> the synthetic model; anything else is a path to a model file."""
    if spec is None or str(spec) == "synthetic":
        return synthetic_smpl_data()
    return load_smpl_data(spec)


# ---------------------------------------------------------------------------------------------------------------
# The layer.


class SMPLLayer(nn.Module):
    """Rotation matrices ``[B, 24, 3, 3]`` + betas ``[B, 10]`` -> vertices ``[B, 6890, 3]``, joints ``[B, 24, 3]``.

    Body frame, no translation, metres (as HMR2.0 calls SMPL).
    """

    def __init__(self, data: SMPLData, dtype: torch.dtype = torch.float32):
        super().__init__()
        parents = data.kintree_table[0].astype(np.int64)
        parents[0] = -1
        self.parents = tuple(int(p) for p in parents)
        self.source = data.source

        def buf(name: str, a: np.ndarray) -> None:
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(a), dtype=dtype))

        buf("v_template", data.v_template)
        buf("shapedirs", data.shapedirs[:, :, :NUM_BETAS].reshape(-1, NUM_BETAS).T)  # [10, V*3]
        buf("posedirs", data.posedirs.reshape(-1, 207).T)  # [207, V*3]
        buf("J_regressor", data.J_regressor)
        buf("lbs_weights", data.weights)
        self.register_buffer("faces", torch.as_tensor(data.f.astype(np.int64)), persistent=False)

    def forward(self, rotmats: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = betas.shape[0]
        v_shaped = self.v_template + (betas @ self.shapedirs).reshape(b, NUM_VERTICES, 3)
        joints = self.J_regressor @ v_shaped  # [B, 24, 3]
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(b, 207)
        v_posed = v_shaped + (pose_feature @ self.posedirs).reshape(b, NUM_VERTICES, 3)
        posed_joints, rel_transforms = self._kinematic_chain(rotmats, joints)
        t = (self.lbs_weights @ rel_transforms.reshape(b, NUM_JOINTS, 12)).reshape(b, NUM_VERTICES, 3, 4)
        verts = (t[..., :3] * v_posed[:, :, None, :]).sum(-1) + t[..., 3]
        return verts, posed_joints

    def _kinematic_chain(self, rotmats: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rotations/positions per joint; returns posed joints and the skinning transforms ``[B, 24, 3, 4]``."""
        world_r: list[torch.Tensor] = []
        world_t: list[torch.Tensor] = []
        for j, parent in enumerate(self.parents):
            if parent < 0:
                world_r.append(rotmats[:, j])
                world_t.append(joints[:, j])
            else:
                rel = joints[:, j] - joints[:, parent]
                world_r.append(world_r[parent] @ rotmats[:, j])
                world_t.append(world_t[parent] + (world_r[parent] @ rel[..., None])[..., 0])
        r = torch.stack(world_r, dim=1)  # [B, 24, 3, 3]
        posed = torch.stack(world_t, dim=1)  # [B, 24, 3]
        # Skinning transform moves a rest-pose vertex: x -> R (x - J_rest) + J_posed.
        trans = posed - (r @ joints[..., None])[..., 0]
        return posed, torch.cat((r, trans[..., None]), dim=-1)
