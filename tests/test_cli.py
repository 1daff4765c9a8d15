"""The command line: listings, the end-to-end path, and one clear line + exit 2 for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgehmr.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_lists_zoo_with_cost(capsys):
    code, out, _ = run(capsys, "models", "hmr2-vit-*", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"hmr2-vit-s", "hmr2-vit-b", "hmr2-vit-l", "hmr2-vit-h"}
    assert rows["hmr2-vit-h"]["params_m"] == pytest.approx(670.46, abs=0.01)
    assert rows["hmr2-vit-s"]["gmacs"] < rows["hmr2-vit-b"]["gmacs"] < rows["hmr2-vit-h"]["gmacs"]
    code, _, err = run(capsys, "models", "test-", "--json")
    assert code == 2 and "listed with --all" in err  # the tiny test models are hidden without it
    code, out, _ = run(capsys, "models", "test-", "--all", "--json")
    assert {r["model"] for r in json.loads(out)} >= {"test-hmr2", "test-vitpose", "test-sat-hmr"}


def test_models_lists_every_published_model(capsys):
    from edgehmr.models import list_models

    code, out, _ = run(capsys, "models", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == set(list_models()) and not any(n.startswith("test-") for n in rows)
    assert all(r["params_m"] > 0 and r["gmacs"] > 0 for r in rows.values())


def test_targets_reads_capability_table(capsys, monkeypatch):
    from rich.console import Console

    from edgehmr.converters.capabilities import TARGETS

    code, out, _ = run(capsys, "targets", "--json")
    rows = {r["target"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == set(TARGETS) >= {"onnx", "openvino"}
    assert rows["openvino"]["precisions"] == ["fp32", "fp16", "int8", "int8-weights"]
    assert rows["onnx"]["needs_calibration"] == ["int8"]
    assert rows["coreml"]["precisions"][0] == "fp16"  # Core ML's default precision
    monkeypatch.setattr("edgehmr.cli.common.out", Console(width=200))  # every column shown
    code, table, _ = run(capsys, "targets")
    assert code == 0 and "edgehmr[openvino]" in table  # pip extras are printed, not eaten as rich markup


def test_doctor_lists_runtimes_and_install_hints(capsys):
    code, out, _ = run(capsys, "doctor", "--json", "--no-probe")
    report = json.loads(out)
    rows = {r["runtime"]: r for r in report["runtimes"]}
    assert code == 0 and rows["ONNX Runtime"]["installed"] and rows["ONNX Runtime"]["version"]
    for r in rows.values():
        assert r["installed"] or r["install"].startswith("pip install")
    assert "host" not in report


def test_doctor_shows_the_host_probe_and_its_verdict(capsys, monkeypatch, tmp_path):
    from edgehmr import host_probe

    monkeypatch.setenv("EDGEHMR_CACHE", str(tmp_path))  # test_host_probe runs the real probe; here, the command
    measured = [host_probe.Probe("ONNX Runtime (CPU)", "onnx", "fp32", 80.0),
                host_probe.Probe("ONNX Runtime (CPU)", "onnx", "int8", 210.0),
                host_probe.Probe("OpenVINO (CPU plugin)", "openvino", "int8", 0.0, "unavailable: no kernel")]
    monkeypatch.setattr(host_probe, "probe", lambda: measured)
    code, out, _ = run(capsys, "doctor")
    assert code == 0 and "an MLP block through each CPU target" in out and "unavailable: no kernel" in out
    assert "fastest here: -t onnx -p int8 (ONNX Runtime (CPU), 210 GMAC/s, 2.6x the best FP32)" in out
    monkeypatch.setattr(host_probe, "probe", lambda: pytest.fail("measured again instead of read from the cache"))
    code, out, _ = run(capsys, "doctor", "--json")
    host = json.loads(out)["host"]
    assert [g["gmac_s"] for g in host["probe"]] == [80.0, 210.0, 0.0] and host["verdict"].startswith("fastest")


def test_dry_run_prints_resolved_spec(capsys):
    code, out, _ = run(capsys, "convert", "-m", "hmr2-vit-s", "-p", "fp16", "--dry-run")
    spec = json.loads(out)
    assert code == 0 and spec["precision"] == "fp16" and spec["target"] == "onnx" and spec["batch"] == 1


@pytest.mark.parametrize("argv, message", [
    (["convert", "-m", "hmr2-vit-x"], "Unknown model 'hmr2-vit-x'. Did you mean 'hmr2-vit-s'?"),
    (["convert", "-m", "hmr2-vit-s", "-t", "tflite"], "Unknown target 'tflite'"),
    (["convert", "-m", "hmr2-vit-s", "-p", "int4"], "Unknown precision 'int4'"),
    (["convert", "-m", "vitpose-s", "--with-mesh"], "--with-mesh needs an HMR model"),
    (["convert", "-m", "hmr2-vit-s", "--with-mesh", "--smpl", "/nope/SMPL_NEUTRAL.pkl"], "SMPL model file not found"),
    (["convert", "-m", "hmr2-vit-s", "-c", "/nope/model.ckpt"], "Checkpoint not found"),
    (["convert", "-m", "hmr2-vit-s", "-p", "int8"], "int8 on onnx needs calibration data"),
    (["convert", "-m", "hmr2-vit-s", "-p", "int8", "--calib", "/nope/frames"], "Calibration source not found"),
    (["convert", "-m", "hmr2-vit-s", "-p", "int8", "--calib", "synthetic", "--keep-float", "smpl_head.decpos"],
     "Did you mean 'smpl_head.decpose'"),
    (["reference", "-m", "vitpose-s", "-i", "/nope/frames"], "Input folder not found"),
    (["validate", "/nope/artifact", "-r", "/nope/bundle"], "is not a reference bundle"),
])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob(".*partial*"))  # no staging folder left behind (cwd is tmp_path)


def test_missing_runtime_names_the_install_command(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    code, _, err = run(capsys, "convert", "-m", "test-vitpose", "-t", "openvino", "-o", str(tmp_path))
    assert code == 2 and "pip install -e '" in err and "[openvino]'" in err  # this checkout is an editable install
    assert list(tmp_path.iterdir()) == []


def test_full_disk_during_convert_is_one_line_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    import edgehmr.artifact
    import edgehmr.converters.openvino

    def full_disk(job, out_dir):  # what OpenVINO's save_model raises when the disk fills up
        (out_dir / "model.bin").write_bytes(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(edgehmr.converters.openvino, "convert", full_disk)
    monkeypatch.setattr(edgehmr.artifact, "_out_of_disk", lambda path: True)
    code, _, err = run(capsys, "convert", "-m", "test-vitpose", "-t", "openvino", "-o", str(tmp_path))
    assert code == 2 and "ran out of space while writing test-vitpose-openvino-fp32" in err
    assert "pass another --out." in err  # the flag convert has
    assert sum(line.startswith("error") for line in err.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_unreadable_image_and_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "reference", "-m", "vitpose-s", "-i", str(tmp_path / "empty"))
    assert code == 2 and "No images" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "frame.jpg").write_bytes(b"not a jpeg")
    code, _, err = run(capsys, "reference", "-m", "test-vitpose", "-i", str(bad), "-o", str(tmp_path / "ref"))
    assert code == 2 and "cannot decode" in err and "frame.jpg" in err
    assert not (tmp_path / "ref").exists()


def test_mismatched_checkpoint_shows_diff(capsys, tmp_path):
    import torch

    from edgehmr.models import load_model

    path = tmp_path / "vitpose_tiny.pth"
    torch.save({"state_dict": load_model("test-vitpose").module.state_dict()}, path)
    code, _, err = run(capsys, "convert", "-m", "vitpose-s", "-c", str(path), "-o", str(tmp_path / "out"))
    assert code == 2 and "does not fit vitpose-s" in err.splitlines()[0]
    assert "shape      backbone.blocks.0.attn.qkv.weight" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_reference_then_validate_from_the_command_line(capsys, tmp_path, artifact):
    from skimage import data
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    (frames / "boxes.json").write_text(json.dumps({"astronaut.png": [[140, 20, 380, 500], [0, 0, 256, 256]]}))
    code, out, _ = run(capsys, "reference", "-m", "test-vitpose", "-i", str(frames), "-o", str(tmp_path / "ref"))
    assert code == 0
    assert json.loads((tmp_path / "ref" / "bundle.json").read_text())["samples"] == ["astronaut.png#0",
                                                                                   "astronaut.png#1"]
    code, out, _ = run(capsys, "validate", str(artifact("test-vitpose", "fp32")), "-r", str(tmp_path / "ref"))
    assert code == 0 and "kp2d_px" in out and "PASS" in out


def test_installed_entry_point():
    result = subprocess.run([str(Path(sys.executable).with_name("edgehmr")), "--help"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "convert" in result.stdout and "validate" in result.stdout


def test_int8_from_an_image_folder_end_to_end(capsys, tmp_path, monkeypatch):
    """The issue's command: convert --target openvino --precision int8 --calib <folder>, then validate."""
    from skimage import data
    import cv2

    monkeypatch.setenv("EDGEHMR_CACHE", str(tmp_path / "cache"))
    frames = tmp_path / "frames"
    frames.mkdir()
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i in range(8):
        cv2.imwrite(str(frames / f"f{i}.png"), np.roll(image, 23 * i, axis=1))
    code, out, err = run(capsys, "convert", "-m", "test-hmr2", "-t", "openvino", "-p", "int8", "--calib",
                         str(frames), "--calib-count", "8", "-o", str(tmp_path / "out"))
    assert code == 0 and "fewer than 32" in err
    assert run(capsys, "reference", "-m", "test-hmr2", "-i", str(frames), "-o", str(tmp_path / "ref"))[0] == 0
    code, out, _ = run(capsys, "validate", str(tmp_path / "out" / "test-hmr2-openvino-int8"), "-r",
                       str(tmp_path / "ref"))
    assert code == 0 and "mpjpe_mm" in out and "PASS" in out


