"""The ``edgehmr`` command line. Results go to stdout (tables, or JSON with --json); progress and logs to stderr."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgehmr.errors import CheckpointMismatchError, EdgeHMRError, SpecError
from edgehmr.tasks import CROPS, FRAMES

# Wide enough for the tables when output is piped or captured (rich falls back to 80 columns there).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # log lines stay whole lines in captured output
app = typer.Typer(
    help="Convert, quantize, validate and profile human mesh recovery and pose models for edge targets.\n\n"
         "Example: edgehmr convert --model hmr2-vit-s --target onnx --precision fp16",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None,
)

ModelOpt = typer.Option(..., "--model", "-m", help="Model id (see 'edgehmr models').")
CheckpointOpt = typer.Option(None, "--checkpoint", "-c", help="Trained weights in the published layout; "
                                                              "omit for seeded untrained weights.")
TrustOpt = typer.Option(False, "--trust-checkpoint", help="Allow pickled Python objects in the checkpoint "
                                                          "(runs code from the file: only for files you trust).")
SmplOpt = typer.Option(None, "--smpl", help="SMPL model file (SMPL_NEUTRAL.pkl or .npz) or 'synthetic'.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def _progress_enabled(quiet: bool) -> bool:
    return not quiet and err.is_terminal and not os.environ.get("EDGEHMR_NO_PROGRESS")


@contextmanager
def progress_bar(label: str, total: int, quiet: bool):
    """Yields an ``advance(n)`` callable; a rich bar on a TTY, nothing otherwise."""
    if not _progress_enabled(quiet):
        yield lambda n=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextmanager
def stage(label: str, quiet: bool = False):
    """Logs a start line and an end line with the time taken (stderr)."""
    start = time.perf_counter()
    if quiet:
        yield
        return
    with err.status(f"{label} ...") if err.is_terminal else _null():
        yield
    err.print(f"[green]✓[/] {label} in {time.perf_counter() - start:.1f} s")


@contextmanager
def _null():
    yield


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


# ------------------------------------------------------------------------------------------------- commands


@app.command()
def models(pattern: str = typer.Argument(None, help="Only models whose id matches this glob (e.g. 'hmr2-vit-*') "
                                                     "or contains this text."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON."),
           show_all: bool = typer.Option(False, "--all", help="Also list the tiny test-* models (for tests and "
                                                               "trying commands in seconds).")):
    """List the model zoo with parameters and GMACs per 256x192 crop."""
    import fnmatch

    from edgehmr.models import get_model_info, list_models, model_cost

    names = list_models(include_test=show_all)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern) or pattern in n]
        if not names:
            hint = "" if show_all else " (the tiny test-* models are listed with --all)"
            raise SpecError(f"No model matches '{pattern}'{hint}. Run 'edgehmr models' for the list.")
    rows = []
    for name in names:
        info = get_model_info(name)
        params, gmacs = model_cost(name)
        rows.append({"model": name, "family": info.family, "params_m": round(params / 1e6, 2),
                     "gmacs": round(gmacs, 2), "description": info.description})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="edgehmr models")
    for col in ("model", "family", "params (M)", "GMACs", "description"):
        table.add_column(col, justify="right" if col in ("params (M)", "GMACs") else "left")
    for r in rows:
        table.add_row(r["model"], r["family"], f"{r['params_m']:.2f}", f"{r['gmacs']:.2f}", r["description"])
    out.print(table)


@app.command()
def targets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show the capability table: targets, precisions, calibration, buckets, host."""
    from edgehmr.converters.capabilities import TARGETS

    rows = [{"target": c.id, "runtime": c.runtime, "suffix": c.suffix,
             "precisions": [p.value for p in c.precisions], "needs_calibration": [p.value for p in c.calibrated],
             "buckets": c.buckets, "host": c.host, "install": c.extra, "deformable_ops": c.deformable_ops}
            for c in TARGETS.values()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="edgehmr targets")
    for col in ("target", "runtime", "suffix", "precisions", "calibration", "buckets", "host", "install"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["target"], r["runtime"], r["suffix"], ", ".join(r["precisions"]),
                      ", ".join(r["needs_calibration"]) or "-", r["buckets"], r["host"], escape(r["install"]))
    out.print(table)


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
      edgehmr convert -m hmr2-vit-s -t coreml                 (fp16 .mlpackage)
      edgehmr convert -m hmr2-vit-b -t executorch -p int8     (XNNPACK .pte, dynamic INT8 activations)
      edgehmr convert -m sat-hmr -c sat_644.pth -t openvino --canvas 1288x728 --calib frames/
                                                              (two stages, one static graph per token bucket)
      edgehmr convert -m sat-hmr -t openvino --canvas 672x448 --buckets 32x384 --allow-demotion
                                                              (one small bucket; crowded frames demoted)
      edgehmr convert -m deformable-hmr-vit-s-x2 -t tensorrt -p fp16 --sampler gather
    """
    from edgehmr.models import load_model
    from edgehmr.spec import resolve_spec

    spec = resolve_spec(model, target, precision, checkpoint, trust_checkpoint, with_mesh, smpl, batch, out_dir, seed,
                        calib, calib_count, calib_boxes, recipe, tuple(keep_float), tuple(quantize), canvas, buckets,
                        bucket_count, sampler, allow_demotion)
    if dry_run:
        out.print_json(spec.to_json())
        return
    with stage(f"loaded {model}", quiet):
        loaded = load_model(model, checkpoint, trust_checkpoint=trust_checkpoint, seed=seed)
    if loaded.weights == "untrained":
        err.print(f"[yellow]note:[/] {model} uses seeded untrained weights (give --checkpoint for trained ones)")
    CONVERT_BY_INPUT[loaded.info.task.input](spec, loaded, quiet)


def _convert_crops(spec, loaded, quiet: bool) -> None:
    from edgehmr.convert import calibration_for
    from edgehmr.convert import convert as run_convert

    calibration = None
    if spec.calib:
        with progress_bar("calibration crops", spec.calib_count, quiet) as advance:
            calibration = calibration_for(spec, loaded, advance)
        origin = "cache" if calibration.cached else spec.calib
        err.print(f"[green]✓[/] {len(calibration.images)} calibration crops from {origin}")
        for warning in calibration.warnings:
            err.print(f"[yellow]warning:[/] {warning}")
    with stage(f"converted to {spec.target} {spec.precision.value}", quiet):
        path = run_convert(spec, loaded, calibration)
    out.print(f"{path}  ({_size_mb(path):.1f} MB)")
    _print_next_step(path)


def _convert_sat(spec, loaded, quiet: bool) -> None:
    from edgehmr.artifact import read_metadata
    from edgehmr.sat.convert import convert_sat

    with stage(f"converted {spec.model} to {spec.target} {spec.precision.value} (stage 1 + every bucket)", quiet):
        path = convert_sat(spec, loaded)
    table = read_metadata(path)["buckets"]
    if not spec.buckets and not spec.calib:
        err.print("[yellow]note:[/] buckets are a canvas default; fit them to your frames with --calib DIR")
    _print_coverage(table)
    names = ", ".join(f"{b['name']} ({b['memory']} tokens)" for b in table["buckets"])
    out.print(f"{path}  ({_size_mb(path):.1f} MB; buckets: {names})")
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
    """Artifacts finished on the device (TensorRT engines) say how, right after convert."""
    from edgehmr.artifact import read_metadata

    meta = read_metadata(path)
    parts = meta["stages"].values() if "stages" in meta else [{"details": meta["target_details"]}]
    if meta["target"] == "tensorrt" and not all(p["details"].get("engine") for p in parts):
        scripts = " and ".join(f"sh {path}/{name}/build_engine.sh" for name in meta["stages"]) \
            if "stages" in meta else f"sh {path}/build_engine.sh"
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


@app.command()
def validate(
    artifact: Path = typer.Argument(..., help="Artifact folder from 'edgehmr convert'."),
    reference_dir: Path = typer.Option(..., "--reference", "-r", help="Bundle from 'edgehmr reference', or one your "
                                       "own code wrote (docs/reference-bundles.md)."),
    smpl: str = SmplOpt,
    threads: int = typer.Option(None, "--threads", help="Runtime threads (default: runtime's choice)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = QuietOpt,
):
    """Run an artifact on a bundle's inputs; report drift per output and task drift in mm / px.

    Exits 1 when any tolerance is exceeded.

    \b
    Example:
      edgehmr validate runs/hmr2-vit-s-onnx-fp16 --reference runs/reference-hmr2-vit-s
    """
    from edgehmr.artifact import read_metadata
    from edgehmr.reference import load_bundle
    from edgehmr.sat.validate import validate_sat
    from edgehmr.tasks import artifact_task
    from edgehmr.validate import validate as validate_crops

    count = load_bundle(reference_dir).count
    run_validate = {CROPS: validate_crops, FRAMES: validate_sat}[artifact_task(read_metadata(artifact)).input]
    with progress_bar("validate", count, quiet) as advance:
        report = run_validate(artifact, reference_dir, smpl, threads, advance)
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        print_report(report)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def profile(
    artifact: Path = typer.Argument(..., help="Artifact folder from 'edgehmr convert'."),
    runs: int = typer.Option(50, "--runs", help="Timed inferences (after warm-up)."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed inferences first."),
    threads: int = typer.Option(None, "--threads", help="Runtime threads (default: runtime's choice)."),
    imported: list[Path] = typer.Option(None, "--import", help="Instead of running: read a native tool's timing file "
                                        "(or folder) made on the device; repeatable."),
    device: str = typer.Option(None, "--device", help="With --import: label for the device the files came from."),
    out_path: Path = typer.Option(None, "--out", "-o", help="Report file (default ARTIFACT/profile.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = QuietOpt,
):
    """Measure an artifact on this machine: load time, first inference, latency percentiles, memory, size.

    Run it on the device (a Jetson, a Mac, an x86 box). SAT-HMR artifacts are timed per frame, for stage 1 and for
    every bucket. On devices without Python, time the artifact with the vendor's tool and import its output:
    trtexec --exportTimes/--exportProfile JSON, OpenVINO benchmark_app's report folder, an ExecuTorch ETDump, or
    the Core ML timings JSON (see docs/profiling.md).

    \b
    Examples:
      edgehmr profile runs/hmr2-vit-s-openvino-int8 --runs 100
      edgehmr profile runs/sat-hmr-onnx-fp32-1288x728 --threads 4
      edgehmr profile runs/hmr2-vit-s-tensorrt-fp16 --import times.json --import layers.json --device "Orin NX 25W"
      edgehmr profile runs/hmr2-vit-s-openvino-int8 --import bench_report/
    """
    from edgehmr.artifact import read_metadata
    from edgehmr.profile import import_profile, progress_steps, save_profile
    from edgehmr.profile import profile as run_profile

    if imported:
        report = import_profile(artifact, imported, device)
    else:
        meta = read_metadata(artifact)
        with progress_bar("profile", progress_steps(meta, warmup, runs), quiet) as advance:
            report = run_profile(artifact, runs, warmup, threads, advance)
    path = save_profile(report, out_path)
    if as_json:
        out.print_json(json.dumps(report.to_json()))
        return
    print_profile(report)
    out.print(f"[dim]{path}[/]")


def print_profile(report) -> None:
    device = report.device.get("label") or report.device.get("cpu") or report.device.get("device") or "device"
    table = Table(title=f"{report.model} · {report.target} · {report.precision} · {device}")
    for col in ("", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "runs (clipped)"):
        table.add_column(col, justify="left" if not col else "right")
    rows = [("inference" if not report.per_entry else "whole frame", asdict(report.latency))] if report.latency else []
    rows += list(report.per_entry.items())
    for name, s in rows:
        table.add_row(name, _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]),
                      f"{_ms(s['mean_ms'])} ± {_ms(s['std_ms'])}", f"{s['runs'] or '-'} ({s['clipped']})")
    out.print(table)
    facts = [f"load {report.load_s:.2f} s" if report.load_s is not None else None,
             f"first inference {report.first_inference_ms:.1f} ms" if report.first_inference_ms is not None else None,
             f"peak RSS {report.peak_rss_mb:.0f} MB (+{report.rss_growth_mb:.0f} MB)"
             if report.peak_rss_mb is not None else None, f"size {report.size_mb:.1f} MB", report.source]
    out.print(" · ".join(f for f in facts if f))
    if report.layers:
        layers = Table(title="slowest layers")
        for col in ("layer", "type", "ms", "share"):
            layers.add_column(col, justify="left" if col in ("layer", "type") else "right")
        for layer in report.layers[:10]:
            ms = layer.get("ms")
            layers.add_row(layer["name"][:70], layer.get("type", ""), _ms(ms),
                           f"{layer['share']:.1%}" if "share" in layer else f"cost {layer.get('estimated_cost', 0):.3f}")
        out.print(layers)
    for note in report.notes:
        out.print(f"[dim]note: {note}[/]")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Artifact folders, or folders holding them."),
    out_dir: Path = typer.Option(Path("runs/report"), "--out", "-o", help="Where report.{json,md,html} go."),
):
    """Merge validation and profile results into report.json, report.md and a self-contained report.html.

    \b
    Examples:
      edgehmr report runs/                       (every artifact folder under runs/)
      edgehmr report runs/a runs/b -o docs/report
    """
    from edgehmr.report import make_report

    paths = make_report(run_dirs, out_dir)
    out.print((paths["md"]).read_text())
    out.print(f"[dim]{paths['html']}  ·  {paths['json']}[/]")


@app.command("bench")
def bench_matrix(
    models: str = typer.Option("hmr2-vit-s", "--models", help="Comma-separated model ids."),
    targets: str = typer.Option("onnx,openvino,executorch", "--targets", help="Comma-separated target ids."),
    precisions: str = typer.Option("fp32,fp16,int8", "--precisions", help="Comma-separated precisions."),
    runs: int = typer.Option(20, "--runs", help="Timed inferences per artifact."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed inferences first."),
    inputs: str = typer.Option("synthetic", "--inputs", "-i", help="Crops for the bundle and INT8 calibration: "
                                                                   "image folder, video, or 'synthetic'."),
    count: int = typer.Option(8, "--count", help="Reference samples per model."),
    threads: int = typer.Option(None, "--threads", help="Runtime threads (default: runtime's choice)."),
    out_dir: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Artifacts, bundles and the report."),
):
    """Convert, validate and profile every model x target x precision; one report (how the table in docs/benchmarks.md is made).

    Run it alone on the machine: other load skews the timings.

    \b
    Example:
      edgehmr bench --models hmr2-vit-s,vitpose-s --targets onnx,openvino --precisions fp32,fp16,int8
    """
    from edgehmr.matrix import run_matrix

    def split(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    cells, paths = run_matrix(split(models), split(targets), split(precisions), out_dir, runs, warmup, inputs, count,
                              threads, log=lambda line: err.print(f"[dim]{escape(line)}[/]"))
    out.print(paths["md"].read_text())
    out.print(f"[dim]{paths['html']}[/]")
    if any(c.status == "failed" for c in cells):
        raise typer.Exit(1)


debug_app = typer.Typer(help="Debugging tools: where an artifact departs from FP32.", no_args_is_help=True)
app.add_typer(debug_app, name="debug")


@debug_app.command("drift")
def debug_drift_command(
    artifact: Path = typer.Argument(..., help="Artifact folder (targets onnx, tensorrt, openvino, executorch)."),
    reference_dir: Path = typer.Option(..., "--reference", "-r", help="Bundle from 'edgehmr reference', or one your "
                                       "own code wrote (docs/reference-bundles.md)."),
    samples: int = typer.Option(4, "--samples", help="Bundle samples to compare on (worst case per layer)."),
    top: int = typer.Option(10, "--top", help="Layers to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Rank the layers where the artifact first departs from FP32 (error added per layer, not inherited).

    \b
    Example:
      edgehmr debug drift runs/hmr2-vit-s-onnx-int8 -r runs/reference-hmr2-vit-s --top 15
    """
    from edgehmr.drift import debug_drift

    with stage("compared every intermediate tensor with the FP32 build"):
        result = debug_drift(artifact, reference_dir, samples, top)
    if as_json:
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"{artifact.name}: layers ranked by the drift they add ({result['samples']} samples)")
    for col in ("#", "tensor", "op", "rel L2 vs FP32", "added here"):
        table.add_column(col, justify="right" if col in ("#", "rel L2 vs FP32", "added here") else "left")
    for i, layer in enumerate(result["layers"], 1):
        table.add_row(str(i), escape(layer["tensor"]), layer["op"], f"{layer['rel_l2']:.2e}", f"{layer['added']:.2e}")
    out.print(table)
    out.print(f"[dim]method: {result['method']}[/]")


