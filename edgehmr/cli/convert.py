"""``edgehmr convert`` and ``edgehmr reference``: artifacts and the FP32 bundles they are checked against."""

from __future__ import annotations

from pathlib import Path

import typer

from edgehmr.artifact import artifact_mb
from edgehmr.cli.common import CheckpointOpt, ModelOpt, QuietOpt, TrustOpt, app, err, out, progress_bar, stage
from edgehmr.errors import SpecError
from edgehmr.tasks import CROPS, FRAMES


@app.command()
def convert(
    model: str = ModelOpt,
    target: str = typer.Option("onnx", "--target", "-t", help="Target id (see 'edgehmr targets')."),
    precision: str = typer.Option(None, "--precision", "-p",
                                  help="fp32 | fp16 | int8 | int8-weights (per target, see 'targets'); default: the "
                                       "target's first (fp16 for coreml, fp32 elsewhere)."),
    checkpoint: str = CheckpointOpt,
    trust_checkpoint: bool = TrustOpt,
    with_mesh: bool = typer.Option(False, "--with-mesh", help="Bake SMPL into the graph: also output vertices "
                                                              "and joints."),
    smpl: str = typer.Option("synthetic", "--smpl", help="SMPL model for --with-mesh (path or 'synthetic')."),
    batch: int = typer.Option(1, "--batch", help="Static batch size of the artifact."),
    out_dir: str = typer.Option("runs", "--out", "-o", help="Folder that receives the artifact folder."),
    seed: int = typer.Option(0, "--seed", help="Seed for untrained weights and the export example."),
    calib: str = typer.Option(None, "--calib", help="INT8 calibration data: image folder, video, reference bundle, "
                                                     "or 'synthetic' (demos only)."),
    calib_count: int = typer.Option(128, "--calib-count", help="Calibration crops to use."),
    calib_boxes: str = typer.Option(None, "--calib-boxes", help="Person boxes JSON for the calibration source."),
    recipe: str = typer.Option("default", "--recipe", help="What stays float under INT8: default | none | "
                                                           "recipe.json."),
    keep_float: list[str] = typer.Option([], "--keep-float", help="Also keep this module scope (glob) or op kind "
                                                                  "(softmax, layernorm, attention_matmul) float."),
    quantize: list[str] = typer.Option([], "--quantize", help="Quantize a scope or op kind the recipe keeps float."),
    canvas: str = typer.Option(None, "--canvas", help="sat-hmr: frame canvas WIDTHxHEIGHT, multiples of 56 up to "
                                                       "1288 (default 1288x1288; 1288x728 for 16:9 video)."),
    buckets: str = typer.Option(None, "--buckets", help="sat-hmr: bucket table HRxOTHER,... (high-res cells x "
                                                         "low-res/background tokens); default: fitted to --calib."),
    bucket_count: int = typer.Option(8, "--bucket-count", help="sat-hmr: buckets fitted to the --calib frames "
                                                               "(more: less padding, more graphs to compile)."),
    allow_demotion: bool = typer.Option(False, "--allow-demotion", help="sat-hmr: leave out the full-coverage "
                                        "buckets (smaller, faster to compile); a crowded frame that overflows the "
                                        "largest bucket then sees some small people at low resolution."),
    sampler: str = typer.Option(None, "--sampler", help="deformable-hmr-*: how deformable attention samples: "
                                                         "grid_sample (default; GridSample / resample) or gather "
                                                         "(bilinear corners as Gather ops, for runtimes without a "
                                                         "grid-sample kernel, e.g. TensorRT < 8.5)."),
    max_drift: str = typer.Option(None, "--max-drift", help="int8: search for the fewest layers kept float that "
                                  "meet this drift budget on held-out --calib crops, e.g. mpjpe=5mm,cam_t=50mm or "
                                  "keypoints=2px ('default': the tolerance table). About one conversion per step."),
    # default None, resolved in the command: importing edgehmr.quant_search here would import torch for every
    # command, and those that only read tables answer at once
    search_steps: int = typer.Option(None, "--search-steps", help="--max-drift: the most search steps, default 8 "
                                     "(one layer more float per step; twice as many after a step that barely helped)."),
    keep_best: bool = typer.Option(False, "--keep-best", help="--max-drift: write the closest artifact even when "
                                                              "the budget is not met (the exit code is still 1)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved spec and stop."),
    quiet: bool = QuietOpt,
):
    """Convert a model for a target and precision into an artifact folder.

    \b
    Examples:
      edgehmr convert --model hmr2-vit-s --target onnx
      edgehmr convert -m hmr2-vit-h -c hmr2_ckpt/epoch=35-step=1000000.ckpt --trust-checkpoint -p fp16
      edgehmr convert -m hmr2-vit-s --with-mesh --smpl SMPL_NEUTRAL.pkl
      edgehmr convert -m hmr2-vit-s -t openvino -p int8 --calib frames/ --keep-float attention_matmul
      edgehmr convert -m hmr2-vit-b -c hmr2.ckpt -t onnx -p int8 --calib frames/ --max-drift mpjpe=3mm,cam_t=50mm
                                                              (keeps float the layers that add the most drift)
      edgehmr convert -m hmr2-vit-s -t coreml                 (fp16 .mlpackage)
      edgehmr convert -m hmr2-vit-b -t executorch -p int8     (XNNPACK .pte, dynamic INT8 activations)
      edgehmr convert -m sat-hmr -c sat_644.pth -t openvino --canvas 1288x728 --calib frames/
                                                              (two stages, one static graph per token bucket)
      edgehmr convert -m sat-hmr -t openvino --canvas 672x448 --buckets 32x384 --allow-demotion
                                                              (one small bucket; crowded frames demoted)
      edgehmr convert -m deformable-hmr-vit-s-x2 -t tensorrt -p fp16 --sampler gather
    """
    from edgehmr.models import load_model
    from edgehmr.models._registry import get_model_info
    from edgehmr.quant_search import DEFAULT_STEPS, plan_search
    from edgehmr.spec import resolve_spec

    spec = resolve_spec(model, target, precision, checkpoint, trust_checkpoint, with_mesh, smpl, batch, out_dir, seed,
                        calib, calib_count, calib_boxes, recipe, tuple(keep_float), tuple(quantize), canvas, buckets,
                        bucket_count, sampler, allow_demotion)
    plan = None
    if max_drift is not None:
        plan = plan_search(spec, get_model_info(model), max_drift,
                           DEFAULT_STEPS if search_steps is None else search_steps, keep_best)
        if not calib:
            raise SpecError("--max-drift measures drift on held-out calibration crops: pass --calib with an image "
                            "folder, a video or a reference bundle.")
    elif search_steps is not None or keep_best:
        raise SpecError("--search-steps and --keep-best apply with --max-drift.")
    if calib and not spec.calib and plan is None:
        err.print(f"[yellow]note:[/] --calib ignored: {spec.precision.value} on {spec.target} needs no calibration "
                  f"('edgehmr targets' lists the precisions that use it)")
    if dry_run:
        out.print_json(spec.to_json())
        return
    with stage(f"loading {model}", f"loaded {model}", quiet):
        loaded = load_model(model, checkpoint, trust_checkpoint=trust_checkpoint, seed=seed)
    if loaded.weights == "untrained":
        err.print(f"[yellow]note:[/] {model} uses seeded untrained weights (give --checkpoint for trained ones)")
    if plan is not None:
        _convert_searched(spec, loaded, quiet, plan, calib)
        return
    CONVERT_BY_INPUT[loaded.info.task.input](spec, loaded, quiet)


