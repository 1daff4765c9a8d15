"""``edgehmr build-engine``, ``doctor`` and ``smpl-to-npz``: setting up a device and its files."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from edgehmr.cli.common import Column, app, out, print_table, stage


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
    from edgehmr.converters.tensorrt import build_artifact_engine
    from edgehmr.converters.tensorrt_engine import EngineOptions

    with stage("building TensorRT engines (one per part; a profile per entry of a bucketed part)",
               "built TensorRT engines"):
        built = build_artifact_engine(artifact, EngineOptions(workspace_mb, dla_core, timing_cache))
    for name, (path, info) in built.items():
        out.print(f"{name}: {path}  (TensorRT {info['tensorrt']}, {info['build_seconds']} s)")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
           probe: bool = typer.Option(True, "--probe/--no-probe",
                                      help="Show the host probe: an MLP block through each CPU target and precision "
                                           "(measured once, ~30 s, then read from the cache)."),
           fresh: bool = typer.Option(False, "--fresh", help="Measure the host probe again.")):
    """List installed runtimes with versions, the install command for missing ones (installs nothing), and which
    target and precision this host's CPU runs fastest.

    \b
    Examples:
      edgehmr doctor
      edgehmr doctor --fresh      (measure the host probe again, e.g. after a runtime upgrade)
      edgehmr doctor --json --no-probe
    """
    from edgehmr.doctor import accelerators, check_runtimes

    rows = check_runtimes()
    host = _host_probe(fresh) if probe else None
    if as_json:
        report = {"runtimes": rows, "accelerators": accelerators()} | ({"host": host} if host else {})
        out.print_json(json.dumps(report))
        return
    print_table("edgehmr doctor", [Column("runtime", key=True), Column("version", key=True),
                                   Column("needed for", wrap=16)],
                [[r["runtime"], r["version"] or "[red]missing[/]", r["needed_for"]] for r in rows])
    missing: dict[str, list[dict]] = {}
    for r in rows:
        if r["install"]:
            missing.setdefault(r["install"], []).append(r)
    if missing:  # below the table, one per line: copied whole, never wrapped by a column
        out.print("To install what is missing (nothing is installed for you):", highlight=False)
        for command, runtimes in missing.items():
            said = "; ".join([", ".join(r["runtime"] for r in runtimes)] + [r["note"] for r in runtimes if r["note"]])
            out.print(f"  {escape(command)}     ({said})", highlight=False, soft_wrap=True)
    acc = accelerators()
    out.print(f"accelerators: {', '.join(acc) if acc else 'none visible to PyTorch (CPU only)'}")
    if host:
        _print_host(host)


def _host_probe(fresh: bool) -> dict:
    from edgehmr import host_probe

    with stage("probing this host: a transformer MLP block per CPU target and precision (once, ~30 s)",
               "probed this host", quiet=not fresh and host_probe.cached() is not None):
        features, probes = host_probe.measure_and_cache(fresh)
    return {"cpu": features, "probe": [p.__dict__ for p in probes], "verdict": host_probe.verdict(probes, features),
            "block": {"tokens": host_probe.TOKENS, "width": host_probe.WIDTH}}


def _print_host(host: dict) -> None:
    cpu, block = host["cpu"], host["block"]
    notes = any(g["note"] for g in host["probe"])
    rows = [[g["runtime"], g["target"] or "(eager reference)", g["precision"], f"{g['gmac_s']:.0f}" if g["gmac_s"]
             else "-"] + ([g["note"]] if notes else []) for g in host["probe"]]
    print_table("this host: an MLP block through each CPU target",
                [Column("runtime", key=True), Column("target", key=True), Column("precision", key=True),
                 Column("GMAC/s", right=True, key=True)] + ([Column("note", wrap=30)] if notes else []),
                rows)
    out.print(f"{cpu['cpu']}, {cpu['cores']} cores, INT8 flags: {', '.join(cpu['int8_flags']) or 'none'}; block: "
              f"LayerNorm, Linear {block['width']}->{4 * block['width']}, GELU, Linear back, residual, over "
              f"{block['tokens']} tokens (a ViT-B MLP over one crop); medians of rounds timed in alternation",
              highlight=False)
    out.print(host["verdict"], highlight=False)


@app.command("smpl-to-npz")
def smpl_to_npz(src: Path = typer.Argument(..., help="SMPL .pkl (official chumpy pickle or plain dict)."),
                dst: Path = typer.Argument(..., help="Output .npz (loads without pickle).")):
    """Convert an official SMPL pickle once to a chumpy-free .npz (no chumpy or scipy needed).

    \b
    Example:
      edgehmr smpl-to-npz SMPL_NEUTRAL.pkl SMPL_NEUTRAL.npz
    """
    from edgehmr.models.smpl import load_smpl_data, save_smpl_npz

    save_smpl_npz(load_smpl_data(src), dst)
    out.print(str(dst))
