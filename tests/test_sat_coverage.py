"""SAT-HMR artifacts are faithful by default: the bucket table always gets the full-coverage buckets, so no frame
is demoted (the original never sees a small person at low resolution); ``--allow-demotion`` trades that away and
every report says so."""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest

from edgehmr.bucketing import Bucket, BucketTable, classify, full_coverage, never_demotes
from edgehmr.calibration.sources import synthetic_samples
from edgehmr.cli import main
from edgehmr.sat.bundle import make_sat_bundle
from edgehmr.sat.convert import convert_sat
from edgehmr.sat.frame import Canvas
from edgehmr.sat.tables import default_table, with_full_coverage
from edgehmr.validate import validate
from edgehmr.spec import resolve_spec
from sat_helpers import SHARED_CANVAS, TINY_NAME, loaded_tiny, shared_sat_artifact

CANVAS = "336x224"
GRID = Canvas.parse(CANVAS).grid  # 8 x 12 cells


def test_full_coverage_holds_every_possible_selection():
    """Exhaustive over the 2x4-cell grid's selections and random ones on a larger grid: after the coverage
    buckets, nothing is demoted; without them, something is."""
    for grid in ((2, 4), (4, 4)):
        table = BucketTable((Bucket.of(1, grid[0] * grid[1]),), grid)
        covered = with_full_coverage(table)
        assert table.can_demote and not covered.can_demote
        cells = grid[0] * grid[1]
        for conf_bits, small_bits in product(range(2 ** cells), repeat=2) if cells == 8 else []:
            conf = np.array([(conf_bits >> i) & 1 for i in range(cells)], np.float32).reshape(grid)
            scale = np.array([1 - ((small_bits >> i) & 1) for i in range(cells)], np.float32).reshape(grid)
            assert covered.choose(classify(conf, scale))[2] == 0
    rng = np.random.default_rng(0)
    table = with_full_coverage(default_table((46, 46)))
    for p in np.linspace(0, 1, 40):
        sel = classify(rng.uniform(0, 1, (46, 46)) * (rng.uniform(0, 1) < 1.5 * p), rng.uniform(0, 1, (46, 46)) * p)
        assert table.choose(sel)[2] == 0
    assert never_demotes(table.buckets, (46, 46)) and full_coverage(table.buckets, (46, 46)) == ()
    # the largest coverage bucket holds every cell at high resolution
    assert max(b.hr_cells for b in table.buckets) == 46 * 46


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Frames that overflow the canvas's default ladder (up to 39 of 96 cells small; its largest holds 24)."""
    root = tmp_path_factory.mktemp("coverage")
    loaded = loaded_tiny(2)
    bundle = make_sat_bundle(loaded, list(synthetic_samples(6, seed=1)), Canvas.parse(CANVAS), root / "ref")
    small = np.load(bundle / "outputs.npz")["small"]
    assert small.reshape(len(small), -1).sum(1).max() > max(b.hr_cells for b in default_table(GRID).buckets)
    return root, loaded, bundle


# ExecuTorch: one ladder bucket (the default ladder's largest, which the crowded frames overflow) plus the coverage
# buckets, the artifact tests/test_cpp_runtime.py runs too (one lowering, minutes, for both: the slow tier's).
@pytest.mark.parametrize("target", ["onnx", "openvino", pytest.param("executorch", marks=pytest.mark.slow)])
def test_defaults_never_demote_and_validate_at_fp32(setup, run_wide, target):
    root, loaded, bundle = setup
    if target == "executorch":
        assert CANVAS == SHARED_CANVAS
        artifact = shared_sat_artifact(run_wide, target)
    else:
        spec = resolve_spec(TINY_NAME, target, "fp32", out_dir=str(root / "default"), canvas=CANVAS)
        artifact = convert_sat(spec, loaded)
    table = json.loads((artifact / "metadata.json").read_text())["buckets"]
    assert table["can_demote"] is False and table["full_coverage"]["buckets"]
    report = validate(artifact, bundle)
    assert report.passed, report.to_json()
    assert sum(b["demoted_cells"] for b in report.buckets.values()) == 0
    assert not any("demotion" in n for n in report.notes)
    assert any(name in report.buckets for name in table["full_coverage"]["buckets"])  # the crowded frames use them


