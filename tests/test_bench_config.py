"""``edgehmr bench --config``: a TOML matrix, its results file as the cache of finished cells, and the refusals
of a wrong config or a device that only a cluster has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgehmr.cli import main

CONFIG = """
models = ["test-hmr2"]
results = "results.jsonl"
count = 2
runs = 2
warmup = 0

[cells.onnx-fp32]
target = "onnx"
precision = "fp32"
checks = ["parity"]

[cells.coreml-int8]
target = "coreml"
precision = "int8-weights"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def test_config_matrix_runs_records_and_resumes(tmp_path, capsys):
    config = write(tmp_path, CONFIG)
    out = tmp_path / "out"
    assert main(["bench", "--config", str(config), "--cells", "onnx-fp32", "-o", str(out)]) == 0, \
        capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["cell"], r["status"]) for r in rows] == [("onnx-fp32", "pass")]
    assert (out / rows[0]["artifact"] / "validation.json").is_file()
    assert (out / rows[0]["artifact"] / "profile.json").is_file()
    capsys.readouterr()

    # a crash while appending leaves a cut line: it is ignored, and the finished cell is not run again
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"key": "0123')
    assert main(["bench", "--config", str(config), "--cells", "onnx-fp32", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "to run on" not in captured.err and "test-hmr2-onnx-fp32" in captured.out  # the report, from the record
    assert len([line for line in (tmp_path / "results.jsonl").read_text().splitlines() if line.endswith("}")]) == 1

    assert main(["bench", "--config", str(config), "--summary"]) == 0
    table = capsys.readouterr().out
    assert "| test-hmr2 |" in table and "| pass | not run |" in table


@pytest.mark.parametrize("text, message", [
    ("models = ['test-hmr2']\nwidth = 3\n[cells.a]\ntarget='onnx'\nprecision='fp32'\n", "unknown key(s) width"),
    ("models = ['nosuch-*']\n[cells.a]\ntarget='onnx'\nprecision='fp32'\n", "matches no registered model"),
    ("models = ['test-hmr2']\n[cells.a]\nprecision='fp32'\n", "needs target and precision"),
    ("models = ['test-hmr2']\n[cells.a]\ntarget='onnx'\nprecision='fp32'\nchecks=['vibes']\n", "check(s) vibes"),
    ("models = ['test-hmr2'\n", "cannot read the matrix config"),
    ("models = ['test-hmr2']\n", "give the cells as [cells.NAME] tables"),
])
def test_a_wrong_config_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    assert main(["bench", "--config", str(write(tmp_path, text)), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--devices", "orin"], "without --cluster every cell runs on this machine"),
    (["--devices", "tensorrt=orin"], "which this matrix does not convert"),
    (["--devices", "a b"], "is not NAME or TARGET=NAME"),
    (["--cells", "onnx-fp32"], "--cells selects among a --config matrix's cells"),
    (["--share", "s3://bucket/edgehmr"], "give a folder every node mounts at the same path"),
])
def test_wrong_devices_or_cells_are_refused_before_anything_runs(tmp_path, capsys, args, message):
    assert main(["bench", "--models", "test-hmr2", "--targets", "onnx", "--precisions", "fp32", *args,
                 "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two spawned workers import PyTorch and convert (~45 s); the cluster tests run the same tasks
def test_a_process_pool_runs_the_same_tasks(tmp_path, capsys):
    code = main(["bench", "--models", "test-hmr2", "--targets", "onnx", "--precisions", "fp32,int8", "--jobs", "2",
                 "--count", "2", "--runs", "2", "--warmup", "0", "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    assert sorted((r["precision"], r["status"]) for r in rows) == [("fp32", "pass"), ("int8", "pass")]
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(r["p50_ms"] > 0 for r in report["rows"])
