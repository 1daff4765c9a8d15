"""Core ML runners.

On macOS the ``.mlpackage`` runs for real (``MLModel.predict``). Core ML cannot run anywhere else, so on other
hosts ``validate`` runs the simulation: the same torch module that was converted, rebuilt from the artifact's
metadata (weights checked by hash), with Core ML's weight format and compute precision applied in torch. Reports
say which of the two produced the numbers.

Multi-shape parts (multifunction packages) run one function per entry on macOS. Elsewhere they run only as a
simulation of a torch module the caller passes (the float32 module the part was converted from; the part's
compute precision is applied to it), and otherwise are refused with the reason.
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from edgehmr.converters.capabilities import Precision
from edgehmr.converters.multishape import MultiShapeRunner
from edgehmr.errors import InputError, TargetUnavailableError
from edgehmr.targets.base import Runner

SIMULATION_REASON = "Core ML runs predictions only on macOS"


def can_run_coreml() -> bool:
    return platform.system() == "Darwin"


class CoreMLRunner(Runner):
    execution = "Core ML (macOS)"

    def __init__(self, model_path: Path, input_names: list[str], output_names: list[str],
                 function: str | None = None, compute_units: str = "ALL"):
        import coremltools as ct

        kwargs = {"function_name": function} if function else {}
        self.model = ct.models.MLModel(str(model_path), compute_units=getattr(ct.ComputeUnit, compute_units),
                                       **kwargs)
        self.input_names, self.output_names = list(input_names), list(output_names)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.model.predict({n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names})
        return {n: np.asarray(out[n], dtype=np.float32) for n in self.output_names}


class TorchSimulationRunner(Runner):
    """Core ML numerics simulated in torch (float16 weights and compute; INT8-rounded weights where used)."""

    def __init__(self, module: torch.nn.Module, input_names: list[str], output_names: list[str], description: str):
        self.module = module
        self.dtype = next(module.parameters()).dtype
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.execution = f"simulated in torch ({description}); {SIMULATION_REASON}"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.dtype) for n in self.input_names]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates the quantized dtypes the W8A8 reference graph uses
            outputs = self.module(*inputs)
        return {n: o.float().numpy() for n, o in zip(self.output_names, outputs)}


def rebuild_module(metadata: dict) -> torch.nn.Module:
    """The float32 export module the artifact was converted from, with the weights checked against the hash."""
    from edgehmr.models import load_model

    model = metadata["model"]
    checkpoint = None if model["weights"] == "untrained" else model["weights"]
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"Simulating Core ML needs the checkpoint the artifact was built from ({checkpoint}); "
                         f"it is not there. Run validate on a Mac, or restore the file.")
    trust = False
    if checkpoint is not None:
        from edgehmr.models._checkpoint import file_sha256

        # Checked before loading: a trusted (pickled) checkpoint is only reopened if it is the very file the user
        # trusted at conversion time.
        if file_sha256(checkpoint) != model["checkpoint_sha256"]:
            raise InputError(f"{checkpoint} changed since the artifact was converted (sha256 differs). Reconvert, "
                             f"or validate on a Mac.")
        trust = metadata.get("spec", {}).get("trust_checkpoint", False)
    loaded = load_model(model["model"], checkpoint, trust_checkpoint=trust,
                        seed=model["seed"] if model["seed"] is not None else 0)
    if loaded.weights_sha256 != model["weights_sha256"]:
        raise InputError("The rebuilt weights do not match the artifact's (weights_sha256 differs): the "
                         "checkpoint changed since conversion. Reconvert, or validate on a Mac.")
    sampler = metadata.get("spec", {}).get("sampler")
    if sampler:
        loaded.module.set_sampler(sampler)
    if not metadata.get("with_mesh"):
        return loaded.module
    from edgehmr.models.hmr2 import HMR2WithMesh
    from edgehmr.models.smpl import SMPLLayer, load_smpl

    return HMR2WithMesh(loaded.module, SMPLLayer(load_smpl(metadata["smpl"]["source"]))).eval()


def open_simulation(artifact_dir: Path, metadata: dict) -> TorchSimulationRunner:
    from edgehmr.calibration.recipes import QuantRecipe
    from edgehmr.converters.base import vendor_quiet
    from edgehmr.converters.coreml import simulation_module

    precision = Precision(metadata["precision"])
    quant = metadata.get("quantization")
    recipe = QuantRecipe.from_json(quant["recipe"]) if quant else None
    module = rebuild_module(metadata)
    example = tuple(torch.zeros(i["shape"]) for i in metadata["inputs"])
    state = None
    if precision == Precision.int8:
        from safetensors.torch import load_file

        state = load_file(str(artifact_dir / metadata["target_details"]["w8a8_state"]))
    with vendor_quiet():
        module = simulation_module(module, precision, recipe, example, state)
    description = {
        Precision.int8: "INT8 weights and activations, fake-quantized in float32",
        Precision.int8_weights: "INT8 per-channel weights, float16 compute",
    }.get(precision, f"{metadata['target_details']['compute_precision']} compute")
    return TorchSimulationRunner(module, [i["name"] for i in metadata["inputs"]],
                                 [o["name"] for o in metadata["outputs"]], description)


def open_runner(artifact_dir: Path, metadata: dict, threads: int | None = None) -> Runner:
    if can_run_coreml():
        try:
            import coremltools  # noqa: F401
        except ImportError:
            raise TargetUnavailableError("Running .mlpackage artifacts needs coremltools: "
                                         "pip install 'edgehmr[coreml]'.") from None
        return CoreMLRunner(artifact_dir / metadata["files"]["model"], [i["name"] for i in metadata["inputs"]],
                            [o["name"] for o in metadata["outputs"]])
    return open_simulation(artifact_dir, metadata)


def _require_coremltools():
    try:
        import coremltools  # noqa: F401
    except ImportError:
        raise TargetUnavailableError("Running .mlpackage artifacts needs coremltools: "
                                     "pip install 'edgehmr[coreml]'.") from None


class CoreMLMultiShapeRunner(MultiShapeRunner):
    """Each entry is a function of the multifunction package, loaded once (macOS only). ``execution`` stays
    "runtime": Core ML itself runs it."""

    def __init__(self, model_path: Path, part: dict, compute_units: str = "ALL"):
        super().__init__(part)
        import coremltools as ct

        units = getattr(ct.ComputeUnit, compute_units)
        self._models = {e: ct.models.MLModel(str(model_path), compute_units=units, function_name=e)
                        for e in self.entries}

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Core ML's integer inputs are int32 (see converters.coreml.input_dtype).
        inputs = {n: v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) else v for n, v in feeds.items()}
        return self._models[entry].predict(inputs)


class TorchMultiShapeSimulationRunner(MultiShapeRunner):
    """A multifunction package's numerics in torch: the same module for every entry (shapes come from feeds)."""

    def __init__(self, module: torch.nn.Module, part: dict, description: str):
        super().__init__(part)
        self.module = module
        self.dtype = next(module.parameters()).dtype
        self.execution = f"simulated in torch ({description}); {SIMULATION_REASON}"

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Float inputs take the module's compute dtype; integer inputs (indices) stay integer.
        inputs = [torch.from_numpy(feeds[n]) for n in self.input_names]
        inputs = [t.to(self.dtype) if t.is_floating_point() else t for t in inputs]
        with torch.no_grad():
            outputs = self.module(*inputs)
        return {n: o.float().numpy() for n, o in zip(self.output_names, outputs)}


def open_multishape_runner(artifact_dir: Path, part: dict, threads: int | None = None,
                           simulation_module: torch.nn.Module | None = None) -> MultiShapeRunner:
    if can_run_coreml():
        _require_coremltools()
        return CoreMLMultiShapeRunner(artifact_dir / part["file"], part)
    if simulation_module is None:
        raise TargetUnavailableError(f"Cannot run the Core ML part {part['file']} here: {SIMULATION_REASON}. Run "
                                     f"it on a Mac, or pass the module it was converted from (simulation_module) "
                                     f"to simulate its numerics in torch.")
    from edgehmr.converters.base import vendor_quiet
    from edgehmr.converters.coreml import compute_precision, simulation_module as coreml_simulation

    precision = Precision(part["precision"])
    with vendor_quiet():
        module = coreml_simulation(simulation_module.eval(), precision, None)
    return TorchMultiShapeSimulationRunner(module, part, f"{compute_precision(precision)} compute")