def test_help_examples_keep_one_command_per_line():
    """Every command's help has examples, and click (which rewraps help paragraphs to the terminal) prints each
    example command line as written, in an 80-column terminal too."""
    from typer.testing import CliRunner

    from edgehmr.cli import app
    from edgehmr.cli.check import debug_app

    commands = [([c.name or c.callback.__name__], c) for c in app.registered_commands]
    commands += [(["debug", c.name], c) for c in debug_app.registered_commands]
    assert len(commands) >= 13
    for name, command in commands:
        examples = [line.strip() for line in (command.callback.__doc__ or "").splitlines()
                    if line.strip().startswith("edgehmr ")]
        assert examples, f"'edgehmr {' '.join(name)} --help' has no example"
        for width in (80, 200):
            shown = {line.strip() for line in CliRunner().invoke(app, [*name, "--help"], terminal_width=width).output
                     .splitlines()}
            assert set(examples) <= shown, (name, width, set(examples) - shown)
    top = CliRunner().invoke(app, ["--help"], terminal_width=80).output
    assert "  edgehmr demo " in top and "  edgehmr convert -m hmr2-vit-s -t openvino -p fp16" in top


def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"edgehmr {version('edgehmr')}"


def test_calib_where_the_precision_needs_none_is_said(capsys, tmp_path):
    code, _, err = run(capsys, "convert", "-m", "test-hmr2", "-p", "fp16", "--calib", "synthetic", "--dry-run")
    assert code == 0 and "--calib ignored: fp16 on onnx needs no calibration" in err


