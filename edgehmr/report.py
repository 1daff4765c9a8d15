"""``edgehmr report``: merge what ``validate`` and ``profile`` wrote into one table people read.

Every artifact folder found under the given run directories (the folder itself, or any folder below it)
becomes one row: model, target, precision, what executed it, size, latency (p50/p90 from ``profile.json``),
drift (worst output relative L2 and task drift from ``validation.json``) and a one-line verdict against the
tolerances. Written as ``report.json`` (machines), ``report.md`` (READMEs, pull requests) and a self-contained
``report.html`` with the plots inline (latency per artifact, drift against latency, SAT-HMR latency per bucket,
drift per joint, and the ``--max-drift`` search of each artifact that had one).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from edgehmr.artifact import METADATA, PROFILE_FILE, VALIDATION_FILE, artifact_mb, read_metadata, write_json
from edgehmr.tasks import KEYPOINTS, MESH, artifact_task
from edgehmr.errors import InputError
from edgehmr.jsonfile import read_json_object

TASK_METRIC = {MESH: "mpjpe_mm", KEYPOINTS: "kp2d_px"}  # by the task's output


@dataclass
class Row:
    artifact: str
    model: str
    target: str
    precision: str
    execution: str | None
    size_mb: float | None
    p50_ms: float | None
    p90_ms: float | None
    worst_rel_l2: float | None
    task_metric: str | None
    task_value: float | None
    verdict: str  # pass | fail (which check) | not validated
    buckets: dict[str, dict] = field(default_factory=dict)  # SAT-HMR: latency and drift per bucket
    device: str | None = None
    per_joint: dict | None = None  # validation.json's per-joint drift
    # convert --max-drift's steps: {"float_pct": [...], "ratio": [worst drift / budget, ...], "best": step kept}
    search: dict | None = None


def find_artifacts(run_dirs: list[Path]) -> list[Path]:
    """Each given folder that is an artifact, and every artifact folder at any depth below the others (the inside
    of an artifact, hidden folders such as unfinished conversions and linked folders are not searched)."""
    found: list[Path] = []
    for d in run_dirs:
        d = Path(d)
        if not d.is_dir():
            raise InputError(f"{d} is not a folder; give artifact folders or folders that hold them.")
        found += [c for c in _artifact_folders(d) if c not in found]
    if not found:
        raise InputError(f"No artifact folders (with {METADATA}) in {', '.join(map(str, run_dirs))}; "
                         f"run 'edgehmr convert' first.")
    return found


def _artifact_folders(root: Path) -> list[Path]:
    if (root / METADATA).is_file():
        return [root]
    artifacts = []
    for folder, subfolders, _ in os.walk(root):
        below = []
        for name in sorted(subfolders):
            path = Path(folder) / name
            if (path / METADATA).is_file():
                artifacts.append(path)
            elif not name.startswith("."):
                below.append(name)
        subfolders[:] = below
    return sorted(artifacts)


def _read(path: Path) -> dict | None:
    return read_json_object(path, "an edgehmr result", "re-run the command that wrote it.") if path.is_file() else None


def row_for(artifact: Path) -> Row:
    meta = read_metadata(artifact)
    val, prof = _read(artifact / VALIDATION_FILE), _read(artifact / PROFILE_FILE)
    try:
        return _row(artifact, meta, val, prof)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # reason: validation.json, profile.json and the search record are edgehmr's own results; one that lacks
        # what they hold was edited or cut short.
        raise InputError(f"{artifact}: {VALIDATION_FILE}, {PROFILE_FILE} or the quantization.search record of "
                         f"{METADATA} is damaged ({type(e).__name__}: {e}); re-run 'edgehmr validate' / "
                         f"'edgehmr profile' (or convert again).") from None


def _row(artifact: Path, meta: dict, val: dict | None, prof: dict | None) -> Row:
    metric = TASK_METRIC[artifact_task(meta).output]
    verdict = "not validated"
    worst = task = execution = None
    if val:
        worst = max(o["rel_l2"] for o in val["outputs"].values())
        task = (val["task"].get(metric) or {}).get("value")
        execution = val["execution"]
        failed = [n for n, o in val["outputs"].items() if not o["ok"]] + [m for m, t in val["task"].items()
                                                                         if not t["ok"]]
        failed += [b for b, v in (val.get("buckets") or {}).items() if not v["ok"]]
        verdict = "pass" if val["passed"] else f"fail ({', '.join(failed[:3])})"
    buckets: dict[str, dict] = {}
    for name, b in ((val or {}).get("buckets") or {}).items():
        buckets.setdefault(name, {})["worst_rel_l2"] = b["worst_rel_l2"]
        buckets[name]["frames"] = b["frames"]
    for name, stats in ((prof or {}).get("per_entry") or {}).items():
        buckets.setdefault(name, {})["p50_ms"] = stats["p50_ms"]
    return Row(artifact.name, meta["model"]["model"], meta["target"], meta["precision"],
               (prof or {}).get("execution") or execution,
               (prof or {}).get("size_mb") or round(artifact_mb(artifact), 2),
               ((prof or {}).get("latency") or {}).get("p50_ms"), ((prof or {}).get("latency") or {}).get("p90_ms"),
               worst, metric if task is not None else None, task, verdict, buckets,
               _device_label((prof or {}).get("device") or (val or {}).get("device")), (val or {}).get("per_joint"),
               _search_points((meta.get("quantization") or {}).get("search")))


def _search_points(search: dict | None) -> dict | None:
    """The plot's points of a search record (read here, where a damaged record becomes one line)."""
    if not search:
        return None
    limits = search["budget"]
    ratios = [max((s["drift"][m] / lim if lim > 0 else math.inf) for m, lim in limits.items())
              for s in search["steps"]]
    best = int(search["best_step"])
    if not 0 <= best < len(ratios):
        raise ValueError(f"best_step {best} of {len(ratios)} steps")
    return {"float_pct": [float(s["float_weights_pct"]) for s in search["steps"]], "ratio": ratios, "best": best}