def _calibration(spec, loaded, quiet: bool):
    from edgehmr.convert import calibration_for

    with progress_bar("calibration crops", spec.calib_count, quiet) as advance:
        calibration = calibration_for(spec, loaded, advance)
    origin = "cache" if calibration.cached else spec.calib
    err.print(f"[green]✓[/] {len(calibration.images)} calibration crops from {origin}")
    for warning in calibration.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    return calibration


def _convert_crops(spec, loaded, quiet: bool) -> None:
    from edgehmr.convert import convert as run_convert

    calibration = _calibration(spec, loaded, quiet) if spec.calib else None
    what = f"to {spec.target} {spec.precision.value}"
    with stage(f"converting {what}", f"converted {what}", quiet):
        path = run_convert(spec, loaded, calibration)
    out.print(f"{path}  ({artifact_mb(path):.1f} MB)")
    _print_next_step(path)


def _convert_searched(spec, loaded, quiet: bool, plan, calib: str) -> None:
    """--max-drift: the search's steps as a table, then the artifact (or the budget-not-met error)."""
    import dataclasses

    from edgehmr.quant_search import BudgetNotMet, convert_searched

    # The held-out crops come from --calib even on a target whose INT8 needs no calibration (ExecuTorch's dynamic).
    calibration = _calibration(dataclasses.replace(spec, calib=calib), loaded, quiet)
    what = f"to {spec.target} {spec.precision.value} within {plan.budget.describe()}"
    try:
        with stage(f"searching {what}", f"searched {what}", quiet):
            path, result = convert_searched(spec, loaded, calibration, plan)
    except BudgetNotMet as e:
        _print_search(e.result)
        raise
    _print_search(result)
    out.print(f"{path}  ({artifact_mb(path):.1f} MB; recipe: {path / 'recipe.json'})")
    _print_next_step(path)


