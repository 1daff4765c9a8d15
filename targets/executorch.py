"""ExecuTorch runner through the ``executorch.runtime`` Python bindings (XNNPACK and portable kernels).

Programs with the Core ML delegate run only where ExecuTorch is built with the Core ML backend (Apple apps, or
an ExecuTorch build for macOS); elsewhere opening one is refused with that reason.

Parts map entries to methods (``details.entry_methods``: one method, static or with dynamic axes, or one per
entry); the runner loads the program once and each method once.
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from edgehmr.doctor import pip_install
from edgehmr.errors import InputError, TargetUnavailableError
from edgehmr.native_profiles import NativeTiming, ranked
from edgehmr.targets.base import RunOptions, Runner, native_output_silenced

# Delegates whose programs run only on some hosts: delegate -> (platform.system() that runs it, why).
HOST_ONLY_DELEGATES = {"coreml": ("Darwin", "this .pte delegates to Core ML, which runs only on Apple devices (an "
                                            "iOS/macOS app, or ExecuTorch built with the Core ML backend on a Mac)")}


def _runtime():
    try:
        from executorch.runtime import Runtime
    except ImportError:
        raise TargetUnavailableError("Running .pte artifacts needs ExecuTorch: "
                                     f"{pip_install('executorch')}.") from None
    return Runtime.get()


def method_names(model_path: Path) -> set[str]:
    return set(_runtime().load_program(str(model_path)).method_names)


def entry_methods(part: dict) -> dict[str, str]:
    """Entry -> the method that runs it. Parts converted before ``entry_methods`` was recorded have one method
    for their one entry, or one per entry named after it."""
    details = part.get("details", {})
    recorded = details.get("entry_methods", {})
    methods = details.get("methods")
    only = methods[0] if isinstance(methods, list) and len(methods) == 1 and len(part["entries"]) == 1 else None
    methods = {entry: recorded.get(entry, only or entry) if isinstance(recorded, dict) else None
               for entry in part["entries"]}
    if not all(isinstance(m, str) and m for m in methods.values()):
        raise InputError("metadata.json: details.entry_methods must map every entry to a method name; reconvert "
                         "the artifact.")
    return methods


class ExecuTorchRunner(Runner):
    """The program loaded once, each of its methods once (one with dynamic axes, or one per entry)."""

    def __init__(self, model_path: Path, part: dict):
        super().__init__(part)
        self._method_of = entry_methods(part)
        with native_output_silenced():
            self._program = _runtime().load_program(str(model_path))
        missing = sorted(set(self._method_of.values()) - set(self._program.method_names))
        if missing:
            raise TargetUnavailableError(f"{model_path} has no methods {missing}; methods: "
                                         f"{sorted(self._program.method_names)}. Reconvert the artifact.")
        try:
            with native_output_silenced():
                self._methods = {m: self._program.load_method(m) for m in set(self._method_of.values())}
        except RuntimeError as e:
            raise TargetUnavailableError(f"ExecuTorch cannot load the methods of {model_path}: "
                                         f"{str(e).splitlines()[0]}.") from e

    def _run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._methods[self._method_of[entry]].execute([torch.from_numpy(feeds[n])
                                                                 for n in self.input_names])
        return {n: o.detach().numpy().copy() for n, o in zip(self.output_names, outputs)}


def open_runner(artifact_dir: Path, part: dict, options: RunOptions = RunOptions()) -> ExecuTorchRunner:
    # ExecuTorch's XNNPACK threadpool is sized by the runtime; ``threads`` is not settable from Python.
    host, why = HOST_ONLY_DELEGATES.get(part.get("details", {}).get("delegate"), (platform.system(), ""))
    if host != platform.system():
        raise TargetUnavailableError(f"Cannot run {artifact_dir.name} here: {why}. Validate the numerics with "
                                     f"'--target coreml' (simulated here) or on the device.")
    return ExecuTorchRunner(artifact_dir / part["file"], part)


# Wrapper events that contain others: counting them too would double the time.
_WRAPPER_EVENTS = {"Method::execute", "DELEGATE_CALL", "OPERATOR_CALL", "Method::init", "Program::load_method"}


def op_time_profile(model_path: Path, inputs: list[np.ndarray], runs: int = 5, method: str = "forward") -> dict:
    """Median milliseconds per op kind over ``runs`` executions, from ExecuTorch's event trace (ETDump).

    Delegated ops carry XNNPACK's own names ("Fully Connected (NC, QD8, F32, QC8W) GEMM"); ops on portable
    kernels show as ``native_call_<op>``. Returns ``{"total_ms": ..., "ops": {kind: ms}}``, kinds by time.
    """
    import re
    import tempfile

    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
    with native_output_silenced():
        module = _load_for_executorch(str(model_path), enable_etdump=True)
        for _ in range(runs):
            module.run_method(method, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.etdp"
        module.write_etdump_result_to_file(str(trace))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": tensor debug data is not asked for
            frame = Inspector(etdump_path=str(trace)).to_dataframe()
    kinds: dict[str, float] = {}
    total = 0.0
    for _, event in frame.iterrows():
        if event["event_name"] == "Method::execute":
            total += float(event["p50 (ms)"])
        if event["event_name"] in _WRAPPER_EVENTS:
            continue
        kind = re.sub(r" #\d+$", "", event["event_name"]).removeprefix("native_call_")
        kinds[kind] = kinds.get(kind, 0.0) + float(event["p50 (ms)"])
    return {"total_ms": total, "ops": dict(sorted(kinds.items(), key=lambda kv: -kv[1]))}


# Native timings: an ETDump written on the device (see edgehmr.native_profiles)

def read_etdump(path: Path) -> NativeTiming:
    try:
        from executorch.devtools import Inspector
    except ImportError:
        raise TargetUnavailableError("Reading an ETDump needs ExecuTorch's devtools: pip install "
                                     "'edgehmr[executorch]'.") from None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor debug data, timings only
            inspector = Inspector(etdump_path=str(path))
    except Exception as e:  # the Inspector raises bare Exceptions on foreign bytes
        raise InputError(f"{path} is not a readable ETDump ({str(e).splitlines()[0][:120]}).") from None
    samples, layers, load_ms = [], [], None
    for block in inspector.event_blocks:
        for event in block.events:
            raw = list(event.perf_data.raw) if event.perf_data else []
            if not raw:
                continue
            if event.name == "Method::execute":
                samples = [float(x) for x in raw]
            elif event.name == "Program::load_method":  # includes Method::init (delegate compilation)
                load_ms = float(raw[0])
            elif block.name != "Default" and event.name not in ("DELEGATE_CALL", "OPERATOR_CALL"):
                kind = "delegated" if event.is_delegated_op else "portable"
                layers.append({"name": event.name, "type": kind, "ms": sum(raw) / len(raw)})
    timing = NativeTiming("ExecuTorch ETDump", "executorch", samples_ms=samples or None, layers=ranked(layers),
                          load_s=load_ms / 1e3 if load_ms is not None else None)
    if not samples:
        timing.notes.append("the ETDump has no Method::execute events: per-operator times only")
    return timing