def _device_label(device: dict | None) -> str | None:
    if not device:
        return None
    # edgehmr bench: the device:<name> resource the cell ran under, and the machine
    where = f"{device['device']} ({device['node']}): " if "device" in device and "node" in device else ""
    if "cpu" not in device:  # imported from a native tool (or validation only): what the files (or --device) said
        rest = {k: v for k, v in device.items() if k not in ("device", "node", "ray_node")}
        return (where + ", ".join(str(v) for v in rest.values())).rstrip(": ") or None
    return f"{where}{device['cpu']}, {device['cores']} cores, {device['os']}"


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[Row], notes: list[str] = ()) -> str:
    lines = ["| artifact | target | precision | size MB | p50 ms | p90 ms | worst rel L2 | task drift | verdict |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        task = "-" if r.task_value is None else f"{r.task_value:.3f} {r.task_metric.rsplit('_', 1)[-1]}"
        lines.append(f"| {r.artifact} | {r.target} | {r.precision} | {_fmt(r.size_mb, '.1f')} | "
                     f"{_fmt(r.p50_ms, '.1f')} | {_fmt(r.p90_ms, '.1f')} | {_fmt(r.worst_rel_l2, '.1e')} | {task} | "
                     f"{r.verdict} |")
    devices = sorted({r.device for r in rows if r.device})
    if devices:
        lines += ["", f"Measured on: {'; '.join(devices)}."]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


PASS_COLOR, FAIL_COLOR, NONE_COLOR, BAR_COLOR = "#54a24b", "#e45756", "#8c8c8c", "#4c78a8"
# One image width for every plot (inches at 110 dpi: about 880 px), so the page's grid lines them up; phones get a
# narrower drawing of the same plot (the page picks one by its width).
PLOT_WIDTH, PHONE_WIDTH = 8.0, 4.6


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _color(row: Row) -> str:
    return PASS_COLOR if row.verdict == "pass" else FAIL_COLOR if row.verdict.startswith("fail") else NONE_COLOR


def _fit_drift_axis(ax, values: list[float]) -> None:
    """Drift is never negative: the y axis starts at 0. Linear where the values share a scale; where they span more
    than two decades (FP32 near zero, INT8 far above), symmetric-log with its linear part below the smallest
    non-zero value, so every value shows and no tick is negative."""
    positive = [v for v in values if v > 0]
    top = max(positive, default=1.0)
    if positive and top / min(positive) > 100:
        ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(min(positive))))
        ax.set_ylim(0, top * 3)
    else:
        ax.set_ylim(0, top * 1.15)