def test_tables_fit_80_columns_and_keep_the_column_that_tells_rows_apart(monkeypatch):
    from rich.console import Console

    from edgehmr.cli import common
    from edgehmr.converters.capabilities import TARGETS

    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    monkeypatch.setattr(common, "out", console)
    monkeypatch.setattr("edgehmr.cli.inventory.out", console)
    names = ["sat-hmr-onnx-fp32-1288x728", "sat-hmr-openvino-fp32-1288x728"]
    common.print_table("t", [common.Column("artifact", key=True), common.Column("verdict", key=True),
                             common.Column("worst rel L2", right=True), common.Column("buckets", wrap=12),
                             common.Column("a long column", right=True), common.Column("another", right=True)],
                       [[n, "PASS", "1.0e-06", "b96x384 b192x384 b384x384", "12345678901234", "x" * 20]
                        for n in names])
    assert main(["targets"]) == 0
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in names + list(TARGETS):
        assert name in text  # whole, not cut to 'sat-hmr-o…'
    assert "hidden at this width" in text


def test_an_os_error_inside_a_command_is_one_line(capsys, monkeypatch):
    """What the OS refuses (here a bundle folder that cannot be written) is the user's to fix: one line, exit 2."""
    import edgehmr.reference

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/locked/ref")

    monkeypatch.setattr(edgehmr.reference, "make_bundle", refused)
    code, _, err = run(capsys, "reference", "-m", "test-vitpose", "--count", "1", "-o", "/locked/ref")
    assert code == 2 and "permission denied: /locked/ref" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("error, code, text", [
    (PermissionError(13, "Permission denied", "/x"), 2, "permission denied: /x"),
    (IsADirectoryError(21, "Is a directory", "/d"), 2, "/d is a folder"),
    (MemoryError(), 1, "out of memory"),
    (OSError(28, "No space left on device", "/big"), 2, "No space left on device: '/big'"),
    (OSError("device busy"), 2, "device busy"),
])
def test_foreign_errors_have_one_line_each(error, code, text):
    from edgehmr.cli import foreign_error_line

    got_code, line = foreign_error_line(error)
    assert got_code == code and text in line and "\n" not in line


