"""``edgehmr doctor``: which runtimes are installed, and the exact command for the missing ones."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edgehmr.environment import package_version


@dataclass(frozen=True)
class RuntimeCheck:
    name: str
    module: str  # import name
    package: str  # distribution name for the version
    needed_for: str
    extra: str | None  # the pip extra of edgehmr that installs it; None: edgehmr's core install
    note: str = ""


RUNTIMES = (
    RuntimeCheck("PyTorch", "torch", "torch", "every command", None),
    RuntimeCheck("ONNX", "onnx", "onnx", "target onnx", None),
    RuntimeCheck("ONNX Runtime", "onnxruntime", "onnxruntime", "target onnx (run, validate)", None),
    RuntimeCheck("smplx", "smplx", "smplx", "SMPL parity tests", None),
    RuntimeCheck("OpenVINO", "openvino", "openvino", "target openvino", "openvino"),
    RuntimeCheck("NNCF", "nncf", "nncf", "OpenVINO INT8", "openvino"),
    RuntimeCheck("ExecuTorch", "executorch", "executorch", "target executorch", "executorch"),
    RuntimeCheck("coremltools", "coremltools", "coremltools", "target coreml", "coreml"),
    RuntimeCheck("TensorRT", "tensorrt", "tensorrt", "TensorRT engines (NVIDIA GPU)", "tensorrt",
                 "on Jetson: use JetPack's TensorRT"),
    RuntimeCheck("Polygraphy", "polygraphy", "polygraphy", "TensorRT checks", "tensorrt"),
    RuntimeCheck("Ray", "ray", "ray", "edgehmr bench --cluster", "cluster"),
)


def _editable_checkout() -> str | None:
    """The source folder edgehmr runs from when it is a checkout (``make install``, ``pip install -e .``: the
    package is imported from the tree beside its pyproject.toml, not from site-packages), else None."""
    root = Path(__file__).resolve().parents[1]
    try:
        is_checkout = 'name = "edgehmr"' in (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    if not is_checkout:
        return None
    return "." if root == Path.cwd().resolve() else str(root)


def pip_install(extra: str | None) -> str:
    """The command that adds ``extra`` (None: the core) to this installation: from the checkout where edgehmr is
    an editable install, else from the package index."""
    checkout = _editable_checkout()
    suffix = f"[{extra}]" if extra else ""
    return f"pip install -e '{checkout}{suffix}'" if checkout else f"pip install 'edgehmr{suffix}'"


def check_runtimes() -> list[dict]:
    rows = []
    for rt in RUNTIMES:
        found = importlib.util.find_spec(rt.module) is not None
        rows.append({"runtime": rt.name, "installed": found, "version": package_version(rt.package) if found else None,
                     "needed_for": rt.needed_for, "install": None if found else pip_install(rt.extra),
                     "note": rt.note or None})
    return rows


def accelerators() -> list[str]:
    import torch

    found = []
    if torch.cuda.is_available():
        found += [f"CUDA: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("Apple MPS")
    return found
