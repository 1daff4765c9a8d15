"""What this host's CPU runs fastest: one transformer MLP block converted by every installed CPU target at every
precision it offers, timed in alternation, plus the CPU features that explain the ranking.

The block (LayerNorm, Linear 768->3072, GELU, Linear 3072->768, residual over one crop's 192 tokens: two GEMMs
and what sits between them) goes through the project's own converters, quantizers and Q/DQ layouts, so the
probe ranks what the artifacts will do: a bare GEMM does not, because the runtimes differ as much in what they
fuse around a GEMM (bias, activation, requantization) as in the GEMM kernel. ``edgehmr doctor`` shows the result
and keeps it in the user's cache (keyed by CPU, core count and runtime versions); ``convert`` reads the cached one
to say when another target or precision runs faster here; ``bench/quantization.py`` measures it in its own run as
the ceiling a model is read against.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgehmr.cache import cache_root
from edgehmr.environment import package_version

TOKENS, WIDTH = 192, 768  # a ViT-B MLP over one 256x192 crop
PROBE_TARGETS = ("onnx", "openvino", "executorch")  # the targets whose artifacts run on this CPU
PROBE_PRECISIONS = ("fp32", "int8")
# CPU flags that decide which INT8 kernel is fast (x86: VNNI and AMX make signed and unsigned INT8 fast in every
# runtime; without them, only U8S8 GEMMs built on vpmaddubsw beat FP32. ARM: the dot-product instructions).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
# Pause before each timed call in the alternation. ONNX Runtime's and OpenVINO's worker threads keep spinning for
# a while after a run; the next runtime's run then shares the cores with them. Measured on hmr2-vit-s (2 cores):
# ONNX Runtime INT8 ran 69 ms right after OpenVINO, 36 ms after a 50 ms pause (47 ms after 20 ms).
SETTLE_S = 0.05
# Part of the cache key: raise it when the probe or a converter's layout changes what the probe measures.
PROBE_VERSION = 1


@dataclass
class Probe:
    runtime: str
    target: str | None  # the edgehmr target; None: PyTorch eager (the reference)
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


def block_gmacs(tokens: int = TOKENS, width: int = WIDTH) -> float:
    return 2 * tokens * width * 4 * width / 1e9


def _mlp_block(width: int):
    import torch

    class MlpBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(width)
            self.fc1 = torch.nn.Linear(width, 4 * width)
            self.fc2 = torch.nn.Linear(4 * width, width)

        def forward(self, x):
            return (x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x)))),)

    torch.manual_seed(0)
    return MlpBlock().eval()


def _runners(tokens: int, width: int, work: Path) -> tuple[list[Probe], list, dict]:
    """A runner per installed CPU target and precision (None where the conversion failed), and the feed."""
    import torch

    from edgehmr.calibration.recipes import QuantRecipe
    from edgehmr.converters.base import ExportJob
    from edgehmr.converters.capabilities import TARGETS, Precision, check_available
    from edgehmr.converters.convert import convert_part, part_metadata
    from edgehmr.errors import EdgeHMRError
    from edgehmr.targets.base import open_part_runner
    from edgehmr.vendor import vendor_quiet

    module = _mlp_block(width)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, tokens, width, generator=gen)
    calibration = [(torch.randn(1, tokens, width, generator=gen),) for _ in range(4)]
    recipe = QuantRecipe("probe", (), ("softmax", "layernorm"))  # the default recipes' op choices

    class Eager:
        default_entry = "main"

        def run(self, entry, feeds):
            with torch.no_grad():
                return module(torch.from_numpy(feeds["x"]))

    probes, runners = [Probe("PyTorch", None, "fp32")], [Eager()]
    for target in PROBE_TARGETS:
        caps = TARGETS[target]
        try:
            check_available(caps)
        except EdgeHMRError:
            continue
        for precision in PROBE_PRECISIONS:
            probe = Probe(caps.runtime, target, precision)
            job = ExportJob.single(module, (x,), ["x"], ["y"], Precision(precision), "host probe",
                                   calibration if precision == "int8" else None,
                                   recipe if precision == "int8" else None)
            folder = work / f"{target}-{precision}"
            folder.mkdir()
            try:
                with vendor_quiet():
                    result = convert_part(target, job, folder)
                    runners.append(open_part_runner(folder, part_metadata(target, job, result)))
            except Exception as e:  # a target that cannot build or run the block here is a finding, not a crash
                probe.note = f"unavailable: {str(e).splitlines()[0][:80]}"
                runners.append(None)
            probes.append(probe)
    return probes, runners, {"x": x.numpy()}


def time_in_alternation(calls: list[Callable[[], object] | None], warmup: int, runs: int) -> list[list[float]]:
    """Seconds per call of each of ``calls`` (None: skipped, no samples), every one once per round, each after a
    ``SETTLE_S`` pause: the one alternating timer of the probe and the benchmark scripts."""
    samples: list[list[float]] = [[] for _ in calls]
    for i in range(warmup + runs):
        for call, s in zip(calls, samples):
            if call is None:
                continue
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            call()
            if i >= warmup:
                s.append(time.perf_counter() - start)
    return samples


def probe(tokens: int = TOKENS, width: int = WIDTH, runs: int = 10, warmup: int = 2) -> list[Probe]:
    """GMAC/s of the MLP block per installed CPU target and precision (and PyTorch eager), timed in
    alternation."""
    with tempfile.TemporaryDirectory(prefix="edgehmr-probe-") as work:
        probes, runners, feed = _runners(tokens, width, Path(work))
        calls = [None if r is None else (lambda r=r: r.run(r.default_entry, feed)) for r in runners]
        for row, s in zip(probes, time_in_alternation(calls, warmup, runs)):
            if s:
                row.gmac_s = block_gmacs(tokens, width) / statistics.median(s)
    return probes


def verdict(probes: list[Probe], features: dict) -> str:
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
    versions = {m: package_version(m) for m in ("torch", "onnxruntime", "openvino", "nncf", "executorch")}
    versions["edgehmr"] = package_version("edgehmr")
    key = json.dumps([features, versions, TOKENS, WIDTH, PROBE_VERSION], sort_keys=True)
    key = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_root() / "host" / f"{key}.json"


def cached() -> tuple[dict, list[Probe]] | None:
    """The last probe of this host (same CPU, cores and runtime versions), or None when there is none."""
    features = cpu_features()
    try:
        raw = json.loads(_cache_file(features).read_text())
        return raw["features"], [Probe(**p) for p in raw["probes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def measure_and_cache(fresh: bool = False) -> tuple[dict, list[Probe]]:
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
    return (f"on this host (edgehmr doctor's probe) a transformer MLP block runs {best.gmac_s / chosen.gmac_s:.1f}x "
            f"faster as {best.runtime} {best.precision.upper()} than as {chosen.runtime} {precision.upper()}: "
            f"-t {best.target} -p {best.precision} should run faster here (edgehmr profile measures it)")
