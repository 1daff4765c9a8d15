"""``edgehmr validate``, ``profile``, ``report``, ``bench`` and ``debug drift``: how an artifact compares and
performs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from edgehmr.cli.common import Column, QuietOpt, SmplOpt, app, err, out, print_table, progress_bar, stage
from edgehmr.errors import InputError


@app.command()
def validate(
    artifact: Path = typer.Argument(..., help="Artifact folder from 'edgehmr convert'."),
    reference_dir: Path = typer.Option(..., "--reference", "-r", help="Bundle from 'edgehmr reference', or one your "
                                       "own code wrote (docs/reference-bundles.md)."),
    smpl: str = SmplOpt,
    threads: int = typer.Option(None, "--threads", min=1, help="Runtime threads (default: runtime's choice)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = QuietOpt,
):
    """Run an artifact on a bundle's inputs; report drift per output and task drift in mm / px.

    Exits 1 when any tolerance is exceeded.

    \b
    Example:
      edgehmr validate runs/hmr2-vit-s-onnx-fp16 --reference runs/reference-hmr2-vit-s
    """
    from edgehmr.reference import load_bundle
    from edgehmr.validate import validate as run_validate

    count = load_bundle(reference_dir).count
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
    threads: int = typer.Option(None, "--threads", min=1, help="Runtime threads (default: runtime's choice)."),
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
    rows = [("inference" if not report.per_entry else "whole frame", asdict(report.latency))] if report.latency else []
    rows += list(report.per_entry.items())
    print_table(f"{report.model} · {report.target} · {report.precision} · {device}",
                [Column("", key=True), Column("p50 ms", right=True, key=True), Column("p90 ms", right=True),
                 Column("p99 ms", right=True), Column("mean ± std ms", right=True),
                 Column("runs (clipped)", right=True)],
                [[name, _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]),
                  f"{_ms(s['mean_ms'])} ± {_ms(s['std_ms'])}", f"{s['runs'] or '-'} ({s['clipped']})"]
                 for name, s in rows])
    facts = [f"load {report.load_s:.2f} s" if report.load_s is not None else None,
             f"first inference {report.first_inference_ms:.1f} ms" if report.first_inference_ms is not None else None,
             f"peak RSS {report.peak_rss_mb:.0f} MB (+{report.rss_growth_mb:.0f} MB)"
             if report.peak_rss_mb is not None else None, f"size {report.size_mb:.1f} MB", report.source]
    out.print(" · ".join(f for f in facts if f))
    if report.layers:
        print_table("slowest layers",
                    [Column("layer", wrap=40), Column("ms", right=True, key=True), Column("share", right=True),
                     Column("type")],
                    [[escape(layer["name"]), _ms(layer.get("ms")),
                      f"{layer['share']:.1%}" if "share" in layer else f"cost {layer.get('estimated_cost', 0):.3f}",
                      escape(layer.get("type", ""))] for layer in report.layers[:10]])
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
    models: str = typer.Option(None, "--models", help="Comma-separated model ids (with --config: patterns that "
                               "select among its models). Default: hmr2-vit-s."),
    targets: str = typer.Option("onnx,openvino,executorch", "--targets", help="Comma-separated target ids."),
    precisions: str = typer.Option("fp32,fp16,int8", "--precisions", help="Comma-separated precisions."),
    config: Path = typer.Option(None, "--config", help="A TOML matrix (named cells, checks, settings, results "
                                "file), e.g. bench/hierarchical_matrix.toml; replaces --targets/--precisions."),
    cells: str = typer.Option(None, "--cells", help="With --config: only these of its cells (comma-separated)."),
    devices: str = typer.Option(None, "--devices", help="Where cells are validated and profiled: NAME or "
                                "TARGET=NAME, comma-separated; each needs a node with the device:NAME resource. "
                                "Default: local (this machine, or the node --cluster auto starts)."),
    cluster: str = typer.Option(None, "--cluster", help="Run the cells as Ray tasks: a head's address "
                                "(host:6379), or 'auto' for a Ray cluster on this machine (docs/cluster.md)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Without --cluster: worker processes on this machine."),
    share: str = typer.Option(None, "--share", help="A folder every node mounts at the same path: artifacts and "
                              "bundles go there instead of through Ray's object store."),
    runs: int = typer.Option(None, "--runs", help="Timed inferences per artifact (default 20)."),
    warmup: int = typer.Option(None, "--warmup", help="Untimed inferences first (default 3)."),
    inputs: str = typer.Option(None, "--inputs", "-i", help="Crops for the bundle and INT8 calibration: "
                                                             "image folder, video, or 'synthetic' (default)."),
    count: int = typer.Option(None, "--count", help="Reference samples per model (default 8)."),
    threads: int = typer.Option(None, "--threads", min=1, help="Runtime threads (default: runtime's choice)."),
    summary: bool = typer.Option(False, "--summary", help="Print the model x cell table of the results so far; "
                                 "run nothing."),
    out_dir: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Artifacts, bundles, cells.jsonl and the "
                                 "report."),
):
    """Convert, validate and profile every model x target x precision (or a --config matrix) into one report.

    Cells already in the results file are not run again, so an interrupted matrix resumes. A profile runs with
    nothing else beside it: with --jobs the other processes finish first, on a cluster it holds every core of its
    device node. Anything else running on the machine still skews the timings.

    \b
    Examples:
      edgehmr bench --models hmr2-vit-s,vitpose-s --targets onnx,openvino --precisions fp32,fp16,int8
      edgehmr bench --models test-hmr2 --cluster auto
      edgehmr bench --config bench/hierarchical_matrix.toml --models 'vitpose-swin-*' --cells openvino-int8-search
      edgehmr bench --config bench/hierarchical_matrix.toml --summary
      edgehmr bench --models hmr2-vit-s --targets tensorrt,openvino --devices tensorrt=orin,openvino=nuc \\
          --cluster head.lan:6379 --share /mnt/edgehmr
    """
    from edgehmr.executors import open_executor
    from edgehmr.matrix import (
        Settings,
        load_config,
        load_records,
        plan_from_flags,
        report_matrix,
        run_matrix,
        summary_table,
    )

    def split(text: str | None) -> list[str]:
        return [t.strip() for t in (text or "").split(",") if t.strip()]

    given = {k: v for k, v in {"runs": runs, "warmup": warmup, "inputs": inputs, "count": count,
                               "threads": threads}.items() if v is not None}
    if config is not None:
        plan = load_config(config, devices, {"models": split(models), "cells": split(cells)})
        plan.settings = Settings(**(asdict(plan.settings) | given))
    else:
        if cells:
            raise InputError("--cells selects among a --config matrix's cells; without --config use --targets and "
                             "--precisions.")
        plan = plan_from_flags(split(models) or ["hmr2-vit-s"], split(targets), split(precisions), devices,
                               Settings(**given))
    if not plan.cells:
        raise InputError("the matrix has no cells: check --models, --cells and --devices.")
    share = shared_folder(share)
    if summary:
        out.print(summary_table(plan, load_records(plan.results or out_dir / "cells.jsonl")), highlight=False)
        return
    executor = open_executor(cluster, jobs)
    try:
        outcome = run_matrix(plan, out_dir, executor, share, log=lambda line: err.print(f"[dim]{escape(line)}[/]"))
    finally:
        executor.close()
    if any(r.artifact for r in outcome.records):
        paths = report_matrix(outcome, out_dir)
        out.print(paths["md"].read_text())
        out.print(f"[dim]{paths['html']}[/]")
    else:
        out.print(summary_table(plan, {r.key: r for r in outcome.records}), highlight=False)
    if any(r.status == "error" for r in outcome.records):
        raise typer.Exit(1)


def shared_folder(share: str | None) -> str | None:
    """--share: a folder path or a file:// URI; object stores are reached through a mount, the same on every node."""
    if share is None:
        return None
    scheme, sep, rest = share.partition("://")
    if not sep:
        return share
    if scheme != "file":
        raise InputError(f"--share {share}: give a folder every node mounts at the same path (mount an object store "
                         f"with s3fs, gcsfuse or blobfuse and pass the mount point), or a file:// URI.")
    return rest


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

    with stage("comparing every intermediate tensor with the FP32 build",
               "compared every intermediate tensor with the FP32 build"):
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
    out.print(f"compared against the {escape(report.reference)}", highlight=False)
    print_table(title, [Column("output", key=True), Column("", key=True), Column("rel L2", right=True),
                        Column("tol rel L2", right=True), Column("max abs", right=True), Column("cosine", right=True),
                        Column("mean abs", right=True)],
                [[name, _mark(s["ok"]), f"{s['rel_l2']:.2e}", f"{s['tolerance_rel_l2']:.0e}", f"{s['max_abs']:.2e}",
                  f"{s['cosine']:.6f}", f"{s['mean_abs']:.2e}"] for name, s in report.outputs.items()])
    print_table("task drift vs FP32 reference",
                [Column("metric", key=True), Column("", key=True), Column("value", right=True),
                 Column("tolerance", right=True)],
                [[metric, _mark(t["ok"]), f"{t['value']:.4f} {t['unit']}", f"{t['tolerance']:g} {t['unit']}"]
                 for metric, t in report.task.items()])
    buckets = getattr(report, "buckets", None)
    if buckets:
        print_table("per bucket (SAT-HMR stage 2)",
                    [Column("bucket", key=True), Column("", key=True), Column("frames", right=True),
                     Column("worst rel L2", right=True), Column("max abs", right=True),
                     Column("demoted cells", right=True), Column("selection changed", right=True)],
                    [[name, _mark(b["ok"]), str(b["frames"]), f"{b['worst_rel_l2']:.2e}", f"{b['max_abs']:.2e}",
                      str(b["demoted_cells"]), str(b["selection_changed"])] for name, b in buckets.items()])
    if report.execution != "runtime":
        out.print(f"[yellow]execution: {report.execution}[/]")
    for note in report.notes:
        out.print(f"[dim]note: {note}[/]")
    out.print("[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]: drift beyond tolerance")


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]over[/]"
