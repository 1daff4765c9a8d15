"""ONNX Runtime runner (CPU execution provider): one session serves every entry of a part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgehmr.targets.base import RunOptions, Runner


def session(model_path: Path, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: constant-folding notices are not for users
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


class OnnxRuntimeRunner(Runner):
    """One session for every entry: a graph's dynamic axes take each entry's sizes."""

    def __init__(self, model_path: Path, part: dict, threads: int | None = None, execution: str = "runtime"):
        super().__init__(part)
        self.session = session(model_path, threads)
        self.execution = execution

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def model_names(self) -> tuple[set[str], set[str]]:
        return {i.name for i in self.session.get_inputs()}, {o.name for o in self.session.get_outputs()}

    @staticmethod
    def versions() -> dict[str, str]:
        return {"onnxruntime": ort.__version__}


def open_runner(artifact_dir: Path, part: dict, options: RunOptions = RunOptions()) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(artifact_dir / part["file"], part, options.threads)
