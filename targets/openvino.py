"""OpenVINO runner (CPU plugin), compiled with the runtime settings the artifact recorded at conversion
(see ``edgehmr.converters.openvino.runtime_config``).

Multi-shape parts: the IR has dynamic axes; each entry gets its own CompiledModel of a copy reshaped to the
entry's static shapes, so every entry runs with static-shape kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehmr.converters.multishape import MultiShapeRunner
from edgehmr.errors import TargetUnavailableError
from edgehmr.targets.base import Runner


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise TargetUnavailableError("Running OpenVINO artifacts needs OpenVINO: "
                                     "pip install 'edgehmr[openvino]'.") from None
    return ov


def compile_config(runtime_config: dict | None, threads: int | None) -> dict:
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"} | (runtime_config or {})
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class OpenVINORunner(Runner):
    def __init__(self, model_path: Path, runtime_config: dict | None = None, threads: int | None = None,
                 device: str = "CPU"):
        ov = _openvino()
        config = compile_config(runtime_config, threads)
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


class OpenVINOMultiShapeRunner(MultiShapeRunner):
    """One static CompiledModel per entry, all compiled at load so no entry pays compilation on first use; or,
    with ``shared_weights``, one CompiledModel of the bounded-dynamic IR with an infer request per entry (weights
    held once; each request keeps its entry's shapes)."""

    def __init__(self, model_path: Path, part: dict, threads: int | None = None, device: str = "CPU",
                 shared_weights: bool = False):
        super().__init__(part)
        ov = _openvino()
        core = ov.Core()
        model = core.read_model(str(model_path))
        config = compile_config(part.get("details", {}).get("runtime_config"), threads)
        self._compiled = {}
        shared = core.compile_model(model, device, config) if shared_weights else None
        for entry, shapes in part["entries"].items():
            if shared is None:
                static = model.clone()
                static.reshape({name: ov.PartialShape(shape) for name, shape in shapes.items()})
                compiled = core.compile_model(static, device, config)
            else:
                compiled = shared
            self._compiled[entry] = (compiled, compiled.create_infer_request())

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled, request = self._compiled[entry]
        result = request.infer(feeds)
        # reason: the result views the request's output buffers, which the next infer() overwrites.
        return {p.get_any_name(): np.array(result[p], copy=True) for p in compiled.outputs}


def open_multishape_runner(artifact_dir: Path, part: dict, threads: int | None = None,
                           simulation_module=None, shared_weights: bool = False) -> OpenVINOMultiShapeRunner:
    return OpenVINOMultiShapeRunner(artifact_dir / part["file"], part, threads, shared_weights=shared_weights)
