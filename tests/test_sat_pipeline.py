"""SAT-HMR end to end on the tiny configuration: reference bundle (dynamic shapes) -> two-stage multi-bucket
artifacts per target -> the runner -> per-bucket validation against the reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgehmr.calibration.sources import synthetic_samples
from edgehmr.converters.capabilities import TARGETS
from edgehmr.sat.bundle import make_sat_bundle
from edgehmr.sat.convert import convert_sat
from edgehmr.sat.frame import Canvas
from edgehmr.validate import validate
from edgehmr.spec import resolve_spec
from sat_helpers import TINY_NAME, loaded_tiny

CANVAS = "336x224"
BUCKETS = "8x48,24x80,48x96"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sat")
    loaded = loaded_tiny(2)
    bundle = make_sat_bundle(loaded, list(synthetic_samples(6, seed=1)), Canvas.parse(CANVAS), root / "ref")
    return root, loaded, bundle


def _convert(root, loaded, target, precision=None, buckets=BUCKETS):
    """Exactly these buckets (no full-coverage ones: tests/test_sat_coverage.py covers those)."""
    spec = resolve_spec(TINY_NAME, target, precision, out_dir=str(root), canvas=CANVAS, buckets=buckets,
                        allow_demotion=True)
    return convert_sat(spec, loaded)


# Every target the capability table packages buckets for (Core ML: its own test below). ExecuTorch lowers each
# bucket as a method of its own (about a minute each here): the slow tier; tests/test_sat_coverage.py lowers one
# ExecuTorch artifact in the default tier.
BUCKETED = [t for t, caps in TARGETS.items() if not caps.buckets.startswith("none") and t != "coreml"]


@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow) if t == "executorch" else t
                                    for t in BUCKETED])
def test_fp32_artifact_matches_the_dynamic_reference_per_bucket(setup, target):
    root, loaded, bundle = setup
    artifact = _convert(root, loaded, target)
    meta = json.loads((artifact / "metadata.json").read_text())
    assert [b["name"] for b in meta["buckets"]["buckets"]] == ["b8x48", "b24x80", "b48x96"]
    assert set(meta["parts"]["stage2"]["entries"]) == {"b8x48", "b24x80", "b48x96"}
    if target == "tensorrt":  # engines are built on the device: one trtexec profile per bucket
        assert (artifact / "stage2" / "build_engine.sh").read_text().count("--profile=") == 3
    report = validate(artifact, bundle)
    assert report.passed, report.to_json()
    assert len(report.buckets) >= 2  # the frames exercise more than one bucket
    for bucket in report.buckets.values():
        assert bucket["selection_changed"] == 0 and bucket["demoted_cells"] == 0
        assert bucket["max_abs"] < 1e-4


def test_openvino_shared_weights_mode_gives_the_same_outputs(setup):
    from edgehmr.sat.runner import SatPipeline

    root, loaded, bundle = setup
    artifact = _convert(root / "shared", loaded, "openvino")
    per_bucket, shared = SatPipeline(artifact), SatPipeline(artifact, shared_weights=True)
    image = np.load(bundle / "inputs.npz")["image"][:1]
    a, b = per_bucket.run(image), shared.run(image)
    assert a.bucket == b.bucket
    for name in a.outputs:
        assert np.abs(a.outputs[name] - b.outputs[name]).max() < 1e-5


def test_fp16_openvino_passes_at_its_tolerance(setup):
    root, loaded, bundle = setup
    report = validate(_convert(root, loaded, "openvino", "fp16"), bundle)
    assert report.passed, report.to_json()


def test_overflow_is_reported_by_validate(setup):
    root, loaded, bundle = setup
    report = validate(_convert(root, loaded, "onnx", buckets="4x96"), bundle)
    assert sum(b["demoted_cells"] for b in report.buckets.values()) > 0
    assert any("--allow-demotion" in n for n in report.notes)
    assert any("overflowed" in n for n in report.notes)


def test_spec_refuses_what_sat_artifacts_cannot_be():
    from edgehmr.errors import SpecError

    with pytest.raises(SpecError, match="calibration frames"):
        resolve_spec("sat-hmr", "openvino", "int8", canvas=CANVAS)
    with pytest.raises(SpecError, match="cannot hold"):
        resolve_spec("sat-hmr", "executorch-coreml", canvas=CANVAS)
    with pytest.raises(SpecError, match="not int8"):
        resolve_spec("sat-hmr", "coreml", "int8", canvas=CANVAS, calib="synthetic")


@pytest.mark.slow  # ~100 s; the multi-function package itself is in the default tier (test_coreml_target)
def test_coreml_artifact_has_one_function_per_bucket_with_integer_index_inputs(setup):
    root, loaded, bundle = setup
    # Two buckets, not the three the other targets get: each is a Core ML function converted in a worker process
    # (about 55 s apiece here), and two already make the package multifunction.
    artifact = _convert(root, loaded, "coreml", buckets="8x48,48x96")
    meta = json.loads((artifact / "metadata.json").read_text())
    stage2 = meta["parts"]["stage2"]["details"]
    assert stage2["functions"] == ["b8x48", "b48x96"]
    assert stage2["minimum_deployment_target"]["ios"] == "iOS18"  # multifunction
    program = stage2["program"]
    inputs = {i["name"]: i for i in program["inputs"]}
    assert inputs["hr_cells"]["dtype"] == "int32" and inputs["other_mask"]["dtype"] == "float32"
    assert inputs["hr_cells"]["shape"] == [1, 8] and inputs["other_index"]["shape"] == [1, 48]  # default function
    # Off macOS the pipeline simulates Core ML's fp16 compute in torch on the module the artifact came from,
    # rebuilt from the registry with the seed the metadata records.
    report = validate(artifact, bundle)
    assert report.execution.startswith("simulated") or "simulat" in report.execution, report.execution
    assert report.passed, report.to_json()


def test_cli_refuses_bad_sat_options_with_one_line(tmp_path, capsys):
    from edgehmr.cli import main

    cases = [(["-m", "sat-hmr", "--canvas", "300x200"], "multiple of 56"),
             (["-m", "sat-hmr", "--buckets", "8by48"], "HRxOTHER"),
             (["-m", "sat-hmr", "--canvas", "336x224", "--buckets", "8x48"], "one per cell"),
             (["-m", "hmr2-vit-s", "--canvas", "336x224"], "full-frame"),
             (["-m", "sat-hmr", "--batch", "2"], "one frame")]
    for args, message in cases:
        code = main(["convert", *args, "--dry-run", "-o", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_int8_calibrates_every_bucket_and_validates(setup):
    root, loaded, bundle = setup
    spec = resolve_spec(TINY_NAME, "openvino", "int8", out_dir=str(root / "int8"), canvas=CANVAS,
                        buckets=BUCKETS, calib="synthetic", calib_count=6, allow_demotion=True)
    artifact = convert_sat(spec, loaded)
    meta = json.loads((artifact / "metadata.json").read_text())
    samples = {b["name"]: b["calibration_samples"] for b in meta["buckets"]["buckets"]}
    # b8x48 holds no synthetic frame (they all need > 48 other tokens); the others are calibrated on their own.
    assert samples["b8x48"] == 0 and samples["b24x80"] > 0 and samples["b48x96"] > 0
    assert meta["parts"]["stage2"]["details"]["calibration_samples"]["b24x80"] == samples["b24x80"]
    report = validate(artifact, bundle)
    assert report.task["mpjpe_mm"]["ok"], report.task
    # INT8 moves some scale-map values across the thresholds: reported per bucket and in a note, never hidden.
    changed = sum(b["selection_changed"] for b in report.buckets.values())
    assert changed == 0 or any("selected other tokens" in n for n in report.notes)


@pytest.mark.parametrize("model", [TINY_NAME, pytest.param("sat-hmr", marks=pytest.mark.slow)])
def test_demo_runs_sat_hmr_end_to_end(model, tmp_path, capsys):
    """reference -> ONNX and OpenVINO multi-bucket artifacts -> per-bucket validation, through the CLI; the slow
    tier runs it at the published size (222 M parameters)."""
    from edgehmr.cli import main

    code = main(["demo", "-m", model, "-o", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("PASS") == 2, out
    report = json.loads((tmp_path / f"{model}-openvino-fp32-448x336" / "validation.json").read_text())
    # the published model's frames spread over the buckets; the tiny one's seed-0 scale map sends them to one
    assert report["passed"] and len(report["buckets"]) >= (2 if model == "sat-hmr" else 1)


def test_profile_times_the_frame_stage1_and_every_bucket(setup):
    from edgehmr.profile import profile

    root, loaded, _ = setup
    report = profile(_convert(root / "profile", loaded, "onnx"), runs=2, warmup=0)
    assert set(report.per_entry) == {"stage1", "b8x48", "b24x80", "b48x96"}
    assert report.per_entry["b48x96"]["memory_tokens"] == 4 * 48 + 96 and report.latency.p50_ms > 0
