"""The host probe: every installed CPU target and precision is converted and timed, the verdict names the
fastest, the cache is reused, and convert's note appears only when another choice is clearly faster."""

from __future__ import annotations

import json

from edgehmr import host_probe
from edgehmr.host_probe import Probe


def test_probe_times_every_installed_cpu_target_and_precision():
    probes = host_probe.probe(tokens=16, width=64, runs=2, warmup=1)
    found = {(p.target, p.precision) for p in probes if p.gmac_s > 0}
    every = {(t, p) for t in host_probe.PROBE_TARGETS for p in host_probe.PROBE_PRECISIONS} | {(None, "fp32")}
    assert found == every, probes  # the test environment installs every CPU target
    best = max((p for p in probes if p.target), key=lambda p: p.gmac_s)
    assert f"-t {best.target} -p {best.precision}" in host_probe.verdict(probes, host_probe.cpu_features())


def test_cpu_features_read_the_int8_flags():
    features = host_probe.cpu_features()
    assert features["cores"] >= 1 and set(features["int8_flags"]) <= set(host_probe.INT8_FLAGS)


def test_verdict_explains_a_cpu_without_int8_dot_products():
    probes = [Probe("ONNX Runtime", "onnx", "fp32", 70), Probe("ONNX Runtime", "onnx", "int8", 250),
              Probe("OpenVINO", "openvino", "int8", 55)]
    said = host_probe.verdict(probes, {"int8_flags": ["avx2"]})
    assert said.startswith("fastest here: -t onnx -p int8") and "3.6x the best FP32" in said
    assert "without VNNI" in said and "OpenVINO 55 GMAC/s" in said


def test_measured_once_then_read_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEHMR_CACHE", str(tmp_path))
    calls = []
    fake = [Probe("ONNX Runtime", "onnx", "fp32", 60.0), Probe("ONNX Runtime", "onnx", "int8", 240.0),
            Probe("OpenVINO", "openvino", "fp32", 70.0)]
    monkeypatch.setattr(host_probe, "probe", lambda: calls.append(1) or fake)
    assert host_probe.cached() is None and host_probe.faster_here("onnx", "fp32") is None  # nothing measured yet
    host_probe.measure_and_cache()
    host_probe.measure_and_cache()
    assert len(calls) == 1
    (stored,) = (tmp_path / "host").glob("*.json")
    assert json.loads(stored.read_text())["probes"][1]["gmac_s"] == 240.0
    note = host_probe.faster_here("openvino", "fp32")
    assert "3.4x faster as ONNX Runtime INT8 than as OpenVINO FP32" in note and "-t onnx -p int8" in note
    assert host_probe.faster_here("onnx", "int8") is None  # already the fastest
    assert host_probe.faster_here("coreml", "fp16") is None  # not a CPU target of the probe
    host_probe.measure_and_cache(fresh=True)
    assert len(calls) == 2
