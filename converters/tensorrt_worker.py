"""The TensorRT engine build, run in its own process (:mod:`edgehmr.isolated`).

``python -m edgehmr.converters.tensorrt_worker request.json``: builds the engine of an ONNX with
:func:`edgehmr.converters.tensorrt_engine.build_engine` and reports its facts. A crash in TensorRT's builder then
fails this build only.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

from edgehmr.converters.capabilities import Precision
from edgehmr.converters.tensorrt_engine import EngineOptions, Profile, build_engine
from edgehmr.isolated import run_worker, serve
from edgehmr.vendor import import_tensorrt


def build_engine_isolated(onnx_path: Path, engine_path: Path, precision: Precision, options: EngineOptions,
                          profiles: list[Profile] | None = None) -> dict:
    """:func:`build_engine` in a worker process; returns the engine facts it records."""
    import_tensorrt()  # missing: one line here, not a worker's traceback
    request = {"onnx": str(onnx_path), "engine": str(engine_path), "precision": precision.value,
               "options": dataclasses.asdict(options), "profiles": profiles}
    with tempfile.TemporaryDirectory(prefix="edgehmr-trt-") as tmp:
        result = run_worker(__name__, request, Path(tmp) / "request.json", f"TensorRT engine build of {onnx_path}")
    return result["ok"]


def build(request: dict) -> dict:
    return build_engine(Path(request["onnx"]), Path(request["engine"]), Precision(request["precision"]),
                        EngineOptions(**request["options"]), request["profiles"])


if __name__ == "__main__":
    sys.exit(serve(sys.argv, build))