def test_demo_says_where_everything_went_and_its_next_commands_run(capsys, tmp_path):
    """The crop demo on the tiny model: the table, every written path, and next commands that work as printed."""
    import shlex

    out_dir = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", "-m", "test-hmr2", "-o", str(out_dir), "--quiet")
    assert code == 0 and out.count("PASS") == 2, out
    written = [line.split()[-1] for line in out.splitlines() if line.startswith(("  reference bundle", "  artifact"))]
    assert written == [f"{out_dir}/reference-test-hmr2/", f"{out_dir}/test-hmr2-onnx-fp32/",
                       f"{out_dir}/test-hmr2-onnx-fp16/"]
    assert all(Path(p).is_dir() for p in written)
    following = [shlex.split(line) for line in out.splitlines() if line.startswith("  edgehmr ")]
    assert [c[1] for c in following][:3] == ["validate", "profile", "report"]
    for command in following[:3]:
        if command[1] == "profile":
            command += ["--runs", "2", "--warmup", "0"]
        assert run(capsys, *command[1:])[0] == 0, command
    assert (out_dir / "report" / "report.html").is_file()


def test_readme_shows_what_make_demo_prints(capsys, tmp_path, monkeypatch):
    """README's `make demo` block is the demo's output: the same columns, paths and next commands (run here on
    the tiny model, whose numbers differ; the default model's run is what the README shows)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("It prints (progress lines go to stderr):\n\n```\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "demo", "-m", "test-hmr2", "--quiet")
    assert code == 0

    def shape(text: str, model: str) -> list[str]:
        lines = [line.rstrip() for line in text.replace(model, "MODEL").splitlines()]
        header = next(line for line in lines if "artifact" in line and "verdict" in line)
        # the last suggestion depends on what is installed (README: the core only, OpenVINO's install command)
        listed = [line for line in lines if line.startswith(("  reference bundle", "  artifact", "  edgehmr validate",
                                                             "  edgehmr profile", "  edgehmr report"))]
        return [" ".join(header.split())] + listed

    assert shape(block, "hmr2-vit-s") == shape(out, "test-hmr2")
