"""ExecuTorch runner through the ``executorch.runtime`` Python bindings (XNNPACK and portable kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgehmr.errors import TargetUnavailableError
from edgehmr.targets.base import Runner


class ExecuTorchRunner(Runner):
    def __init__(self, model_path: Path, input_names: list[str], output_names: list[str]):
        try:
            from executorch.runtime import Runtime
        except ImportError:
            raise TargetUnavailableError("Running .pte artifacts needs ExecuTorch: "
                                         "pip install 'edgehmr[executorch]'.") from None
        self.method = Runtime.get().load_program(str(model_path)).load_method("forward")
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        outputs = self.method.execute(inputs)
        return {n: o.detach().numpy().copy() for n, o in zip(self.output_names, outputs)}


def open_runner(artifact_dir: Path, metadata: dict, threads: int | None = None) -> Runner:
    # ExecuTorch's XNNPACK threadpool is sized by the runtime; ``threads`` is not settable from Python.
    return ExecuTorchRunner(artifact_dir / metadata["files"]["model"], [i["name"] for i in metadata["inputs"]],
                            [o["name"] for o in metadata["outputs"]])
