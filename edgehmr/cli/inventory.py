"""``edgehmr models`` and ``edgehmr targets``: what can be converted, and for what."""

from __future__ import annotations

import json

import typer
from rich.markup import escape

from edgehmr.cli.common import Column, app, out, print_table, stage
from edgehmr.errors import SpecError


@app.command()
def models(pattern: str = typer.Argument(None, help="Only models whose id matches this glob (e.g. 'hmr2-vit-*') "
                                                     "or contains this text."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON."),
           show_all: bool = typer.Option(False, "--all", help="Also list the tiny test-* models (for tests and "
                                                               "trying commands in seconds).")):
    """List the model zoo with parameters and GMACs per crop (SAT-HMR: per frame at its default canvas).

    \b
    Examples:
      edgehmr models
      edgehmr models 'hmr2-*'
      edgehmr models swin --json
      edgehmr models --all            (also the tiny test-* models)
    """
    import fnmatch

    from edgehmr.catalog import cached_catalog, count_and_cache

    rows = cached_catalog()
    if rows is None:  # the model code differs from catalog.json's (a development checkout): count once
        with stage("counting parameters and GMACs of every model (the model code differs from catalog.json's; "
                   "cached for the next call)", "counted parameters and GMACs of every model"):
            rows = count_and_cache()
    rows = [r for r in rows if show_all or not r["test_only"]]
    if pattern:
        rows = [r for r in rows if fnmatch.fnmatchcase(r["model"], pattern) or pattern in r["model"]]
        if not rows:
            hint = "" if show_all else " (the tiny test-* models are listed with --all)"
            raise SpecError(f"No model matches '{pattern}'{hint}. Run 'edgehmr models' for the list.")
    rows = [{k: v for k, v in r.items() if k != "test_only"} for r in rows]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    print_table("edgehmr models",
                [Column("model", key=True), Column("family"), Column("params (M)", right=True),
                 Column("GMACs", right=True), Column("description", wrap=24)],
                [[r["model"], r["family"], f"{r['params_m']:.2f}", f"{r['gmacs']:.2f}", escape(r["description"])]
                 for r in rows])


@app.command()
def targets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show the capability table: targets, precisions, calibration, buckets, host.

    \b
    Examples:
      edgehmr targets
      edgehmr targets --json
    """
    from edgehmr.converters.capabilities import TARGETS

    rows = [{"target": c.id, "runtime": c.runtime, "suffix": c.suffix,
             "precisions": [p.value for p in c.precisions], "needs_calibration": [p.value for p in c.calibrated],
             "buckets": c.buckets, "host": c.host, "install": c.extra, "deformable_ops": c.deformable_ops}
            for c in TARGETS.values()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    print_table("edgehmr targets",
                [Column("target", key=True), Column("precisions", wrap=12), Column("calibration"),
                 Column("runtime", wrap=14), Column("host", wrap=18), Column("buckets", wrap=16), Column("suffix"),
                 Column("install", wrap=18)],
                [[r["target"], ", ".join(r["precisions"]), ", ".join(r["needs_calibration"]) or "-", r["runtime"],
                  r["host"], r["buckets"], r["suffix"], escape(r["install"])] for r in rows])
