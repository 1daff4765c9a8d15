"""``edgehmr profile``: statistics, every host-runnable target, refusal of simulated runs, the CLI."""

from __future__ import annotations

import json

import pytest

from edgehmr.errors import TargetUnavailableError
from edgehmr.models import get_model_info
from edgehmr.profile import PROFILE_FILE, LatencyStats, profile


def test_latency_stats_clip_outliers_only_with_enough_runs():
    samples = [10.0 + 0.1 * (i % 5) for i in range(19)] + [100.0]
    stats = LatencyStats.of(samples)
    assert stats.clipped == 1 and stats.mean_ms == pytest.approx(10.2, abs=0.1) and stats.max_ms == 100.0
    assert stats.p50_ms <= stats.p90_ms <= stats.p99_ms and stats.p99_ms > 50  # percentiles keep the outlier
    few = LatencyStats.of([10.0, 10.1, 100.0])
    assert few.clipped == 0 and few.mean_ms > 30


@pytest.mark.parametrize("target", ["onnx", "openvino", "executorch"])
def test_profile_measures_a_host_runnable_artifact(artifact, target):
    path = artifact("test-hmr2", target=target)
    report = profile(path, runs=4, warmup=1)
    lat = report.latency
    assert report.execution == "runtime" and lat.runs == 4 and 0 < lat.p50_ms <= lat.p90_ms <= lat.p99_ms
    weights_mb = 4 * sum(p.numel() for p in get_model_info("test-hmr2").build().parameters()) / 1e6
    assert report.first_inference_ms > 0 and report.load_s > 0 and report.size_mb > 0.9 * weights_mb  # fp32
    assert report.peak_rss_mb > 0 and report.device["cores"] >= 1 and report.device["cpu"]


def test_simulated_artifacts_are_refused(artifact):
    with pytest.raises(TargetUnavailableError, match="profiling measures the device"):
        profile(artifact("test-hmr2", target="tensorrt"), runs=2, warmup=0)


def test_cli_writes_the_report(artifact, capsys):
    from edgehmr.cli import main

    path = artifact("test-hmr2")
    code = main(["profile", str(path), "--runs", "3", "--warmup", "0", "--json", "--quiet"])
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((path / PROFILE_FILE).read_text())
    assert code == 0 and printed["latency"]["runs"] == 3 and saved["model"] == "test-hmr2"
    assert main(["profile", str(path), "--runs", "0"]) == 2
