"""``edgehmr report``: rows from validation + profile results, Markdown/JSON/HTML, and the page as a browser
renders it (headless Chromium, where installed)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from edgehmr.cli import main
from edgehmr.profile import profile, save_profile
from edgehmr.validate import validate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reported(artifact, bundle, tmp_path_factory):
    a = artifact("test-hmr2")
    b = artifact("test-hmr2", "fp16")
    ref = bundle("test-hmr2")
    for path in (a, b):
        validate(path, ref)
        save_profile(profile(path, runs=3, warmup=0))
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(a.parent), "-o", str(out)]) == 0
    return out, a, b


def test_rows_merge_validation_and_profile(reported):
    out, a, b = reported
    rows = {r["artifact"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    for path in (a, b):
        row = rows[path.name]
        assert row["verdict"] == "pass" and row["p50_ms"] > 0 and row["task_metric"] == "mpjpe_mm"
    assert rows[a.name]["worst_rel_l2"] < rows[b.name]["worst_rel_l2"]  # fp32 drifts less than fp16
    joints = rows[b.name]["per_joint"]
    assert joints["names"][0] == "pelvis" and len(joints["mean"]) == 24 and joints["mean"][0] == 0.0
    # MPJPE is the mean of the per-joint terms over joints (and samples).
    assert sum(joints["mean"]) / 24 == pytest.approx(rows[b.name]["task_value"], rel=1e-9)
    assert all(hi >= mean for hi, mean in zip(joints["max"], joints["mean"]))
    md = (out / "report.md").read_text()
    assert f"| {a.name} | onnx | fp32 |" in md and "Measured on:" in md


def test_html_is_self_contained_with_plots(reported):
    out, _, _ = reported
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3 and "http" not in page.split("<body>")[1]
    assert "Per-joint drift (joint_3d_mm)" in page


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_html_renders_in_a_headless_browser(reported, tmp_path):
    import numpy as np
    from PIL import Image

    out, _, _ = reported
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,1600", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # text, table and plots, not a blank page


def test_no_artifacts_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "No artifact folders" in capsys.readouterr().err


def test_bench_matrix_converts_validates_profiles_and_reports(tmp_path, capsys):
    code = main(["bench", "--models", "test-hmr2", "--targets", "onnx,tensorrt", "--precisions", "fp32,int8-weights",
                 "--runs", "2", "--warmup", "0", "--count", "2", "-o", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["rows"]}
    assert rows["test-hmr2-onnx-fp32"]["verdict"] == "pass" and rows["test-hmr2-onnx-fp32"]["p50_ms"] > 0
    assert rows["test-hmr2-onnx-int8-weights"]["verdict"] == "pass"
    assert rows["test-hmr2-tensorrt-fp32"]["p50_ms"] is None  # simulated here: validated, not timed
    notes = "\n".join(report["notes"])
    assert "tensorrt int8-weights: skipped" in notes and "tensorrt fp32: done (validated, not timed" in notes