def _print_search(result) -> None:
    from edgehmr.cli.common import Column, print_table

    metrics = list(result.budget.limits)
    # each step's own additions: the kept-float list is cumulative
    added = [s.kept_float[len(result.steps[i - 1].kept_float) if i else 0:] for i, s in enumerate(result.steps)]
    rows = [[str(i), "[bold]" * (i == result.best) + (", ".join(added[i]) or "-"),
             *(f"{s.drift[m]:.3g}" for m in metrics), "over" if s.over_budget else "met",
             f"{s.float_weights_pct:.1f}", f"{s.size_mb:.1f}", f"{s.seconds:.0f}"] for i, s in enumerate(result.steps)]
    columns = [Column("step", right=True, key=True), Column("also kept float at this step", wrap=24),
               *(Column(f"{m} <= {lim:g}", right=True) for m, lim in result.budget.limits.items()),
               Column("budget", key=True), Column("float weights %", right=True), Column("MB", right=True),
               Column("s", right=True)]
    print_table(f"--max-drift search: {result.stopped} (kept: step {result.best})", columns, rows)


def _convert_sat(spec, loaded, quiet: bool) -> None:
    from edgehmr.artifact import read_metadata
    from edgehmr.sat.convert import convert_sat

    what = f"{spec.model} to {spec.target} {spec.precision.value} (stage 1 + every bucket)"
    with stage(f"converting {what}", f"converted {what}", quiet):
        path = convert_sat(spec, loaded)
    table = read_metadata(path)["buckets"]
    if not spec.buckets and not spec.calib:
        err.print("[yellow]note:[/] buckets are a canvas default; fit them to your frames with --calib DIR")
    _print_coverage(table)
    names = ", ".join(f"{b['name']} ({b['memory']} tokens)" for b in table["buckets"])
    out.print(f"{path}  ({artifact_mb(path):.1f} MB; buckets: {names})")
    _print_next_step(path)


CONVERT_BY_INPUT = {CROPS: _convert_crops, FRAMES: _convert_sat}


def _print_coverage(table: dict) -> None:
    """Whether the artifact can demote, and what the full-coverage buckets do for the calibration frames."""
    cover = table["full_coverage"]
    frames = (f"; {cover['frames_overflowing_without']} of {cover['frames']} calibration frames overflow without "
              f"them ({cover['cells_demoted_without']} small cells would be demoted)" if cover["frames"] else "")
    if table["can_demote"]:
        err.print(f"[yellow]note:[/] --allow-demotion: a frame that overflows the largest bucket sees some small "
                  f"people at low resolution (validate and profile report it){frames}")
    elif cover["buckets"]:
        err.print(f"[green]✓[/] never demotes: full-coverage buckets {', '.join(cover['buckets'])} hold every "
                  f"frame as selected{frames}; --allow-demotion leaves them out")


