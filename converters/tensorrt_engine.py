"""TensorRT engine build from an artifact's ONNX, with the TensorRT Python API (on the device: Jetson or a GPU host).

INT8 and FP16 artifacts carry their precision in the graph (Q/DQ nodes; float16 types), so they build as strongly
typed networks: the engine computes exactly what the ONNX says, on TensorRT 10.x and 11.x alike (11 removed the
weak-typing precision flags). FP32 builds with TF32 off, so the engine matches the FP32 reference. DLA builds are
the exception: DLA needs a weakly typed network with the FP16/INT8 flags and GPU fallback (TensorRT 10.x only).

Multi-shape artifacts (a dynamic-dim ONNX) build with one optimization profile per entry whose min = opt = max
are the entry's shapes, so each entry gets kernels tuned for exactly its static shape; at run time an entry
selects its profile by index (the entries' order).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgehmr.converters.capabilities import Precision
from edgehmr.errors import ConversionError, InputError
from edgehmr.vendor import import_tensorrt

ENGINE_FILE = "model.engine"
# One optimization profile: input name -> its static shape in that profile (min = opt = max).
Profile = dict[str, list[int]]


@dataclass(frozen=True)
class EngineOptions:
    workspace_mb: int = 2048
    dla_core: int | None = None
    timing_cache: str | None = None  # read if present, written after the build (speeds up rebuilds)


def strongly_typed(precision: Precision, options: EngineOptions) -> bool:
    return precision != Precision.fp32 and options.dla_core is None


def _shape_spec(profile: Profile) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in shape)}" for name, shape in profile.items())


def trtexec_command(precision: Precision, options: EngineOptions = EngineOptions(), onnx_file: str = "model.onnx",
                    engine_file: str = ENGINE_FILE, profiles: list[Profile] | None = None) -> str:
    """The same build as :func:`build_engine`, for devices with trtexec but without Python.

    ``profiles``: trtexec's multi-profile form, ``--profile=N`` immediately followed by that profile's
    ``--minShapes/--optShapes/--maxShapes`` (trtexec reads the three flags right after each ``--profile``); at
    inference, ``--useProfile=N`` selects one.
    """
    parts = ["trtexec", f"--onnx={onnx_file}", f"--saveEngine={engine_file}",
             f"--memPoolSize=workspace:{options.workspace_mb}M"]
    for index, profile in enumerate(profiles or ()):
        spec = _shape_spec(profile)
        parts += [f"--profile={index}", f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]
    if precision == Precision.fp32:
        parts.append("--noTF32")
    elif strongly_typed(precision, options):
        parts.append("--stronglyTyped")  # a no-op on TensorRT 11, where strong typing is the default
    else:
        parts += ["--fp16"] + (["--int8"] if precision == Precision.int8 else [])
    if options.dla_core is not None:
        parts += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    if options.timing_cache:
        parts.append(f"--timingCacheFile={options.timing_cache}")
    return " ".join(parts)


def jetpack_release() -> str | None:
    """The L4T line of a Jetson (e.g. '# R36 (release), REVISION: 4.0'), None elsewhere."""
    path = Path("/etc/nv_tegra_release")
    return path.read_text().splitlines()[0].strip() if path.is_file() else None


def _logger(trt):
    class CollectingLogger(trt.ILogger):
        """Keeps TensorRT's errors so a failed build can say why in one line."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)

    return CollectingLogger()


def _parse(trt, builder, logger, onnx_path: Path, flags: int):
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        err = parser.get_error(0)
        where = f"node '{err.node_name()}' ({err.node_operator()})" if hasattr(err, "node_name") else "the graph"
        raise ConversionError(f"TensorRT {trt.__version__} cannot parse {where} of {onnx_path.name}: {err.desc()}"
                              f"{parse_failure_hint(where + ' ' + str(err.desc()))}")
    return network, parser


def parse_failure_hint(message: str) -> str:
    """What to do when the parser rejects an op edgehmr can export another way."""
    if "GridSample" in message:
        return (" (TensorRT imports GridSample from 8.5 on; JetPack 4.6 has 8.2. Reconvert with 'edgehmr convert "
                "... --sampler gather', which writes deformable attention's bilinear sampling as Gather ops.)")
    return ""


def build_engine(onnx_path: Path, engine_path: Path, precision: Precision,
                 options: EngineOptions = EngineOptions(), profiles: list[Profile] | None = None) -> dict:
    """Parse, build and serialize; the engine file appears only when the build succeeded. ``profiles`` (one per
    multi-shape entry) become optimization profiles with min = opt = max, in order."""
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    typed = strongly_typed(precision, options)
    flags = 0
    if typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network, _parser = _parse(trt, builder, logger, onnx_path, flags)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if precision == Precision.fp32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if not typed and precision != Precision.fp32:
        for flag in ("FP16", "INT8") if precision == Precision.int8 else ("FP16",):
            if not hasattr(trt.BuilderFlag, flag):
                raise ConversionError(f"TensorRT {trt.__version__} has no {flag} builder flag (weak typing was "
                                      f"removed in 11.x); DLA builds need TensorRT 10.x.")
            config.set_flag(getattr(trt.BuilderFlag, flag))
    if options.dla_core is not None:
        if builder.num_DLA_cores <= options.dla_core:
            raise InputError(f"DLA core {options.dla_core} requested, this device has {builder.num_DLA_cores}.")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    for profile in profiles or ():
        config.add_optimization_profile(_optimization_profile(builder, network, profile, onnx_path))
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = logger.errors[-1] if logger.errors else "no error was logged"
        raise ConversionError(f"TensorRT {trt.__version__} could not build {onnx_path.name} as {precision.value}: "
                              f"{why}")
    staging = engine_path.with_suffix(".engine.partial")
    staging.write_bytes(bytes(serialized))
    os.replace(staging, engine_path)
    if cache_path:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    info = {"file": engine_path.name, "tensorrt": trt.__version__, "jetpack": jetpack_release(),
            "device": _device_name(), "strongly_typed": typed, "workspace_mb": options.workspace_mb,
            "dla_core": options.dla_core, "timing_cache": options.timing_cache,
            "build_seconds": round(time.perf_counter() - start, 1)}
    if profiles:
        info["optimization_profiles"] = len(profiles)
    return info


def _optimization_profile(builder, network, shapes: Profile, onnx_path: Path):
    """One profile fixing every dynamic network input to its shape here (static inputs need none)."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if all(d >= 0 for d in tensor.shape):
            continue
        if tensor.name not in shapes:
            raise ConversionError(f"{onnx_path.name}: input '{tensor.name}' is dynamic {tuple(tensor.shape)} but the "
                                  f"optimization profile gives it no shape.")
        shape = tuple(shapes[tensor.name])
        profile.set_shape(tensor.name, shape, shape, shape)
    return profile


def _device_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # device naming is informational; never fail a finished build over it
        return None


def can_build_here() -> bool:
    """TensorRT importable and a CUDA device visible: convert then builds the engine right away."""
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