PUBLISHED_CANVAS = "672x448"  # the canvas: its default ladder is one bucket, b96x384


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The published SAT-HMR (seeded) on two synthetic frames whose selections overflow the canvas's ladder."""
    from edgehmr.models import load_model

    root = tmp_path_factory.mktemp("coverage-published")
    loaded = load_model("sat-hmr")
    canvas = Canvas.parse(PUBLISHED_CANVAS)
    bundle = make_sat_bundle(loaded, list(synthetic_samples(2, seed=1)), canvas, root / "ref")
    small = np.load(bundle / "outputs.npz")["small"]
    assert small.reshape(len(small), -1).sum(1).max() > max(b.hr_cells for b in default_table(canvas.grid).buckets)
    return root, loaded, bundle


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "openvino", "executorch"])
def test_published_defaults_never_demote_and_validate_at_fp32(published, target):
    """The issue's commands at the published size: reference + convert with defaults + validate."""
    root, loaded, bundle = published
    spec = resolve_spec("sat-hmr", target, "fp32", out_dir=str(root / target), canvas=PUBLISHED_CANVAS)
    artifact = convert_sat(spec, loaded)
    assert json.loads((artifact / "metadata.json").read_text())["buckets"]["can_demote"] is False
    report = validate(artifact, bundle)
    assert report.passed, report.to_json()
    assert sum(b["demoted_cells"] for b in report.buckets.values()) == 0


def test_allow_demotion_is_said_everywhere(setup, tmp_path, capsys):
    from edgehmr.profile import profile
    from edgehmr.report import make_report

    root, loaded, bundle = setup
    spec = resolve_spec(TINY_NAME, "onnx", "fp32", out_dir=str(tmp_path), canvas=CANVAS, calib="synthetic",
                        calib_count=6, bucket_count=2, allow_demotion=True)
    artifact = convert_sat(spec, loaded)
    meta = json.loads((artifact / "metadata.json").read_text())
    assert meta["buckets"]["can_demote"] is True and meta["spec"]["allow_demotion"] is True
    assert meta["buckets"]["full_coverage"]["buckets"] == []
    report = validate(artifact, bundle)
    assert any("--allow-demotion" in n for n in report.notes)
    prof = profile(artifact, runs=1, warmup=0)
    assert any("--allow-demotion" in n for n in prof.notes)
    paths = make_report([artifact], tmp_path / "report")
    assert "--allow-demotion" in paths["md"].read_text()


def test_convert_says_what_the_full_coverage_buckets_do(setup, tmp_path, capsys):
    """What convert prints from the bucket table it records (the table is resolved before any conversion; the
    metadata's "buckets" is this table: test_defaults_never_demote_and_validate_at_fp32 reads it there)."""
    from edgehmr.cli.convert import _print_coverage
    from edgehmr.sat.convert import calibration_frames, resolve_table

    root, loaded, _ = setup
    canvas = Canvas.parse(CANVAS)
    for allow, expected in ((False, "never demotes: full-coverage buckets b48x96, b96x64"),
                            (True, "--allow-demotion: a frame that overflows")):
        spec = resolve_spec(TINY_NAME, "onnx", "fp32", out_dir=str(tmp_path / str(allow)), canvas=CANVAS,
                            buckets="8x96", calib="synthetic", calib_count=6, allow_demotion=allow)
        _print_coverage(resolve_table(spec, loaded, canvas, calibration_frames(spec, canvas))[1])
        err = capsys.readouterr().err
        assert expected in err and "of 6 calibration frames overflow without them" in err, err
    assert main(["convert", "-m", "hmr2-vit-s", "--allow-demotion", "--dry-run"]) == 2
    assert "--allow-demotion apply to full-frame SAT-HMR" in capsys.readouterr().err
