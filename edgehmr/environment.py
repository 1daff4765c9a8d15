"""What machine and which library versions produced a result (recorded in bundles, artifacts and reports)."""

from __future__ import annotations

import importlib.metadata
import platform

import torch

TRACKED_PACKAGES = ("edgehmr", "torch", "numpy", "onnx", "onnxruntime", "onnxscript", "smplx",
                    "opencv-python-headless", "openvino", "nncf", "executorch", "coremltools", "tensorrt")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def environment(device: str = "cpu") -> dict:
    return {
        "device": device,
        "device_name": device_name(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
        "versions": {p: v for p in TRACKED_PACKAGES if (v := package_version(p))},
    }
