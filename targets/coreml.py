"""Core ML runners.

On macOS the ``.mlpackage`` runs for real (``MLModel.predict``; a multifunction package loads one function per
entry). Core ML cannot run anywhere else, so there the part's numerics are simulated: the float32 module it was
converted from (:mod:`edgehmr.rebuild`, weights checked by hash) with Core ML's weight format and compute
precision applied in torch (for int8, the calibrated quantize/dequantize graph rebuilt from the observer state the
artifact keeps). Reports say which of the two produced the numbers.
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from edgehmr.artifact import inside
from edgehmr.converters.capabilities import Precision
from edgehmr.doctor import pip_install
from edgehmr.errors import InputError, TargetUnavailableError
from edgehmr.native_profiles import COREML_FORMAT, TOP_LAYERS, NativeTiming
from edgehmr.targets.base import RunOptions, Runner

SIMULATION_REASON = "Core ML runs predictions only on macOS"


def can_run_coreml() -> bool:
    return platform.system() == "Darwin"


class CoreMLRunner(Runner):
    """Each entry is a function of the package (the only one for a single-function package), loaded once.
    ``execution`` stays "runtime": Core ML itself runs it."""

    def __init__(self, model_path: Path, part: dict, compute_units: str = "ALL"):
        super().__init__(part)
        import coremltools as ct

        units = getattr(ct.ComputeUnit, compute_units)
        multifunction = len(part.get("details", {}).get("functions", [])) > 1
        self._models = {e: ct.models.MLModel(str(model_path), compute_units=units,
                                             **({"function_name": e} if multifunction else {}))
                        for e in self.entries}

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Core ML's integer inputs are int32 (see converters.coreml.input_dtype).
        inputs = {n: v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) else v for n, v in feeds.items()}
        return self._models[entry].predict(inputs)


class TorchSimulationRunner(Runner):
    """A part's Core ML numerics in torch: the same module for every entry (shapes come from the feeds)."""

    def __init__(self, module: torch.nn.Module, part: dict, description: str):
        super().__init__(part)
        self.module = module
        self.dtype = next(module.parameters()).dtype
        self.execution = f"simulated in torch ({description}); {SIMULATION_REASON}"

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Float inputs take the module's compute dtype; integer inputs (indices) stay integer.
        inputs = [torch.from_numpy(feeds[n]) for n in self.input_names]
        inputs = [t.to(self.dtype) if t.is_floating_point() else t for t in inputs]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates the quantized dtypes the W8A8 reference graph uses
            outputs = self.module(*inputs)
        return {n: o.float().numpy() for n, o in zip(self.output_names, outputs)}


def open_simulation(artifact_dir: Path, part: dict, module: torch.nn.Module) -> TorchSimulationRunner:
    """What the part computes on Core ML, in torch, from the float32 ``module`` it was converted from."""
    from edgehmr.calibration.recipes import QuantRecipe
    from edgehmr.coreml_numerics import compute_precision, simulation_module
    from edgehmr.vendor import vendor_quiet

    precision = Precision(part["precision"])
    recipe = QuantRecipe.from_json(part["recipe"]) if part.get("recipe") else None
    shapes = part["entries"][next(iter(part["entries"]))]
    example = tuple(torch.zeros(shapes[n]) for n in part["input_names"])
    state = None
    if precision == Precision.int8:
        from safetensors.torch import load_file

        folder = Path(part["file"]).parent
        state_file = inside(artifact_dir, (folder / part["details"]["w8a8_state"]).as_posix(), "details.w8a8_state")
        state = load_file(str(state_file))
    with vendor_quiet():
        module = simulation_module(module.eval(), precision, recipe, example, state)
    description = {
        Precision.int8: "INT8 weights and activations, fake-quantized in float32",
        Precision.int8_weights: "INT8 per-channel weights, float16 compute",
    }.get(precision, f"{compute_precision(precision)} compute")
    return TorchSimulationRunner(module, part, description)


def open_runner(artifact_dir: Path, part: dict, options: RunOptions = RunOptions()) -> Runner:
    if can_run_coreml():
        try:
            import coremltools  # noqa: F401
        except ImportError:
            raise TargetUnavailableError("Running .mlpackage artifacts needs coremltools: "
                                         f"{pip_install('coreml')}.") from None
        return CoreMLRunner(artifact_dir / part["file"], part)
    if options.simulation is None:
        raise TargetUnavailableError(f"Cannot run the Core ML part {part['file']} here: {SIMULATION_REASON} (run it "
                                     f"on a Mac; validate simulates its numerics in torch)")
    return open_simulation(artifact_dir, part, options.simulation())


# Native timings: what an app writes in edgehmr's Core ML timing format (see edgehmr.native_profiles)

def coreml_app_timings(data: dict, path: Path) -> NativeTiming:
    predictions = data.get("prediction_ms")
    if not isinstance(predictions, list) or not predictions:
        raise InputError(f"{path}: {COREML_FORMAT} needs a non-empty 'prediction_ms' list.")
    ops = [{"name": o.get("name", "?"), "type": o.get("type", ""), "ms": None,
            "estimated_cost": float(o.get("estimated_cost", 0.0)), "device": o.get("device", "")}
           for o in data.get("ops", [])]
    ops.sort(key=lambda o: -o["estimated_cost"])
    timing = NativeTiming("Core ML app timings", "coreml", samples_ms=[float(x) for x in predictions], layers=ops[:TOP_LAYERS])
    timing.load_s = float(data["load_ms"]) / 1e3 if "load_ms" in data else None
    timing.first_inference_ms = float(data["first_prediction_ms"]) if "first_prediction_ms" in data else None
    timing.device = {k: data[k] for k in ("device", "os", "compute_units") if k in data}
    if ops:
        timing.notes.append("Core ML ops: MLComputePlan's estimated cost (relative), not measured times")
    return timing
