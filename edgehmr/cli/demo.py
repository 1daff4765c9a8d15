"""``edgehmr demo``: reference -> convert -> validate in one command, on seeded weights, then where everything went
and what to try next."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import typer
from rich.markup import escape

from edgehmr.artifact import artifact_mb
from edgehmr.cli.common import Column, QuietOpt, app, out, print_table, stage
from edgehmr.tasks import FRAMES

SAT_CANVAS = "448x336"
# The demo needs only the core install (ONNX Runtime); these targets join the SAT-HMR demo where installed.
OPTIONAL_SAT_TARGETS = ("openvino",)


@app.command()
def demo(
    model: str = typer.Option("hmr2-vit-s", "--model", "-m", help="Model id (crop models and sat-hmr)."),
    out_dir: str = typer.Option("runs/demo", "--out", "-o", help="Where bundle and artifacts go."),
    quiet: bool = QuietOpt,
):
    """End to end on seeded weights: reference bundle -> convert (ONNX fp32, fp16) -> validate -> result table,
    then the artifact paths and the next commands to try.

    With -m sat-hmr: synthetic frames on a 448x336 canvas -> dynamic-shape reference -> two-stage multi-bucket
    artifacts (ONNX Runtime; OpenVINO too where installed) -> per-bucket validation.

    \b
    Examples:
      edgehmr demo
      edgehmr demo -m vitpose-s -o runs/pose-demo
      edgehmr demo -m sat-hmr          (the published size: several minutes)
    """
    from edgehmr.calibration.sources import open_source
    from edgehmr.convert import convert as run_convert
    from edgehmr.models import load_model
    from edgehmr.reference import make_bundle
    from edgehmr.spec import resolve_spec
    from edgehmr.validate import validate as run_validate

    with stage(f"building {model} with seeded untrained weights", f"built {model} (seeded, untrained)", quiet):
        loaded = load_model(model)
    if loaded.info.task.input == FRAMES:
        _demo_sat(loaded, Path(out_dir), quiet)
        return
    bundle = Path(out_dir) / f"reference-{model}"
    samples = open_source("synthetic", 8)
    what = f"reference bundle ({len(samples)} synthetic crops, FP32 PyTorch)"
    with stage(f"making the {what}", f"made the {what}", quiet):
        make_bundle(loaded, samples, bundle, "cpu", "synthetic")
    reports = []
    for precision in ("fp32", "fp16"):
        spec = resolve_spec(model, "onnx", precision, out_dir=out_dir)
        with stage(f"converting to onnx {precision}", f"converted to onnx {precision}", quiet):
            path = run_convert(spec, loaded)
        with stage(f"validating {path.name}", f"validated {path.name}", quiet):
            reports.append((path, run_validate(path, bundle)))
    metrics = [k for k in TASK_COLUMNS if k in reports[0][1].task]
    rows = [[path.name, _verdict(rep.passed), f"{max(o['rel_l2'] for o in rep.outputs.values()):.2e}",
             *(f"{rep.task[k]['value']:.4f}" for k in metrics), f"{artifact_mb(path):.1f}"] for path, rep in reports]
    print_table(f"{model}: ONNX Runtime vs FP32 PyTorch ({len(samples)} crops)",
                [Column("artifact", key=True), Column("verdict", key=True), Column("worst rel L2", right=True),
                 *(Column(TASK_COLUMNS[k], right=True) for k in metrics), Column("MB", right=True)],
                rows, where_hidden=HIDDEN)
    smpl = " and synthetic SMPL" if "mpjpe_mm" in metrics else ""
    out.print(f"[dim]note: seeded untrained weights{smpl}; drift numbers are real, accuracy is not.[/]")
    more = ([f"edgehmr convert -m {model} -t openvino -p int8 --calib synthetic -o {shlex.quote(out_dir)}"]
            if _installed("openvino") else [_install_line("openvino")])
    _print_where_and_next(bundle, [path for path, _ in reports], Path(out_dir), more)
    if not all(r.passed for _, r in reports):
        raise typer.Exit(1)


HIDDEN = "a wider terminal shows them; validation.json in each artifact holds every number"
# Task metrics the crop demo's table shows, in this order, where the model's task has them.
TASK_COLUMNS = {"mpjpe_mm": "MPJPE mm", "pa_mpjpe_mm": "PA-MPJPE mm", "pve_mm": "PVE mm", "kp2d_px": "2D px"}


def _verdict(passed: bool) -> str:
    return "[green]PASS[/]" if passed else "[red]FAIL[/]"


def _installed(target: str) -> bool:
    from edgehmr.converters.capabilities import TARGETS

    return all(importlib.util.find_spec(module) is not None for module in TARGETS[target].requires)


def _print_where_and_next(bundle: Path, artifacts: list[Path], out_dir: Path, more: list[str]) -> None:
    """Where the demo wrote its files and the commands that take them further (paths as the user gave them)."""
    q = shlex.quote
    out.print("\n[bold]Written[/] (an artifact: model files, metadata.json, validation.json):", highlight=False)
    out.print(f"  reference bundle  {escape(str(bundle))}/", highlight=False, soft_wrap=True)
    for path in artifacts:
        out.print(f"  artifact          {escape(str(path))}/", highlight=False, soft_wrap=True)
    last = artifacts[-1]
    out.print("\n[bold]Next:[/]", highlight=False)
    for line in (f"edgehmr validate {q(str(last))} --reference {q(str(bundle))}",
                 f"edgehmr profile {q(str(last))} --runs 50",
                 f"edgehmr report {q(str(out_dir))} -o {q(str(out_dir / 'report'))}", *more):
        out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def _install_line(target: str) -> str:
    from edgehmr.converters.capabilities import TARGETS
    from edgehmr.doctor import pip_install

    return f"{pip_install(target)}     (adds {TARGETS[target].runtime}; 'edgehmr doctor' lists every runtime)"


def _demo_sat(loaded, out_dir: Path, quiet: bool) -> None:
    from edgehmr.artifact import read_metadata
    from edgehmr.calibration.sources import open_source
    from edgehmr.sat.bundle import make_sat_bundle
    from edgehmr.sat.convert import convert_sat
    from edgehmr.sat.frame import Canvas
    from edgehmr.spec import resolve_spec
    from edgehmr.validate import validate

    name = loaded.info.name
    bundle = out_dir / f"reference-{name}"
    frames = open_source("synthetic", 4, seed=7)
    what = f"reference bundle ({len(frames)} synthetic frames, dynamic-shape FP32 PyTorch)"
    with stage(f"making the {what}", f"made the {what}", quiet):
        make_sat_bundle(loaded, frames, Canvas.parse(SAT_CANVAS), bundle, "cpu", "synthetic")
    rows = []
    missing = tuple(t for t in OPTIONAL_SAT_TARGETS if not _installed(t))
    passed, artifacts = True, []
    for target in ("onnx", *(t for t in OPTIONAL_SAT_TARGETS if t not in missing)):
        spec = resolve_spec(name, target, "fp32", out_dir=str(out_dir), canvas=SAT_CANVAS, calib="synthetic",
                            calib_count=8, bucket_count=3)
        with stage(f"converting to {target} fp32 (stage 1 + every bucket)",
                   f"converted to {target} fp32 (stage 1 + every bucket)", quiet):
            path = convert_sat(spec, loaded)
        with stage(f"validating {path.name} (every frame, in its bucket)", f"validated {path.name}", quiet):
            rep = validate(path, bundle)
        passed &= rep.passed
        artifacts.append(path)
        table = read_metadata(path)["buckets"]["buckets"]
        rows.append([path.name, _verdict(rep.passed), f"{max(o['rel_l2'] for o in rep.outputs.values()):.2e}",
                     f"{max(o['max_abs'] for o in rep.outputs.values()):.1e}",
                     " ".join(f"{k}:{v['frames']}" for k, v in rep.buckets.items()),
                     " ".join(b["name"] for b in table), f"{artifact_mb(path):.1f}"])
    print_table(f"{name} on a {SAT_CANVAS} canvas vs the dynamic-shape reference ({len(frames)} frames)",
                [Column("artifact", key=True), Column("verdict", key=True), Column("worst rel L2", right=True),
                 Column("max abs", right=True), Column("frames per bucket", wrap=12), Column("buckets", wrap=12),
                 Column("MB", right=True)], rows, where_hidden=HIDDEN)
    out.print("[dim]note: seeded untrained weights and synthetic frames; drift numbers are real, accuracy is not.[/]")
    _print_where_and_next(bundle, artifacts, out_dir, [_install_line(t) for t in missing])
    if not passed:
        raise typer.Exit(1)
