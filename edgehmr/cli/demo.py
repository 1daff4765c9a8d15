"""``edgehmr demo``: reference -> convert -> validate in one command, on seeded weights."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgehmr.cli.common import QuietOpt, _size_mb, app, out, stage
from edgehmr.tasks import FRAMES


@app.command()
def demo(
    model: str = typer.Option("hmr2-vit-s", "--model", "-m", help="Model id."),
    out_dir: str = typer.Option("runs/demo", "--out", "-o", help="Where bundle and artifacts go."),
    quiet: bool = QuietOpt,
):
    """End to end on the default: reference bundle -> convert (onnx fp32, fp16) -> validate -> result table.

    With -m sat-hmr: synthetic frames on a 448x336 canvas -> dynamic-shape reference -> two-stage multi-bucket
    artifacts (ONNX Runtime, OpenVINO; buckets fitted to the frames) -> per-bucket validation.
    """
    from edgehmr.calibration.sources import open_source
    from edgehmr.convert import convert as run_convert
    from edgehmr.models import load_model
    from edgehmr.reference import make_bundle
    from edgehmr.spec import resolve_spec
    from edgehmr.validate import validate as run_validate

    with stage(f"loaded {model} (seeded, untrained)", quiet):
        loaded = load_model(model)
    if loaded.info.task.input == FRAMES:
        _demo_sat(loaded, Path(out_dir), quiet)
        return
    bundle = Path(out_dir) / f"reference-{model}"
    samples = open_source("synthetic", 8)
    with stage(f"reference bundle ({len(samples)} synthetic crops, FP32 PyTorch)", quiet):
        make_bundle(loaded, samples, bundle, "cpu", "synthetic")
    reports = []
    for precision in ("fp32", "fp16"):
        spec = resolve_spec(model, "onnx", precision, out_dir=out_dir)
        with stage(f"converted to onnx {precision}", quiet):
            path = run_convert(spec, loaded)
        reports.append((path, run_validate(path, bundle)))
    summary = Table(title=f"{model}: ONNX Runtime vs FP32 PyTorch ({len(samples)} crops)")
    for col in ("artifact", "MB", "worst rel L2", "MPJPE mm", "PA-MPJPE mm", "PVE mm", "2D px", "verdict"):
        summary.add_column(col, justify="left" if col == "artifact" else "right")
    for path, rep in reports:
        t = {k: v["value"] for k, v in rep.task.items()}
        worst = max(o["rel_l2"] for o in rep.outputs.values())
        summary.add_row(path.name, f"{_size_mb(path):.1f}", f"{worst:.2e}", f"{t['mpjpe_mm']:.4f}",
                        f"{t['pa_mpjpe_mm']:.4f}", f"{t['pve_mm']:.4f}", f"{t['kp2d_px']:.4f}",
                        "[green]PASS[/]" if rep.passed else "[red]FAIL[/]")
    out.print(summary)
    out.print("[dim]note: seeded untrained weights and synthetic SMPL; drift numbers are real, accuracy is not.[/]")
    if not all(r.passed for _, r in reports):
        raise typer.Exit(1)


def _demo_sat(loaded, out_dir: Path, quiet: bool) -> None:
    from edgehmr.artifact import read_metadata
    from edgehmr.calibration.sources import open_source
    from edgehmr.sat.bundle import make_sat_bundle
    from edgehmr.sat.convert import convert_sat
    from edgehmr.sat.frame import Canvas
    from edgehmr.validate import validate
    from edgehmr.spec import resolve_spec

    canvas, name = "448x336", loaded.info.name
    bundle = out_dir / f"reference-{name}"
    frames = open_source("synthetic", 4, seed=7)
    with stage(f"reference bundle ({len(frames)} synthetic frames, dynamic-shape FP32 PyTorch)", quiet):
        make_sat_bundle(loaded, frames, Canvas.parse(canvas), bundle, "cpu", "synthetic")
    summary = Table(title=f"{name} on a {canvas} canvas vs the dynamic-shape reference ({len(frames)} frames)")
    for col in ("artifact", "MB", "buckets", "buckets hit", "worst rel L2", "max abs", "verdict"):
        summary.add_column(col, justify="left" if col in ("artifact", "buckets", "buckets hit") else "right")
    passed = True
    for target in ("onnx", "openvino"):
        spec = resolve_spec(name, target, "fp32", out_dir=str(out_dir), canvas=canvas, calib="synthetic",
                            calib_count=8, bucket_count=3)
        with stage(f"converted to {target} fp32 (stage 1 + every bucket)", quiet):
            path = convert_sat(spec, loaded)
        rep = validate(path, bundle)
        passed &= rep.passed
        table = read_metadata(path)["buckets"]["buckets"]
        summary.add_row(path.name, f"{_size_mb(path):.1f}", " ".join(b["name"] for b in table),
                        " ".join(f"{k}:{v['frames']}" for k, v in rep.buckets.items()),
                        f"{max(o['rel_l2'] for o in rep.outputs.values()):.2e}",
                        f"{max(o['max_abs'] for o in rep.outputs.values()):.1e}",
                        "[green]PASS[/]" if rep.passed else "[red]FAIL[/]")
    out.print(summary)
    out.print("[dim]note: seeded untrained weights and synthetic frames; drift numbers are real, accuracy is not.[/]")
    if not passed:
        raise typer.Exit(1)
