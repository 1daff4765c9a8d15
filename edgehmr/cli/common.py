"""What every command shares: the app, the two consoles (results to stdout, progress and logs to stderr), the
options several commands take, progress bars and timed stages."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Wide enough for the tables when output is piped or captured (rich falls back to 80 columns there); a terminal's
# own width otherwise.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # log lines stay whole lines in captured output
app = typer.Typer(
    help="Convert, quantize, validate and profile human mesh recovery and pose models for edge targets.\n\n"
         "\b\nStart here:\n"
         "  edgehmr demo                      (reference, convert, validate in about a minute)\n"
         "  edgehmr models                    (what can be converted)\n"
         "  edgehmr targets                   (for which runtimes, at which precisions)\n"
         "  edgehmr convert -m hmr2-vit-s -t openvino -p fp16\n"
         "  edgehmr COMMAND --help            (every command has examples)",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("edgehmr")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed; run 'make install')"
        out.print(f"edgehmr {number}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                           help="Print edgehmr's version and exit.")) -> None:
    pass


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
    from edgehmr.progress import reporting

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        # before the first step is counted (loading, compiling), the label says what runs
        with reporting(lambda text: bar.update(task, description=f"{label}: {text}")):
            yield lambda n=1: bar.update(task, advance=n, description=label)


@contextmanager
def stage(doing: str, done: str, quiet: bool = False):
    """On a terminal, a spinner line saying what runs (``doing``: the sub-step the library reports through
    :mod:`edgehmr.progress`) and for how long; then ``done`` with the time taken (stderr)."""
    from edgehmr.progress import reporting

    start = time.perf_counter()
    if quiet:
        yield
        return
    if not _progress_enabled(quiet):
        yield
    else:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True) as line:
            task = line.add_task(f"{doing} ...")
            with reporting(lambda text: line.update(task, description=f"{doing}: {text} ...")):
                yield
    err.print(f"[green]✓[/] {done} in {time.perf_counter() - start:.1f} s")


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = False  # numbers
    key: bool = False  # tells the rows apart: never wrapped, cut or hidden
    wrap: int = 0  # narrowest width the column may be wrapped to; 0: never wrapped


def print_table(title: str, columns: list[Column], rows: list[list[str]],
                where_hidden: str = "--json or a wider terminal shows them") -> None:
    """A table that fits the terminal: key columns are kept whole; where the natural widths do not fit, columns
    are wrapped down to their ``wrap`` width, then hidden from the last one back (a caption names them)."""
    cells = [[Text.from_markup(c) for c in row] for row in rows]

    def need(i: int) -> int:
        natural = max([len(columns[i].header)] + [row[i].cell_len for row in cells])
        return min(natural, columns[i].wrap) if columns[i].wrap else natural

    keep = list(range(len(columns)))
    # rich's box: one rule per column plus one, and one space either side of each cell
    while sum(need(i) + 3 for i in keep) + 1 > out.width:
        hideable = [i for i in keep if not columns[i].key]
        if len(keep) == 1 or not hideable:
            break
        keep.remove(hideable[-1])
    hidden = [columns[i].header for i in range(len(columns)) if i not in keep]
    caption = f"hidden at this width: {', '.join(hidden)} ({where_hidden})" if hidden else None
    table = Table(title=title, caption=caption)
    for i in keep:
        col = columns[i]
        table.add_column(col.header, justify="right" if col.right else "left", no_wrap=not col.wrap, overflow="fold",
                         min_width=need(i) if col.key else None)
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    out.print(table)
