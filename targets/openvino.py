"""OpenVINO runner (CPU plugin), compiled with the runtime settings the artifact recorded at conversion
(see ``edgehmr.converters.openvino.runtime_config``).

The IR of a part with several entries has dynamic axes; each entry gets its own CompiledModel of a copy reshaped
to the entry's static shapes, so every entry runs with static-shape kernels (or, with ``shared_weights``, one
CompiledModel of the bounded-dynamic IR with an infer request per entry: weights held once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehmr.errors import TargetUnavailableError
from edgehmr.targets.base import RunOptions, Runner


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
    """One static CompiledModel per entry, all compiled at load so no entry pays compilation on first use; or,
    with ``shared_weights``, one CompiledModel for every entry (each infer request keeps its entry's shapes)."""

    def __init__(self, model_path: Path, part: dict, threads: int | None = None, device: str = "CPU",
                 shared_weights: bool = False):
        super().__init__(part)
        ov = _openvino()
        core = ov.Core()
        model = core.read_model(str(model_path))
        config = compile_config(part.get("details", {}).get("runtime_config"), threads)
        self._compiled = {}
        shared = core.compile_model(model, device, config) if shared_weights else None
        static = not model.is_dynamic()
        for entry, shapes in part["entries"].items():
            if shared is not None:
                compiled = shared
            elif static:  # one fixed shape (a crop model): the IR is already the entry's graph
                compiled = core.compile_model(model, device, config)
            else:
                reshaped = model.clone()
                reshaped.reshape({name: ov.PartialShape(shape) for name, shape in shapes.items()})
                compiled = core.compile_model(reshaped, device, config)
            self._compiled[entry] = (compiled, compiled.create_infer_request())

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled, request = self._compiled[entry]
        result = request.infer(feeds)
        # reason: the result views the request's output buffers, which the next infer() overwrites.
        return {p.get_any_name(): np.array(result[p], copy=True) for p in compiled.outputs}


def open_runner(artifact_dir: Path, part: dict, options: RunOptions = RunOptions()) -> OpenVINORunner:
    return OpenVINORunner(artifact_dir / part["file"], part, options.threads, shared_weights=options.shared_weights)
