"""Accuracy-aware INT8 (``convert --max-drift``): a fragile layer kept float only by the search, on every target with
a drift probe; an impossible budget exits 1 and writes nothing; the budget parser and the scope picker."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from edgehmr.artifact import CROP_PART, read_metadata
from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.cli import main
from edgehmr.convert import calibration_for
from edgehmr.errors import SpecError
from edgehmr.models import load_model
from edgehmr.models.tiny import FRAGILE_LAYER as FRAGILE
from edgehmr.models.tiny import fragile_test_hmr2_state
from edgehmr.quant_search import (RECIPE_FILE, DriftBudget, convert_searched, layers_per_step, next_scopes,
                                   parse_budget, plan_search, searched_recipe)
from edgehmr.spec import resolve_spec
from edgehmr.validate import TASK_METRICS

MODEL = "test-hmr2"
# Seeded test-hmr2 INT8 drifts ~0.005 mm MPJPE with the default recipe on every target; the fragile layer alone
# takes it to ~0.45 mm. A budget between the two is met only with that layer float.
BUDGET = "mpjpe=0.1mm"
CALIB = 16


@pytest.fixture(scope="module")
def fragile_checkpoint(tmp_path_factory):
    """test-hmr2 weights with one layer INT8 cannot keep (:func:`fragile_test_hmr2_state`)."""
    from safetensors.torch import save_file

    state = fragile_test_hmr2_state(load_model(MODEL, seed=0).module.state_dict())
    path = tmp_path_factory.mktemp("fragile") / "fragile.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def check_searched(path, result, start: QuantRecipe, out_dir) -> None:
    """The fragile layer was kept float by the search, and only at its last step; the artifact records it."""
    first, last = result.steps[0], result.steps[-1]
    assert first.over_budget == ["mpjpe_mm"] and first.drift["mpjpe_mm"] > 0.3  # the default recipe misses it
    assert last.kept_float == [FRAGILE] and not last.over_budget and last.drift["mpjpe_mm"] < 0.05
    assert result.met and result.best == len(result.steps) - 1 and result.stopped == "budget met"

    meta = read_metadata(path)  # every file hashed, recipe.json included
    assert RECIPE_FILE in meta["files_sha256"]
    recipe = json.loads((path / RECIPE_FILE).read_text())
    assert recipe["keep_float_scopes"] == [*start.keep_float_scopes, FRAGILE]
    assert meta["quantization"]["recipe"] == recipe
    assert meta["quantization"]["search"] == json.loads(json.dumps(result.to_json()))
    assert meta["spec"]["out_dir"] == str(out_dir)
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".")]  # no search folder left behind
    if meta["target"] in REUSES_STATISTICS:  # step 1 calibrated with step 0's ranges
        assert meta["parts"][CROP_PART]["details"]["calibration_statistics"] == "reused"


REUSES_STATISTICS = ("onnx", "tensorrt")  # ONNX Runtime's calibration cache; NNCF and PT2E recalibrate


# ONNX runs the same search from the command line in the default tier
# (test_search_from_the_command_line_and_its_recipe_file); the other targets' searches are the slow tier's (the
# loop is shared, only the probe and runner differ). tensorrt: its Q/DQ ONNX, measured in ONNX Runtime (validate's
# simulation where no GPU is).
@pytest.mark.parametrize("target", [pytest.param("openvino", marks=pytest.mark.slow),
                                    pytest.param("tensorrt", marks=pytest.mark.slow),
                                    pytest.param("executorch", marks=pytest.mark.slow)])
def test_search_keeps_the_fragile_layer_float_to_meet_the_budget(tmp_path, fragile_checkpoint, target):
    spec = resolve_spec(MODEL, target, "int8", checkpoint=fragile_checkpoint, out_dir=str(tmp_path), calib="synthetic",
                        calib_count=CALIB)
    loaded = load_model(MODEL, fragile_checkpoint)
    calibration = calibration_for(dataclasses.replace(spec, calib="synthetic"), loaded)
    plan = plan_search(spec, loaded.info, BUDGET, steps=3)
    path, result = convert_searched(spec, loaded, calibration, plan)
    check_searched(path, result, spec.recipe, tmp_path)


def test_search_from_the_command_line_and_its_recipe_file(capsys, tmp_path, fragile_checkpoint):
    """ONNX: the search's table, the artifact, and recipe.json reused with --recipe (the same scopes, no search)."""
    from edgehmr.matrix_tasks import _cached_search
    from edgehmr.quant_search import SearchResult

    common = ["convert", "-m", MODEL, "-c", fragile_checkpoint, "-t", "onnx", "-p", "int8", "--calib", "synthetic",
              "--calib-count", str(CALIB), "-q"]
    code = main([*common, "--max-drift", BUDGET, "-o", str(tmp_path / "searched")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "budget met" in out.out and FRAGILE in out.out
    searched = tmp_path / "searched" / f"{MODEL}-onnx-int8"
    record = read_metadata(searched)["quantization"]["search"]
    result = SearchResult.from_json(record)
    # edgehmr bench reports a stored searched artifact from this record, as the run that searched did
    assert _cached_search(read_metadata(searched)) == result.summary() == (
        f"search: budget met after 2 step(s), kept float ['{FRAGILE}']; "
        f"held-out drift mpjpe_mm {result.steps[-1].drift['mpjpe_mm']:.3g}")
    check_searched(searched, result, result.start_recipe, tmp_path / "searched")

    _check_report_plots_the_search(searched, tmp_path / "report", capsys)

    code = main([*common, "--recipe", str(searched / RECIPE_FILE), "-o", str(tmp_path / "again")])
    assert code == 0, capsys.readouterr().err
    again = read_metadata(tmp_path / "again" / f"{MODEL}-onnx-int8")["quantization"]["recipe"]
    assert again["keep_float_scopes"] == read_metadata(searched)["quantization"]["recipe"]["keep_float_scopes"]


def _check_report_plots_the_search(artifact, out, capsys) -> None:
    """``report`` draws the search: worst drift / budget against the weights kept float, the kept step ringed."""
    import matplotlib.pyplot as plt

    from edgehmr import report

    assert main(["report", str(artifact.parent), "-o", str(out)]) == 0, capsys.readouterr().err
    assert "<figcaption>INT8 search: drift vs weights kept float</figcaption>" in (out / "report.html").read_text()
    fig = report._search_plot([report.row_for(artifact)], plt, report.PLOT_WIDTH)
    steps, kept = fig.axes[0].lines[:2]
    x, y = steps.get_data()
    assert len(x) == 2 and 0 < x[0] < x[1] < 100  # the default recipe's float share, then one layer more
    assert y[0] > 1 > y[1] and (kept.get_xdata()[0], kept.get_ydata()[0]) == (x[1], y[1])
    plt.close(fig)

    damaged = out.parent / "damaged" / artifact.name  # a search record cut short: one line, not a traceback
    shutil.copytree(artifact, damaged)
    meta = json.loads((damaged / "metadata.json").read_text())
    del meta["quantization"]["search"]["steps"][0]["drift"]
    (damaged / "metadata.json").write_text(json.dumps(meta))
    assert main(["report", str(damaged.parent), "-o", str(out / "again")]) == 2
    err = capsys.readouterr().err.strip()
    assert "quantization.search record of metadata.json is damaged" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("keep_best", [False, True])
def test_impossible_budget_exits_1_with_the_best_recipe(capsys, tmp_path, keep_best):
    argv = ["convert", "-m", MODEL, "-t", "onnx", "-p", "int8", "--calib", "synthetic", "--calib-count", str(CALIB),
            "--max-drift", "mpjpe=0mm", "--search-steps", "0", "-o", str(tmp_path), "-q"]
    code = main(argv + (["--keep-best"] if keep_best else []))
    err = capsys.readouterr().err
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: --max-drift not met (mpjpe_mm <= 0)") and "Closest: mpjpe_mm" in line
    recipe = json.loads(line.split("Recipe: ", 1)[1])
    assert recipe["keep_float_scopes"] and recipe["keep_float_ops"] == ["softmax", "layernorm"]
    written = sorted(p.name for p in tmp_path.iterdir())
    if keep_best:
        assert written == [f"{MODEL}-onnx-int8"] and "the closest artifact was written" in line
        assert not read_metadata(tmp_path / written[0])["quantization"]["search"]["met"]
    else:
        assert written == [] and "nothing was written" in line


def test_budget_defaults_to_the_tolerance_table_and_parses_units():
    mesh = TASK_METRICS["mesh"]
    assert parse_budget(None, "int8", mesh).limits == {"mpjpe_mm": 5.0, "pa_mpjpe_mm": 5.0, "pve_mm": 5.0,
                                                        "kp2d_px": 2.0, "cam_t_mm": 100.0}
    assert parse_budget("mpjpe=3mm, cam_t=50", "int8", mesh).limits == {"mpjpe_mm": 3.0, "cam_t_mm": 50.0}
    assert parse_budget("keypoints=2px", "int8", TASK_METRICS["keypoints"]).limits == {"kp2d_px": 2.0}
    budget = DriftBudget({"mpjpe_mm": 5.0, "cam_t_mm": 50.0})
    task = {"mpjpe_mm": {"value": 4.0}, "cam_t_mm": {"value": float("nan")}}
    assert budget.over(task) == {"cam_t_mm": pytest.approx(float("nan"), nan_ok=True)}
    assert budget.excess({"mpjpe_mm": 10.0, "cam_t_mm": 25.0}) == 2.0


@pytest.mark.parametrize("text, message", [
    ("mpjpe", "is not NAME=VALUE"),
    ("accuracy=1", "is not NAME=VALUE"),
    ("mpjpe=5px", "is not a number of mm"),
    ("mpjpe=-1mm", ">= 0"),
    ("mpjpe=nan", ">= 0"),
])
def test_budget_refusals(text, message):
    with pytest.raises(SpecError, match=message):
        parse_budget(text, "int8", TASK_METRICS["mesh"])


def test_budget_names_must_be_the_tasks():
    with pytest.raises(SpecError, match="not measured in mpjpe; its budget names: keypoints, kp2d"):
        parse_budget("mpjpe=5mm", "int8", TASK_METRICS["keypoints"])


@pytest.mark.parametrize("argv, message", [
    (["-t", "onnx"], "--max-drift searches INT8 recipes"),
    (["-t", "onnx", "-p", "int8"], "pass --calib"),
    (["-t", "coreml", "-p", "int8", "--calib", "synthetic"], "which coreml has not"),
])
def test_search_refusals_are_one_line(capsys, argv, message):
    code = main(["convert", "-m", MODEL, *argv, "--max-drift", "mpjpe=1mm"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_search_options_need_max_drift(capsys):
    assert main(["convert", "-m", MODEL, "--keep-best"]) == 2
    assert "apply with --max-drift" in capsys.readouterr().err
    assert main(["convert", "-m", MODEL, "--search-steps", "3"]) == 2
    assert "apply with --max-drift" in capsys.readouterr().err


def test_help_states_the_default_step_count():
    """--search-steps defaults in the command (the CLI module must not import the search at start-up); its help
    says the number."""
    from typer.testing import CliRunner

    from edgehmr.cli.common import app
    from edgehmr.quant_search import DEFAULT_STEPS

    shown = " ".join(CliRunner().invoke(app, ["convert", "--help"], terminal_width=200).output.split())
    assert f"the most search steps, default {DEFAULT_STEPS}" in shown


@pytest.mark.parametrize("target", ["onnx", pytest.param("tensorrt", marks=pytest.mark.slow)])
def test_reused_calibration_statistics_quantize_as_a_fresh_calibration(tmp_path, target):
    """A conversion that loads the ranges an earlier one (another recipe, same graph and crops) saved writes the
    same Q/DQ graph as one that calibrates afresh; other crops calibrate afresh."""
    import onnx
    from onnx import numpy_helper

    from edgehmr.convert import convert

    loaded = load_model(MODEL)
    spec = resolve_spec(MODEL, target, "int8", out_dir=str(tmp_path / "a"), calib="synthetic", calib_count=8)
    calibration = calibration_for(spec, loaded)
    more_float = searched_recipe(spec.recipe, [FRAGILE])
    statistics = tmp_path / "statistics"
    statistics.mkdir()

    def quantized(out: str, recipe: QuantRecipe, folder, images=calibration.images) -> tuple[str, dict]:
        path = convert(dataclasses.replace(spec, recipe=recipe, out_dir=str(tmp_path / out)), loaded,
                       dataclasses.replace(calibration, images=images), folder)
        meta = read_metadata(path)
        graph = onnx.load(str(path / meta["parts"][CROP_PART]["file"])).graph
        return (meta["parts"][CROP_PART]["details"]["calibration_statistics"],
                {i.name: numpy_helper.to_array(i) for i in graph.initializer if "scale" in i.name})

    assert quantized("first", spec.recipe, statistics)[0] == "computed"
    state, scales = quantized("reused", more_float, statistics)
    fresh_state, fresh = quantized("fresh", more_float, None)
    assert (state, fresh_state) == ("reused", "computed") and scales and scales.keys() == fresh.keys()
    for name, value in fresh.items():
        assert np.array_equal(scales[name], value), name
    assert quantized("other-crops", more_float, statistics, calibration.images[::-1].copy())[0] == "computed"


def test_next_scopes_take_the_top_quantized_layers_not_yet_float():
    model = load_model(MODEL).module
    recipe = QuantRecipe("r", ("backbone.blocks.0.*",))
    layers = [
        {"scope": "backbone.blocks.0.mlp.fc1", "added": 0.9},  # already float under the recipe
        {"scope": "backbone.blocks.1.norm2", "added": 0.8},  # a LayerNorm: not quantized
        {"scope": "", "added": 0.7},  # an op of no module
        {"scope": "backbone.blocks.1.attn", "added": 0.6},  # attention matmuls: not a Linear/Conv module
        {"scope": "hmr2.backbone.blocks.1.attn.qkv", "added": 0.5},  # the mesh wrapper's path
        {"scope": "backbone.blocks.1.attn.qkv", "added": 0.45},  # the same module, measured twice
        {"scope": "backbone.blocks.1.mlp.fc2", "added": 0.4},
        {"scope": "backbone.blocks.1.mlp.fc1", "added": 0.0},  # adds nothing
    ]
    assert next_scopes(layers, recipe, model, "hmr2.", 1) == ["backbone.blocks.1.attn.qkv"]
    assert next_scopes(layers, recipe, model, "hmr2.", 4) == ["backbone.blocks.1.attn.qkv", "backbone.blocks.1.mlp.fc2"]
    assert next_scopes(layers[-1:], recipe, model, "", 1) == []
    assert isinstance(model.get_submodule("backbone.blocks.1.mlp.fc2"), torch.nn.Linear)


def test_a_step_that_barely_helps_doubles_the_next():
    assert layers_per_step(1, 4.0, 0.5) == 1  # the fragile layer: found alone
    assert layers_per_step(1, 2.6, 2.5) == 2  # diffuse drift: 4% better
    assert layers_per_step(2, 2.5, 2.7) == 4  # or worse
    assert layers_per_step(4, 2.7, 2.0) == 4


def test_a_probe_that_cannot_rank_ends_the_search_with_its_reason(tmp_path, monkeypatch):
    """OpenVINO's probe refuses when exposing every tensor changes what the plugin computes; the search then stops
    with that reason and the closest step instead of failing outright."""
    import edgehmr.drift
    from edgehmr.quant_search import BudgetNotMet

    def refuses(*args, **kwargs):
        raise SpecError("debug drift: the probe would describe another computation")

    monkeypatch.setattr(edgehmr.drift, "debug_drift", refuses)
    spec = resolve_spec(MODEL, "onnx", "int8", out_dir=str(tmp_path), calib="synthetic", calib_count=CALIB)
    loaded = load_model(MODEL)
    plan = plan_search(spec, loaded.info, "mpjpe=0mm", steps=3)
    with pytest.raises(BudgetNotMet, match="the layers could not be ranked: debug drift: the probe") as e:
        convert_searched(spec, loaded, calibration_for(spec, loaded), plan)
    assert len(e.value.result.steps) == 1 and not list(tmp_path.iterdir())
