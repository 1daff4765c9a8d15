"""OpenVINO runner (CPU plugin), compiled with the runtime settings the artifact recorded at conversion
(see ``edgehmr.converters.openvino.runtime_config``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehmr.errors import TargetUnavailableError
from edgehmr.targets.base import Runner


class OpenVINORunner(Runner):
    def __init__(self, model_path: Path, runtime_config: dict | None = None, threads: int | None = None,
                 device: str = "CPU"):
        try:
            import openvino as ov
        except ImportError:
            raise TargetUnavailableError("Running OpenVINO artifacts needs OpenVINO: "
                                         "pip install 'edgehmr[openvino]'.") from None
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"} | (runtime_config or {})
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(model_path), device, config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feeds)
        # reason: the result views the request's output buffers, which the next infer() overwrites.
        return {name: np.array(result[port], copy=True) for name, port in zip(self.output_names, self.compiled.outputs)}


def open_runner(artifact_dir: Path, metadata: dict, threads: int | None = None) -> Runner:
    config = metadata.get("target_details", {}).get("runtime_config")
    return OpenVINORunner(artifact_dir / metadata["files"]["model"], config, threads)
