"""``edgehmr profile --import``: native tools' timing files into the profile schema.

Real files where the tool runs here (OpenVINO benchmark_app, an ExecuTorch ETDump), documented samples otherwise
(trtexec, Core ML): see tests/data/native_profiles/README.md.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgehmr.artifact import SCHEMA_VERSION
from edgehmr.errors import InputError
from edgehmr.native_profiles import read_native
from edgehmr.profile import PROFILE_FILE, import_profile
from edgehmr.preprocess import HMR2_CROP

DATA = Path(__file__).parent / "data" / "native_profiles"


@pytest.fixture
def fake_artifact(tmp_path):
    """An artifact folder for a given target: only metadata.json matters to an import."""
    def make(target: str) -> Path:
        path = tmp_path / f"hmr2-vit-s-{target}-fp16"
        path.mkdir()
        outputs = ["global_orient", "body_pose", "betas", "pred_cam"]
        part = {"target": target, "file": "model.bin", "precision": "fp16", "input_names": ["image"],
                "output_names": outputs, "entries": {"main": {"image": [1, 3, 256, 192]}}, "details": {}}
        meta = {"schema_version": SCHEMA_VERSION, "model": {"model": "hmr2-vit-s", "family": "hmr2", "weights": "trained"},
                "target": target, "precision": "fp16", "parts": {"model": part},
                "inputs": [{"name": "image", "shape": [1, 3, 256, 192]}], "outputs": [{"name": n} for n in outputs],
                "preprocessing": HMR2_CROP.to_json(),
                "postprocessing": {"camera": {"focal_length_px": 5000.0, "crop_size_px": 256.0}}}
        (path / "metadata.json").write_text(json.dumps(meta))
        (path / "model.bin").write_bytes(b"\0" * 2_000_000)
        return path
    return make


def test_trtexec_times_give_exact_percentiles_and_profile_gives_layers(fake_artifact):
    path = fake_artifact("tensorrt")
    report = import_profile(path, [DATA / "trtexec_times.json", DATA / "trtexec_profile.json"], device="Orin NX 25W")
    latency = [row["latencyMs"] for row in json.loads((DATA / "trtexec_times.json").read_text())]
    assert report.latency.runs == len(latency)
    assert report.latency.p50_ms == pytest.approx(np.percentile(latency, 50))
    assert report.latency.p99_ms == pytest.approx(np.percentile(latency, 99))
    assert report.latency.clipped >= 1 and report.latency.mean_ms < np.mean(latency)  # the 4.87 ms hiccup
    assert report.layers[0]["name"].startswith("{ForeignNode") and report.layers[0]["ms"] == pytest.approx(3.31)
    assert sum(layer["share"] for layer in report.layers) == pytest.approx(1.0)
    assert report.device == {"label": "Orin NX 25W"} and report.source.startswith("imported: trtexec --exportTimes")
    assert report.size_mb == pytest.approx(2.0, abs=0.1) and report.peak_rss_mb is None


def test_recorded_benchmark_app_reports(fake_artifact):
    path = fake_artifact("openvino")
    report = import_profile(path, [DATA / "openvino_benchmark_report.csv", DATA / "openvino_average_counters_report.csv"])
    results = _csv_section(DATA / "openvino_benchmark_report.csv", "Execution results")
    assert report.latency.p50_ms == float(results["latency (ms)"]) and report.latency.runs == 20
    assert report.latency.mean_ms == float(results["avg latency"]) and report.latency.p90_ms is None
    assert report.first_inference_ms == float(results["first inference time (ms)"])
    assert report.load_s == pytest.approx((float(results["read model time (ms)"])
                                           + float(results["compile model time (ms)"])) / 1e3)
    assert report.device["device"] == "CPU"
    slowest = max(_executed_layers(DATA / "openvino_average_counters_report.csv").items(), key=lambda kv: kv[1])
    assert (report.layers[0]["name"], report.layers[0]["ms"]) == slowest
    as_json = import_profile(path, [DATA / "openvino_benchmark_report.json"])
    assert as_json.latency.p50_ms == float(json.loads((DATA / "openvino_benchmark_report.json").read_text())
                                           ["execution_results"]["latency (ms)"])


def test_benchmark_app_run_here_imports_from_its_report_folder(artifact, tmp_path):
    bench = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    if not Path(bench).exists():
        pytest.skip("OpenVINO's benchmark_app is not installed")
    path = artifact("test-hmr2", target="openvino")
    folder = tmp_path / "bench"
    folder.mkdir()  # benchmark_app does not create it
    subprocess.run([bench, "-m", str(path / "model.xml"), "-d", "CPU", "-hint", "latency", "-niter", "5",
                    "-report_type", "average_counters", "-report_folder", str(folder)],
                   check=True, capture_output=True, timeout=300)
    report = import_profile(path, [folder])
    results = _csv_section(folder / "benchmark_report.csv", "Execution results")
    assert report.latency.p50_ms == float(results["latency (ms)"]) and report.latency.runs == 5
    assert report.layers and report.layers[0]["ms"] > 0 and report.target == "openvino"


def test_etdump_from_an_executorch_run_gives_per_inference_samples(artifact, tmp_path):
    portable = pytest.importorskip("executorch.extension.pybindings.portable_lib")
    path = artifact("test-hmr2", target="executorch")
    module = portable._load_for_executorch(str(path / "model.pte"), enable_etdump=True)
    import torch

    for _ in range(3):
        module.forward((torch.randn(1, 3, 256, 192),))
    dump = tmp_path / "run.etdp"
    module.write_etdump_result_to_file(str(dump))
    report = import_profile(path, [dump], device="this machine")
    assert report.latency.runs == 3 and report.latency.p50_ms > 0 and report.load_s > 0
    assert report.layers and report.layers[0]["ms"] >= report.layers[-1]["ms"]
    assert any(layer["type"] == "delegated" for layer in report.layers)  # XNNPACK's own operator events


def test_coreml_timings_and_the_cli(fake_artifact, capsys):
    from edgehmr.cli import main

    path = fake_artifact("coreml")
    code = main(["profile", str(path), "--import", str(DATA / "coreml_timings.json"), "--json"])
    saved = json.loads((path / PROFILE_FILE).read_text())
    sample = json.loads((DATA / "coreml_timings.json").read_text())
    assert code == 0 and json.loads(capsys.readouterr().out)["source"] == "imported: Core ML app timings"
    assert saved["latency"]["p50_ms"] == pytest.approx(np.percentile(sample["prediction_ms"], 50))
    assert saved["load_s"] == pytest.approx(0.2125) and saved["first_inference_ms"] == 38.4
    assert saved["device"]["device"] == "iPhone15,2" and saved["layers"][0]["name"] == "conv_0"


def test_bad_imports_say_what_is_wrong(fake_artifact, tmp_path):
    path = fake_artifact("openvino")
    unknown = tmp_path / "notes.json"
    unknown.write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not a timing file edgehmr can read"):
        import_profile(path, [unknown])
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(InputError, match="is not valid JSON"):
        read_native(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no timing file"):
        read_native(tmp_path / "empty")
    with pytest.raises(InputError, match="describe a tensorrt artifact"):
        import_profile(path, [DATA / "trtexec_times.json"])
    with pytest.raises(InputError, match="not found"):
        read_native(tmp_path / "missing.json")


def _csv_section(path: Path, title: str) -> dict[str, str]:
    section, current = {}, None
    for row in csv.reader(path.read_text().splitlines(), delimiter=";"):
        if len(row) == 1:
            current = row[0]
        elif current == title and len(row) >= 2:
            section[row[0]] = row[1]
    return section


def _executed_layers(path: Path) -> dict[str, float]:
    rows = csv.DictReader(path.read_text().splitlines(), delimiter=";")
    return {r["layerName"]: float(r["realTime (ms)"]) for r in rows if r["execStatus"] == "Status.EXECUTED"}