def print_report(report) -> None:
    title = f"{report.model} · {report.target} · {report.precision} · {report.samples} samples · {report.weights}"
    table = Table(title=title)
    for col in ("output", "max abs", "mean abs", "rel L2", "cosine", "tol rel L2", ""):
        table.add_column(col, justify="left" if col == "output" else "right")
    for name, s in report.outputs.items():
        table.add_row(name, f"{s['max_abs']:.2e}", f"{s['mean_abs']:.2e}", f"{s['rel_l2']:.2e}",
                      f"{s['cosine']:.6f}", f"{s['tolerance_rel_l2']:.0e}", _mark(s["ok"]))
    out.print(f"compared against the {report.reference}")
    out.print(table)
    task = Table(title="task drift vs FP32 reference")
    for col in ("metric", "value", "tolerance", ""):
        task.add_column(col, justify="left" if col == "metric" else "right")
    for metric, t in report.task.items():
        task.add_row(metric, f"{t['value']:.4f} {t['unit']}", f"{t['tolerance']:g} {t['unit']}", _mark(t["ok"]))
    out.print(task)
    buckets = getattr(report, "buckets", None)
    if buckets:
        per = Table(title="per bucket (SAT-HMR stage 2)")
        for col in ("bucket", "frames", "selection changed", "demoted cells", "max abs", "worst rel L2", ""):
            per.add_column(col, justify="left" if col == "bucket" else "right")
        for name, b in buckets.items():
            per.add_row(name, str(b["frames"]), str(b["selection_changed"]), str(b["demoted_cells"]),
                        f"{b['max_abs']:.2e}", f"{b['worst_rel_l2']:.2e}", _mark(b["ok"]))
        out.print(per)
    if report.execution != "runtime":
        out.print(f"[yellow]execution: {report.execution}[/]")
    for note in report.notes:
        out.print(f"[dim]note: {note}[/]")
    out.print("[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]: drift beyond tolerance")


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]over[/]"