def _print_next_step(path: Path) -> None:
    """Artifacts finished on the device (parts whose engine is built there: TensorRT) say how, right after
    convert; a CPU artifact says when this host's probe (``edgehmr doctor``) found a faster target/precision."""
    from edgehmr.artifact import parts, read_metadata
    from edgehmr.host_probe import faster_here

    meta = read_metadata(path)
    faster = faster_here(meta["target"], meta["precision"])
    if faster:
        err.print(f"[yellow]note:[/] {faster}", highlight=False)

    unbuilt = [part for part in parts(meta).values()
               if "engine" in part["details"] and not part["details"]["engine"]]
    if unbuilt:
        scripts = " and ".join(f"sh {path / Path(part['file']).parent / 'build_engine.sh'}" for part in unbuilt)
        err.print(f"[yellow]note:[/] no TensorRT engine built here (needs TensorRT and an NVIDIA GPU). On the "
                  f"device: edgehmr build-engine {path}  (or: {scripts})")


@app.command()
def reference(
    model: str = ModelOpt,
    inputs: str = typer.Option("synthetic", "--inputs", "-i", help="Image folder, or 'synthetic'."),
    boxes: str = typer.Option(None, "--boxes", help="Person boxes JSON (default: <inputs>/boxes.json if present)."),
    checkpoint: str = CheckpointOpt,
    trust_checkpoint: bool = TrustOpt,
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    count: int = typer.Option(8, "--count", help="Number of synthetic samples."),
    batch_size: int = typer.Option(8, "--batch-size", help="Crops per forward pass."),
    out_path: str = typer.Option(None, "--out", "-o", help="Bundle folder (default runs/reference-<model>)."),
    seed: int = typer.Option(0, "--seed"),
    canvas: str = typer.Option("1288x1288", "--canvas", help="sat-hmr: frame canvas WIDTHxHEIGHT (as the artifact)."),
    quiet: bool = QuietOpt,
):
    """Run FP32 PyTorch (TF32 off) and save a reference bundle: inputs, outputs, model hash, environment.

    \b
    Run this on your reference GPU:
      edgehmr reference -m hmr2-vit-h -c hmr2.ckpt --inputs frames/ --device cuda -o ref-hmr2-h
      edgehmr reference -m sat-hmr -c sat_644.pth --inputs frames/ --canvas 1288x728 --device cuda
                        (full frames; SAT-HMR's dynamic-shape reference)
    """
    from edgehmr.calibration.sources import open_source
    from edgehmr.models import load_model

    samples = open_source(inputs, count, boxes, seed)
    loaded = load_model(model, checkpoint, trust_checkpoint=trust_checkpoint, seed=seed)
    target = Path(out_path or f"runs/reference-{model}")
    REFERENCE_BY_INPUT[loaded.info.task.input](loaded, samples, target, device, inputs, batch_size, canvas, quiet)


def _reference_crops(loaded, samples, target: Path, device: str, source: str, batch_size: int, canvas: str,
                     quiet: bool) -> None:
    from edgehmr.reference import make_bundle

    with progress_bar("reference", len(samples), quiet) as advance:
        make_bundle(loaded, samples, target, device, source, batch_size, advance)
    out.print(f"{target}  ({len(samples)} samples, {loaded.info.name}, {loaded.weights})")


def _reference_frames(loaded, samples, target: Path, device: str, source: str, batch_size: int, canvas: str,
                      quiet: bool) -> None:
    from edgehmr.sat.bundle import make_sat_bundle, unique_frames
    from edgehmr.sat.frame import Canvas

    frames = unique_frames(samples)
    with progress_bar("reference frames", len(frames), quiet) as advance:
        make_sat_bundle(loaded, frames, Canvas.parse(canvas), target, device, source, advance)
    out.print(f"{target}  ({len(frames)} frames, {loaded.info.name}, {loaded.weights})")


REFERENCE_BY_INPUT = {CROPS: _reference_crops, FRAMES: _reference_frames}
