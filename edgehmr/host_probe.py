"""What this host's CPU runs fastest: one transformer-shaped GEMM through every installed runtime and precision,
timed in alternation, plus the CPU features that explain the ranking.

The INT8 contenders use the layouts the artifacts use, so the probe predicts what an artifact can gain:
ONNX Runtime's static QDQ with UINT8 activations and per-channel INT8 weights (``converters.onnx_quant``'s
layout; fused into its U8S8 GEMM), OpenVINO FakeQuantize with asymmetric activations (what NNCF's mixed preset
writes), PyTorch's FBGEMM dynamic INT8 linear. ``edgehmr doctor`` shows the result and keeps it in the user's
cache (keyed by CPU, core count and runtime versions); ``convert`` reads the cached one to say when another
target or precision runs faster here; ``bench/quantization.py`` uses it as the INT8 ceiling a model is read
against.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgehmr.cache import cache_root
from edgehmr.environment import package_version

# tokens x in x out: a ViT MLP expansion over one 256x192 crop's 192 tokens (ViT-B width)
GEMM_SHAPE = (192, 768, 3072)
# CPU flags that decide which INT8 kernel is fast (x86: VNNI and AMX make signed and unsigned INT8 fast in every
# runtime; without them, only U8S8 GEMMs built on vpmaddubsw beat FP32. ARM: the dot-product instructions).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@dataclass
class GemmProbe:
    runtime: str
    target: str | None  # the edgehmr target that runs on this runtime; None: PyTorch eager (the reference)
    precision: str
    gmac_s: float = 0.0
    note: str = ""


def cpu_features() -> dict:
    """CPU model name, logical cores and the INT8-relevant flags (from /proc/cpuinfo where there is one)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "int8_flags": [f for f in INT8_FLAGS if f in flags]}


