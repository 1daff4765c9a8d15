"""Reading checkpoints safely and loading them strictly, with a readable key/shape diff on mismatch.

Safety: ``torch.load`` always runs with ``weights_only=True``. A Lightning checkpoint (4D-Humans) pickles its yacs
config in ``hyper_parameters``; mapping yacs' class name to OrderedDict lets it unpickle as plain data,
without yacs and without running anything. Any other pickled object stops the load unless the user passes
``--trust-checkpoint``.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgehmr.errors import CheckpointMismatchError, InputError


# reason: torch's weights-only unpickler allows SETITEM only on dict/OrderedDict and BUILD (the instance
# attributes yacs pickles) only on OrderedDict, so the CfgNode's data lands in an OrderedDict.
_DATA_ONLY_GLOBALS = [(collections.OrderedDict, "yacs.config.CfgNode")]


def read_checkpoint(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read a ``.ckpt``/``.pth``/``.pt``/``.safetensors`` file and return its flat tensor state dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise InputError(f"Checkpoint {path} is not a readable safetensors file ({e}).") from None
    _check_torch_format(path)
    obj = _torch_load(path, trust)
    return _unwrap_state_dict(obj, path)


# torch.save writes a zip archive (since 1.6) or, in the legacy format, a pickle (protocol 2+ starts with 0x80).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _check_torch_format(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise InputError(f"Checkpoint {path} is empty (0 bytes); copy it again.")
    if not head.startswith(_TORCH_MAGIC):
        raise InputError(f"Checkpoint {path} is not a PyTorch checkpoint (neither torch.save's zip archive nor a "
                         f"pickle) nor a .safetensors file; check that it is the weights file.")


def _torch_load(path: Path, trust: bool):
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_DATA_ONLY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # "Unsupported global: GLOBAL x.y" or "Trying to load unsupported GLOBAL posix.system ...": a pickled object
        # (code); any other unpickler error is damage.
        found = [ln.strip() for ln in str(e).splitlines() if "unsupported global" in ln.lower()]
        if found and not trust:
            raise InputError(
                f"Checkpoint {path} contains pickled Python objects that could run code ({found[0]}). "
                f"If you trust where it came from, re-run with --trust-checkpoint.") from None
        raise InputError(f"Checkpoint {path} is corrupt ({_unpickler_reason(e)}); copy it again.") from None
    except Exception as e:  # noqa: BLE001 - hostile bytes make the unpickler raise anything (IndexError, KeyError)
        raise InputError(f"Checkpoint {path} is truncated or corrupt ({type(e).__name__}: {_first_line(e)}); copy "
                         f"it again.") from None


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:200]


def _unpickler_reason(e: BaseException) -> str:
    """The weights-only unpickler's own reason (e.g. "Unsupported operand 201"), not torch's paragraph around it."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    marks = [i for i, ln in enumerate(lines) if "WeightsUnpickler error" in ln]
    after = [ln for ln in lines[marks[0] + 1:] if ln] if marks else []
    return (after[0] if after else _first_line(e))[:200]


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """Lightning and mmcv files keep weights under ``state_dict``, the Swin/GroupMixFormer/VMamba classification
    releases under ``model``; a bare state dict is used as is."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"Checkpoint {path} holds no state dict (found {type(obj).__name__}).")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"Checkpoint {path} holds no tensors.")
    return tensors


@dataclass
class KeyDiff:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # (key, ckpt, model)
    dtype: list[tuple[str, torch.dtype]] = field(default_factory=list)  # (key, ckpt dtype): not floating point

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape or self.dtype)

    def summary(self) -> str:
        return (f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.shape)} of another shape, "
                f"{len(self.dtype)} not floating point")

    def lines(self, limit: int = 12) -> list[str]:
        out = [f"  missing    {k}" for k in self.missing[:limit]]
        out += [f"  unexpected {k}" for k in self.unexpected[:limit]]
        out += [f"  shape      {k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.shape[:limit]]
        out += [f"  dtype      {k}: checkpoint {str(d).removeprefix('torch.')}, a weight is floating point"
                for k, d in self.dtype[:limit]]
        return out


def diff_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> KeyDiff:
    own = module.state_dict()
    diff = KeyDiff(missing=sorted(set(own) - set(state)), unexpected=sorted(set(state) - set(own)))
    for k in sorted(set(own) & set(state)):
        if tuple(own[k].shape) != tuple(state[k].shape):
            diff.shape.append((k, tuple(state[k].shape), tuple(own[k].shape)))
        # reason: load_state_dict casts integers into float weights without a word; a trained checkpoint never
        # holds integer weights, so such a file is not what it claims (integer buffers, e.g. index tables, stay).
        if own[k].is_floating_point() and not state[k].is_floating_point():
            diff.dtype.append((k, state[k].dtype))
    return diff


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    diff = diff_state_dict(module, state)
    if diff:
        detail = "; ".join(ln.strip() for ln in diff.lines(limit=3))
        advice = ("Check that the model size matches the checkpoint." if diff.missing or diff.unexpected or diff.shape
                  else "A trained checkpoint holds floating-point weights: check that this is the weights file.")
        raise CheckpointMismatchError(f"Checkpoint {source} does not fit {model_name}: {diff.summary()} ({detail}). "
                                      f"{advice}", diff)
    module.load_state_dict(state, strict=True)


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(module: nn.Module) -> str:
    """Hash of every tensor's name, dtype, shape and bytes: identifies the weights independent of file format."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
