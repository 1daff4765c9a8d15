"""``edgehmr doctor``: which runtimes are installed, and the exact command for the missing ones."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edgehmr.environment import package_version


@dataclass(frozen=True)
class RuntimeCheck:
    name: str
    module: str  # import name
    package: str  # distribution name for the version
    needed_for: str
    install: str


RUNTIMES = (
    RuntimeCheck("PyTorch", "torch", "torch", "every command", "pip install 'torch>=2.13,<2.14'"),
    RuntimeCheck("ONNX", "onnx", "onnx", "target onnx", "pip install edgehmr"),
    RuntimeCheck("ONNX Runtime", "onnxruntime", "onnxruntime", "target onnx (run, validate)", "pip install edgehmr"),
    RuntimeCheck("smplx", "smplx", "smplx", "SMPL parity tests", "pip install edgehmr"),
    RuntimeCheck("OpenVINO", "openvino", "openvino", "target openvino", "pip install 'edgehmr[openvino]'"),
    RuntimeCheck("NNCF", "nncf", "nncf", "OpenVINO INT8", "pip install 'edgehmr[openvino]'"),
    RuntimeCheck("ExecuTorch", "executorch", "executorch", "target executorch", "pip install 'edgehmr[executorch]'"),
    RuntimeCheck("coremltools", "coremltools", "coremltools", "target coreml", "pip install 'edgehmr[coreml]'"),
    RuntimeCheck("TensorRT", "tensorrt", "tensorrt", "TensorRT engines (NVIDIA GPU)",
                 "pip install 'edgehmr[tensorrt]' (on Jetson: use JetPack's TensorRT)"),
    RuntimeCheck("Polygraphy", "polygraphy", "polygraphy", "TensorRT checks", "pip install 'edgehmr[tensorrt]'"),
)


def check_runtimes() -> list[dict]:
    rows = []
    for rt in RUNTIMES:
        found = importlib.util.find_spec(rt.module) is not None
        rows.append({"runtime": rt.name, "installed": found, "version": package_version(rt.package) if found else None,
                     "needed_for": rt.needed_for, "install": None if found else rt.install})
    return rows


def accelerators() -> list[str]:
    import torch

    found = []
    if torch.cuda.is_available():
        found += [f"CUDA: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("Apple MPS")
    return found
