"""``edgehmr report``: rows from validation + profile results, Markdown/JSON/HTML, and the page as a browser
renders it (headless Chromium, where installed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgehmr.artifact import RESULT_FILES
from edgehmr.cli import main
from edgehmr.profile import profile, save_profile
from edgehmr.validate import validate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[1]
# Where the browser test leaves its screenshots for a person to look at (printed by the test).
SCREENSHOTS = Path(os.environ.get("EDGEHMR_TEST_OUTPUT", ROOT / "build" / "test-output"))


def _fresh_copy(artifact: Path, dst: Path) -> Path:
    """A copy (hard links) without the results other tests wrote into the shared artifact."""
    shutil.copytree(artifact, dst, copy_function=os.link)
    for name in RESULT_FILES:
        (dst / name).unlink(missing_ok=True)
    return dst


@pytest.fixture(scope="module")
def reported(artifact, bundle, run_wide, tmp_path_factory):
    """A run folder as a user has one after a while: artifacts at two depths, crop models of two tasks and SAT-HMR,
    some profiled and some only validated."""
    from edgehmr.calibration.sources import synthetic_samples
    from edgehmr.sat.bundle import make_sat_bundle
    from edgehmr.sat.frame import Canvas
    from sat_helpers import SHARED_CANVAS, loaded_tiny, shared_sat_artifact

    runs = tmp_path_factory.mktemp("runs")
    made = {}
    for folder, model, precision, profiled in (("demo", "test-hmr2", "fp32", True), ("demo", "test-hmr2", "fp16", True),
                                               ("more", "test-hmr2", "int8-weights", False),
                                               ("more/pose", "test-vitpose", "fp32", True)):
        source = artifact(model, precision)
        path = _fresh_copy(source, runs / folder / source.name)
        validate(path, bundle(model))
        if profiled:
            save_profile(profile(path, runs=3, warmup=0))
        made[(model, precision)] = path
    sat = _fresh_copy(shared_sat_artifact(run_wide, "onnx"), runs / "sat" / "sat-artifact")
    sat_ref = make_sat_bundle(loaded_tiny(2), list(synthetic_samples(2, seed=1)), Canvas.parse(SHARED_CANVAS),
                              runs / "sat" / "reference")
    validate(sat, sat_ref)
    made[("test-sat-hmr", "fp32")] = sat
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(runs), "-o", str(out)]) == 0
    return out, made


def test_rows_merge_validation_and_profile(reported):
    out, made = reported
    rows = {r["artifact"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert set(rows) == {p.name for p in made.values()}  # every artifact below runs/, at any depth
    a, b = made[("test-hmr2", "fp32")], made[("test-hmr2", "fp16")]
    for path in (a, b):
        row = rows[path.name]
        assert row["verdict"] == "pass" and row["p50_ms"] > 0 and row["task_metric"] == "mpjpe_mm"
    assert rows[a.name]["worst_rel_l2"] < rows[b.name]["worst_rel_l2"]  # fp32 drifts less than fp16
    joints = rows[b.name]["per_joint"]
    assert joints["names"][0] == "pelvis" and len(joints["mean"]) == 24 and joints["mean"][0] == 0.0
    # MPJPE is the mean of the per-joint terms over joints (and samples).
    assert sum(joints["mean"]) / 24 == pytest.approx(rows[b.name]["task_value"], rel=1e-9)
    assert all(hi >= mean for hi, mean in zip(joints["max"], joints["mean"]))
    unprofiled = rows[made[("test-hmr2", "int8-weights")].name]
    assert unprofiled["p50_ms"] is None and unprofiled["size_mb"] > 0  # the size is known without a profile
    assert rows[made[("test-vitpose", "fp32")].name]["task_metric"] == "kp2d_px"
    md = (out / "report.md").read_text()
    assert f"| {a.name} | onnx | fp32 |" in md and "Measured on:" in md


def test_html_is_self_contained_with_plots(reported):
    out, _ = reported
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3 and "http" not in page.split("<body>")[1]
    for title in ("Latency per artifact", "Drift vs latency (mpjpe_mm)", "Drift vs latency (kp2d_px)",
                  "Per-joint drift (joint_3d_mm)", "Per-joint drift (kp2d_px)"):
        assert f"<figcaption>{title}</figcaption>" in page


def test_plots_show_every_artifact_and_fit_their_axes(reported):
    """What the images hold, read from the figures: every artifact is drawn or named as missing, drift axes start
    at zero with no negative tick."""
    import matplotlib.pyplot as plt

    from edgehmr import report

    out, made = reported
    rows = [report.row_for(path) for path in made.values()]
    names = {r.artifact for r in rows}
    fig = report._latency_plot(rows, plt, report.PLOT_WIDTH)
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.get_yticklabels()} == names
    assert sum(t.get_text() == "not profiled" for t in ax.texts) == 2  # int8-weights and SAT-HMR
    plt.close(fig)
    mesh = [r for r in rows if r.task_metric == "mpjpe_mm"]
    fig = report._tradeoff_plot(mesh, "mpjpe_mm", plt, report.PLOT_WIDTH)
    drawn = {t.get_text() for t in fig.axes[0].texts}
    said = " ".join(t.get_text() for t in fig.texts)
    for r in mesh:  # drawn where it has both numbers, else named under the plot
        assert r.artifact in drawn or r.artifact in said
    assert "not profiled" in said and fig.axes[0].get_ylim()[0] == 0
    plt.close(fig)
    for metric in ("joint_3d_mm", "kp2d_px"):
        fig = report._per_joint_plot(rows, metric, plt, report.PLOT_WIDTH)
        ax = fig.axes[0]
        assert ax.get_ylim()[0] == 0 and min(ax.get_yticks()[(ax.get_yticks() >= ax.get_ylim()[0])]) >= 0
        plt.close(fig)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_html_renders_in_a_headless_browser(reported):
    """The page as Chromium lays it out at 1400 px and at a phone's 390 px: every plot loaded, no empty half rows,
    nothing wider than the screen but the table's own scroller. Full-page screenshots are kept for a person."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import numpy as np
    from PIL import Image

    out, made = reported
    html = (out / "report.html").read_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    layout_js = """() => ({
        page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
        grid: document.querySelector('.plots').getBoundingClientRect().width,
        figures: [...document.querySelectorAll('figure')].map(f => {
            const r = f.getBoundingClientRect();
            const img = [...f.querySelectorAll('img')].find(i => i.offsetParent !== null);
            return {y: Math.round(r.y), width: r.width, loaded: !!img && img.complete && img.naturalWidth > 0,
                    shown: img ? img.getBoundingClientRect().width : 0, natural: img ? img.naturalWidth : 0};
        })})"""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        try:
            for width in (1400, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto((out / "report.html").as_uri())
                shot = SCREENSHOTS / f"report-{width}px.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot: {shot}")
                layout = page.evaluate(layout_js)
                assert layout["page"][0] <= layout["page"][1], f"{width} px: the page scrolls sideways"
                figures = layout["figures"]
                assert len(figures) == html.count("<figcaption>") == 5 and all(f["loaded"] for f in figures), figures
                rows = {}
                for f in figures:
                    rows.setdefault(f["y"], []).append(f["width"])
                for y, widths in rows.items():  # each row of plots spans the grid: no empty half
                    assert sum(widths) >= 0.95 * layout["grid"], (width, y, widths, layout["grid"])
                for f in figures:  # drawn for about this size: not blown up past legibility, not shrunk to specks
                    assert 0.35 <= f["shown"] / f["natural"] <= 1.3, (width, f)
                pixels = np.asarray(Image.open(shot).convert("L"))
                blank = (pixels > 250).all(axis=1)
                runs_of_blank = np.diff(np.flatnonzero(np.diff(np.r_[0, blank.astype(int), 0])))[::2]
                assert pixels.std() > 10 and max(runs_of_blank, default=0) < 120, f"{width} px: an empty band"
        finally:
            browser.close()


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
    assert "test-hmr2 tensorrt-int8-weights on local: skipped" in notes
    assert "test-hmr2 tensorrt-fp32 on local: pass (" in notes and "validated, not timed" in notes
    assert rows["test-hmr2-onnx-fp32"]["device"].startswith("local (")  # the device resource, then the machine
