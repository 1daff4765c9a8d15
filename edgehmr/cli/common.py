"""What every command shares: the app, the two consoles (results to stdout, progress and logs to stderr), the
options several commands take, progress bars and timed stages."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