def _session(model, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _onnx_gemm(weight: np.ndarray, x: np.ndarray, int8: bool, threads: int | None) -> Callable[[], object]:
    from onnx import TensorProto, helper, numpy_helper

    m, k = x.shape
    n = weight.shape[1]
    if not int8:
        nodes, inits = [helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(weight, "w")]
    else:  # the artifact layout: UINT8 activations in and out, per-channel symmetric INT8 weights
        scale = (np.abs(weight).max(0) / 127).astype(np.float32)
        x_scale, y_scale = np.abs(x).max() / 127.5, 8 / 127.5  # y has unit variance (weights scaled by 1/sqrt(k))
        inits = [numpy_helper.from_array(np.round(weight / scale).astype(np.int8), "wq"),
                 numpy_helper.from_array(scale, "ws"), numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
                 numpy_helper.from_array(np.array(x_scale, np.float32), "xs"),
                 numpy_helper.from_array(np.array(y_scale, np.float32), "ys"),
                 numpy_helper.from_array(np.array(128, np.uint8), "z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "z"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "z"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
                 helper.make_node("MatMul", ["xd", "wd"], ["yf"]),
                 helper.make_node("QuantizeLinear", ["yf", "ys", "z"], ["yq"]),
                 helper.make_node("DequantizeLinear", ["yq", "ys", "z"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    session = _session(model, threads)
    return lambda: session.run(None, {"x": x})


def _openvino_gemm(weight: np.ndarray, x: np.ndarray, int8: bool, threads: int | None) -> Callable[[], object]:
    import openvino as ov
    from openvino import opset13 as ops

    param = ops.parameter(list(x.shape), np.float32, name="x")
    a, b = param, ops.constant(np.ascontiguousarray(weight.T))
    if int8:  # NNCF's mixed preset: asymmetric (u8) activations, symmetric per-channel weights
        lo, hi = ops.constant(np.array(x.min(), np.float32)), ops.constant(np.array(x.max(), np.float32))
        a = ops.fake_quantize(param, lo, hi, lo, hi, 256)
        w_hi = np.abs(weight.T).max(1, keepdims=True).astype(np.float32)
        b = ops.fake_quantize(b, ops.constant(-w_hi), ops.constant(w_hi), ops.constant(-w_hi), ops.constant(w_hi), 255)
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(ov.Model([ops.matmul(a, b, False, True)], [param]), "CPU", config)
    request = compiled.create_infer_request()
    return lambda: request.infer([x])


def _torch_gemm(weight: np.ndarray, x: np.ndarray, int8: bool, threads: int | None) -> Callable[[], object]:
    import torch

    linear = torch.nn.Linear(weight.shape[0], weight.shape[1], bias=False).eval()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight.T))
    module = torch.nn.Sequential(linear)
    if int8:
        import warnings

        with warnings.catch_warnings():  # deprecated in favour of torchao, still FBGEMM's kernel
            warnings.simplefilter("ignore")
            module = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return module(xt)
    return run


# runtime, its module, the target it serves, builder
CONTENDERS = (("ONNX Runtime", "onnxruntime", "onnx", _onnx_gemm),
              ("OpenVINO", "openvino", "openvino", _openvino_gemm),
              ("PyTorch", "torch", None, _torch_gemm))


def probe(shape: tuple[int, int, int] = GEMM_SHAPE, runs: int = 12, warmup: int = 3,
          threads: int | None = None) -> list[GemmProbe]:
    """GMAC/s of one ``shape`` GEMM per installed runtime and precision, every contender once per round."""
    import importlib.util

    m, k, n = shape
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    probes, fns = [], []
    for runtime, module, target, build in CONTENDERS:
        if importlib.util.find_spec(module) is None:
            continue
        for precision in ("fp32", "int8"):
            row = GemmProbe(runtime, target, precision)
            try:
                fns.append(build(weight, x, precision == "int8", threads))
            except Exception as e:  # a runtime without that kernel here is a finding, not a crash
                row.note = f"unavailable: {str(e).splitlines()[0][:80]}"
                fns.append(None)
            probes.append(row)
    samples: list[list[float]] = [[] for _ in probes]
    for i in range(warmup + runs):
        for fn, s in zip(fns, samples):
            if fn is None:
                continue
            start = time.perf_counter()
            fn()
            if i >= warmup:
                s.append(time.perf_counter() - start)
    for row, s in zip(probes, samples):
        if s:
            row.gmac_s = m * k * n / 1e9 / statistics.median(s)
    return probes


def verdict(probes: list[GemmProbe], features: dict) -> str:
    """One sentence: the fastest target and precision for this host's CPU, and why."""
    shipped = [p for p in probes if p.target and p.gmac_s]
    if not shipped:
        return "no CPU runtime that edgehmr targets is installed (see the table above)"
    best = max(shipped, key=lambda p: p.gmac_s)
    fp32 = max((p for p in shipped if p.precision == "fp32"), key=lambda p: p.gmac_s, default=None)
    said = f"fastest here: -t {best.target} -p {best.precision} ({best.runtime}, {best.gmac_s:.0f} GMAC/s"
    said += f", {best.gmac_s / fp32.gmac_s:.1f}x the best FP32)" if fp32 and best is not fp32 else ")"
    flags = set(features.get("int8_flags", ()))
    slower_int8 = [p for p in shipped if p.precision == "int8" and p is not best and p.gmac_s < 0.6 * best.gmac_s]
    dot_products = flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}
    if best.precision == "int8" and dot_products:
        said += f"; this CPU has INT8 dot-product instructions ({', '.join(sorted(dot_products))})"
    elif best.precision == "int8" and "avx2" in flags:
        said += "; this CPU has AVX2 without VNNI or AMX, where only U8S8 GEMMs (vpmaddubsw) beat FP32"
    if best.precision == "int8" and slower_int8:
        said += f"; slower INT8 here: {', '.join(f'{p.runtime} {p.gmac_s:.0f} GMAC/s' for p in slower_int8)}"
    return said


def _cache_file(features: dict) -> Path:
    versions = {m: package_version(m) for _, m, _, _ in CONTENDERS}
    key = hashlib.sha256(json.dumps([features, versions, GEMM_SHAPE], sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "host" / f"{key}.json"


def cached() -> tuple[dict, list[GemmProbe]] | None:
    """The last probe of this host (same CPU, cores and runtime versions), or None when there is none."""
    features = cpu_features()
    try:
        raw = json.loads(_cache_file(features).read_text())
        return raw["features"], [GemmProbe(**p) for p in raw["probes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def measure_and_cache(fresh: bool = False) -> tuple[dict, list[GemmProbe]]:
    """The cached probe unless ``fresh``; otherwise measure (a few seconds) and keep it."""
    found = None if fresh else cached()
    if found:
        return found
    features = cpu_features()
    probes = probe()
    path = _cache_file(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"features": features, "probes": [asdict(p) for p in probes]}, indent=1))
    tmp.replace(path)
    return features, probes


def faster_here(target: str, precision: str, margin: float = 1.5) -> str | None:
    """A note when the cached probe says another target/precision runs GEMMs ``margin`` times faster than
    ``target``/``precision`` on this host; None without a cached probe or when the choice is already close."""
    found = cached()
    if not found:
        return None
    features, probes = found
    chosen = next((p for p in probes if p.target == target and p.precision == precision and p.gmac_s), None)
    shipped = [p for p in probes if p.target and p.gmac_s]
    if chosen is None or not shipped:
        return None
    best = max(shipped, key=lambda p: p.gmac_s)
    if best.gmac_s < margin * chosen.gmac_s:
        return None
    return (f"on this host (edgehmr doctor's GEMM probe) {best.runtime} {best.precision.upper()} runs "
            f"{best.gmac_s / chosen.gmac_s:.1f}x the GEMM throughput of {chosen.runtime} {precision.upper()}: "
            f"-t {best.target} -p {best.precision} should run faster here (edgehmr profile measures it)")
