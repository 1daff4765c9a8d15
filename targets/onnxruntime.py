"""ONNX Runtime runner (CPU execution provider); multi-shape parts run every entry on one session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgehmr.converters.multishape import MultiShapeRunner
from edgehmr.targets.base import Runner


class OnnxRuntimeRunner(Runner):
    def __init__(self, model_path: Path, threads: int | None = None):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: constant-folding notices are not for users
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))

    @staticmethod
    def versions() -> dict[str, str]:
        return {"onnxruntime": ort.__version__}


def open_runner(artifact_dir: Path, metadata: dict, threads: int | None = None) -> Runner:
    return OnnxRuntimeRunner(artifact_dir / metadata["files"]["model"], threads)


class OnnxRuntimeMultiShapeRunner(MultiShapeRunner):
    """One session for every entry: the graph's dynamic axes take each entry's sizes."""

    def __init__(self, model_path: Path, part: dict, threads: int | None = None, execution: str = "runtime"):
        super().__init__(part)
        self.session = OnnxRuntimeRunner(model_path, threads)
        self.execution = execution

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.session.run(feeds)


def open_multishape_runner(artifact_dir: Path, part: dict, threads: int | None = None,
                           simulation_module=None) -> OnnxRuntimeMultiShapeRunner:
    return OnnxRuntimeMultiShapeRunner(artifact_dir / part["file"], part, threads)
