"""``edgehmr models`` and ``edgehmr targets``: what can be converted, and for what."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from edgehmr.cli.common import app, out
from edgehmr.errors import SpecError


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