@app.command("build-engine")
def build_engine(
    artifact: Path = typer.Argument(..., help="Artifact folder from 'edgehmr convert --target tensorrt'."),
    workspace_mb: int = typer.Option(2048, "--workspace-mb", help="Builder workspace memory pool (MiB)."),
    dla_core: int = typer.Option(None, "--dla-core", help="Build for this DLA core (Jetson), GPU fallback on."),
    timing_cache: str = typer.Option(None, "--timing-cache", help="Timing cache file: read if present, "
                                                                  "written after the build."),
):
    """Build the TensorRT engine of a tensorrt artifact on this device (TensorRT Python API).

    Needs TensorRT and an NVIDIA GPU (Jetson: JetPack's TensorRT). Without Python on the device, run the
    artifact's build_engine.sh (trtexec) instead.

    \b
    Examples:
      edgehmr build-engine runs/hmr2-vit-s-tensorrt-int8
      edgehmr build-engine runs/hmr2-vit-s-tensorrt-fp16 --dla-core 0 --timing-cache trt.cache
      edgehmr build-engine runs/sat-hmr-tensorrt-fp16-1288x728    (both stages; a profile per bucket)
    """
    from edgehmr.artifact import read_metadata
    from edgehmr.converters.tensorrt import build_artifact_engine, build_sat_engines
    from edgehmr.converters.tensorrt_engine import EngineOptions
    from edgehmr.tasks import artifact_task

    options = EngineOptions(workspace_mb, dla_core, timing_cache)
    if artifact_task(read_metadata(artifact)).input == FRAMES:
        with stage("built TensorRT engines (stage 1, stage 2 with one profile per bucket)"):
            infos = {name: (Path(name) / info["file"], info) for name, info in build_sat_engines(artifact, options).items()}
    else:
        with stage("built TensorRT engine"):
            info = build_artifact_engine(artifact, options)
            infos = {"engine": (Path(info["file"]), info)}
    for name, (file, info) in infos.items():
        out.print(f"{name}: {artifact / file}  (TensorRT {info['tensorrt']}, {info['build_seconds']} s)")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List installed runtimes with versions, and the install command for missing ones (installs nothing)."""
    from edgehmr.doctor import accelerators, check_runtimes

    rows = check_runtimes()
    if as_json:
        out.print_json(json.dumps({"runtimes": rows, "accelerators": accelerators()}))
        return
    table = Table(title="edgehmr doctor")
    for col in ("runtime", "version", "needed for", "install"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["runtime"], r["version"] or "[red]missing[/]", r["needed_for"], escape(r["install"] or ""))
    out.print(table)
    acc = accelerators()
    out.print(f"accelerators: {', '.join(acc) if acc else 'none visible to PyTorch (CPU only)'}")


@app.command("smpl-to-npz")
def smpl_to_npz(src: Path = typer.Argument(..., help="SMPL .pkl (official chumpy pickle or plain dict)."),
                dst: Path = typer.Argument(..., help="Output .npz (loads without pickle).")):
    """Convert an official SMPL pickle once to a chumpy-free .npz (no chumpy or scipy needed)."""
    from edgehmr.models.smpl import load_smpl_data, save_smpl_npz

    save_smpl_npz(load_smpl_data(src), dst)
    out.print(str(dst))


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
    from edgehmr.sat.validate import validate_sat
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
        rep = validate_sat(path, bundle)
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


# ------------------------------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    except EdgeHMRError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        if isinstance(e, CheckpointMismatchError):
            for line in e.diff.lines():
                err.print(escape(line), highlight=False)
        if os.environ.get("EDGEHMR_DEBUG"):
            raise
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