def _missing(what: str, rows: list[Row]) -> list[str]:
    """One note line naming ``rows`` (the artifacts a plot leaves out, and why), or none."""
    return [f"{what}: {', '.join(r.artifact for r in rows)}"] if rows else []


def _has_bucket_latency(row: Row) -> bool:
    return any("p50_ms" in b for name, b in row.buckets.items() if name != "stage1")


def _note(ax, lines: list[str]) -> None:
    """What the plot leaves out and why, written under it (inside the image)."""
    if lines:
        text = "\n".join(textwrap.fill(line, 120) for line in lines)
        ax.figure.text(0.01, -0.01, text, fontsize=8, color=NONE_COLOR, va="top", ha="left")


def _latency_plot(rows: list[Row], plt, width: float):
    """Every artifact: its p50 bar with the p90 tick and value, or "not profiled"."""
    fig, ax = plt.subplots(layout="constrained", figsize=(width, 0.38 * len(rows) + 1.2))
    ys = range(len(rows))
    timed = [r.p90_ms or r.p50_ms for r in rows if r.p50_ms is not None]
    right = max(timed) * 1.3
    ax.barh(ys, [r.p50_ms or 0 for r in rows], color=[BAR_COLOR if r.p50_ms is not None else NONE_COLOR for r in rows],
            height=0.6)
    for y, r in zip(ys, rows):
        if r.p50_ms is None:
            ax.text(right * 0.01, y, "not profiled", va="center", fontsize=8, color=NONE_COLOR, style="italic")
            continue
        if r.p90_ms is not None:  # imports from tools that report no p90 (benchmark_app) get no tick
            ax.plot([r.p90_ms, r.p90_ms], [y - 0.3, y + 0.3], color="#333", linewidth=1.2)
        ax.text(max(r.p50_ms, r.p90_ms or 0) + right * 0.01, y, f"{r.p50_ms:.1f} ms", va="center", fontsize=8)
    ax.set_yticks(list(ys), [r.artifact for r in rows], fontsize=8)
    ax.set_xlim(0, right)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("latency p50 (ms); black tick: p90")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _tradeoff_plot(rows: list[Row], metric: str, plt, width: float):
    """Drift against latency for the artifacts that have both; the others are named in the plot."""
    both = [r for r in rows if r.p50_ms is not None and r.task_value is not None]
    fig, ax = plt.subplots(layout="constrained", figsize=(width, 4.2))
    for r in both:
        ax.scatter(r.p50_ms, r.task_value, color=_color(r), s=36, zorder=3)
        ax.annotate(r.artifact, (r.p50_ms, r.task_value), fontsize=7, textcoords="offset points", xytext=(5, 4))
    if both:
        ax.set_xlim(0, max(r.p50_ms for r in both) * 1.35)
        _fit_drift_axis(ax, [r.task_value for r in both])
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel(f"drift vs FP32 ({metric})")
    ax.set_title(f"{metric} drift vs latency (green: within tolerance, red: over)", fontsize=10)
    ax.grid(alpha=0.3)
    _note(ax, _missing("not profiled (no latency)", [r for r in rows if r.p50_ms is None])
          + _missing("not validated (no drift)", [r for r in rows if r.task_value is None]))
    return fig


def _bucket_name_key(name: str) -> tuple:
    """Buckets in size order (b8x48 before b24x80); names that are not HRxOTHER keep their place at the end."""
    match = re.fullmatch(r"b(\d+)x(\d+)", name)
    return (0, int(match[1]), int(match[2])) if match else (1, 0, 0)


def _bucket_plot(rows: list[Row], plt, width: float):
    """SAT-HMR: stage 2's p50 per bucket, a bar per artifact side by side, stage 1 as a line per artifact."""
    timed = [r for r in rows if _has_bucket_latency(r)]
    names = sorted({n for r in timed for n, b in r.buckets.items() if n != "stage1" and "p50_ms" in b},
                   key=_bucket_name_key)
    fig, ax = plt.subplots(layout="constrained", figsize=(width, 4.2))
    bar = 0.8 / max(len(timed), 1)
    colors = plt.get_cmap("tab10").colors
    for k, r in enumerate(timed):
        xs = [i - 0.4 + bar * (k + 0.5) for i, n in enumerate(names) if "p50_ms" in r.buckets.get(n, {})]
        ax.bar(xs, [r.buckets[n]["p50_ms"] for n in names if "p50_ms" in r.buckets.get(n, {})], width=bar * 0.95,
               color=colors[k % 10], label=r.artifact)
        if "p50_ms" in r.buckets.get("stage1", {}):
            ax.axhline(r.buckets["stage1"]["p50_ms"], color=colors[k % 10], linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("stage 2 p50 (ms); dashed: stage 1")
    ax.set_title("SAT-HMR: latency per bucket", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_ylim(0, max([b["p50_ms"] for r in timed for b in r.buckets.values() if "p50_ms" in b]) * 1.25)
    _note(ax, _missing("not profiled", [r for r in rows if r not in timed]))
    return fig


def plots(rows: list[Row]) -> dict[str, tuple[str, str, bool]]:
    """Title -> (base64 PNG, base64 PNG for phones, wide): latency (every artifact), drift vs latency (per task
    metric), SAT-HMR latency per bucket, drift per joint. A plot is drawn where at least one artifact has its
    data; the artifacts without it are named in the plot. Wide plots take the page's whole width: the latency and
    per-joint plots, and the last half-width plot when their number is odd (no empty half row)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    wide = [("Latency per artifact", partial(_latency_plot, rows))] if any(r.p50_ms is not None for r in rows) else []
    half = []
    for metric in dict.fromkeys(r.task_metric for r in rows if r.task_metric):
        same = [r for r in rows if r.task_metric == metric]
        if any(r.p50_ms is not None for r in same):
            half.append((f"Drift vs latency ({metric})", partial(_tradeoff_plot, same, metric)))
    if any(r.search for r in rows):
        half.append(("INT8 search: drift vs weights kept float", partial(_search_plot, [r for r in rows if r.search])))
    if any(_has_bucket_latency(r) for r in rows):
        half.append(("SAT-HMR latency per bucket", partial(_bucket_plot, [r for r in rows if r.buckets])))
    joints = _per_joint_plots(rows)
    layout = [(t, draw, True) for t, draw in wide] + [(t, draw, len(half) % 2 == 1 and i == len(half) - 1)
                                                      for i, (t, draw) in enumerate(half)]
    layout += [(t, draw, True) for t, draw in joints]
    out = {}
    for title, draw, is_wide in layout:
        drawn = []
        for width in (2 * PLOT_WIDTH if is_wide else PLOT_WIDTH, PHONE_WIDTH):
            fig = draw(plt, width)
            drawn.append(_png(fig))
            plt.close(fig)
        out[title] = (*drawn, is_wide)
    return out


def _search_plot(rows: list[Row], plt, width: float):
    """Each searched artifact's steps (``convert --max-drift``): the worst budget ratio (drift / limit, 1 = the
    budget) against the share of Linear/Conv weights kept float; the step kept is ringed."""
    fig, ax = plt.subplots(layout="constrained", figsize=(width, 3.6))
    for r in rows:
        x, y, best = r.search["float_pct"], r.search["ratio"], r.search["best"]
        line, = ax.plot(x, y, marker="o", markersize=4, label=r.artifact)
        ax.plot([x[best]], [y[best]], marker="o", markersize=10, fillstyle="none", color=line.get_color())
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel("Linear/Conv weights kept float (%)")
    ax.set_ylabel("worst drift / budget")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def _per_joint_plots(rows: list[Row]) -> list[tuple[str, Callable]]:
    """One plot per joint set (SMPL joints in mm, COCO keypoints in px): mean drift per joint, a line per artifact,
    so a target that breaks the hands or the feet shows at a glance."""
    metrics = dict.fromkeys(r.per_joint["metric"] for r in rows if r.per_joint)
    return [(f"Per-joint drift ({metric})", partial(_per_joint_plot, rows, metric)) for metric in metrics]


def _per_joint_plot(rows: list[Row], metric: str, plt, width: float):
    same = [r for r in rows if r.per_joint and r.per_joint["metric"] == metric]
    names = same[0].per_joint["names"]
    fig, ax = plt.subplots(layout="constrained", figsize=(width, 4.2))
    for r in same:
        ax.plot(range(len(names)), r.per_joint["mean"], marker="o", markersize=3, label=r.artifact)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel(f"mean drift ({same[0].per_joint['unit']})")
    _fit_drift_axis(ax, [v for r in same for v in r.per_joint["mean"]])
    ax.grid(alpha=0.3)
    if width > PHONE_WIDTH:
        ax.set_title(f"per-joint drift vs FP32 ({metric})", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:  # a phone: the legend above the plot keeps its whole width for the joints
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.01), frameon=False)
    _note(ax, _missing(f"no per-joint drift in {VALIDATION_FILE}", [r for r in rows if not r.per_joint]))
    return fig


def html_page(rows: list[Row], images: dict[str, tuple[str, str, bool]], notes: list[str] = ()) -> str:
    # the verdict next to the name: on a phone the table scrolls sideways and these two stay in view
    head = ["artifact", "verdict", "target", "precision", "size MB", "p50 ms", "p90 ms", "worst rel L2", "task drift"]
    body = []
    for r in rows:
        task = "-" if r.task_value is None else f"{r.task_value:.3f} {r.task_metric.rsplit('_', 1)[-1]}"
        cls = "pass" if r.verdict == "pass" else "fail" if r.verdict.startswith("fail") else "none"
        latency = ([_fmt(r.p50_ms, ".1f"), _fmt(r.p90_ms, ".1f")] if r.p50_ms is not None
                   else ['<span class="none">not profiled</span>', ""])
        cells = [html.escape(c) for c in (r.artifact, r.target, r.precision, _fmt(r.size_mb, ".1f"))]
        cells += latency + [html.escape(c) for c in (_fmt(r.worst_rel_l2, ".1e"), task)]
        body.append(f'<tr><td>{cells[0]}</td><td class="{cls}">{html.escape(r.verdict)}</td>'
                    + "".join(f"<td>{c}</td>" for c in cells[1:]) + "</tr>")
    figures = "".join(f'<figure{" class=wide" if wide else ""}><figcaption>{html.escape(t)}</figcaption>'
                      f'<img class=page alt="{html.escape(t)}" src="data:image/png;base64,{page}">'
                      f'<img class=phone alt="{html.escape(t)}" src="data:image/png;base64,{phone}"></figure>'
                      for t, (page, phone, wide) in images.items())
    devices = "; ".join(sorted({r.device for r in rows if r.device})) or "not profiled"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgehmr report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
td.pass {{ background: #e3f4e1; }} td.fail {{ background: #fbe3e1; }} td.none, .none {{ color: #888; }}
.plots {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 1.5rem; }}
figure {{ margin: 0; }} figure.wide {{ grid-column: 1 / -1; }} figcaption {{ font-weight: 600; margin-bottom: 0.4rem; }}
img {{ width: 100%; height: auto; }} img.phone {{ display: none; }}
@media (max-width: 700px) {{ img.page {{ display: none; }} img.phone {{ display: block; }} body {{ margin: 0.8rem; }} }}
</style></head><body>
<h1>edgehmr report</h1>
<p>{len(rows)} artifact(s); measured on: {html.escape(devices)}</p>
<div class="scroll"><table><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>
<tbody>{"".join(body)}</tbody></table></div>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
<div class="plots">{figures}</div>
</body></html>
"""


def make_report(run_dirs: list[Path], out_dir: Path, notes: list[str] = ()) -> dict[str, Path]:
    """``notes``: lines shown under the table (e.g. combinations ``edgehmr bench`` skipped, with the reason)."""
    from edgehmr.sat.tables import demotion_note

    artifacts = find_artifacts(run_dirs)
    rows = [row_for(a) for a in artifacts]
    notes = list(notes) + [f"{a.name}: {note}" for a in artifacts
                           for note in demotion_note(read_metadata(a).get("buckets") or {"can_demote": False})]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    write_json(paths["json"], {"rows": [asdict(r) for r in rows], "notes": list(notes)})
    paths["md"].write_text(markdown(rows, notes))
    paths["html"].write_text(html_page(rows, plots(rows), notes))
    return paths
