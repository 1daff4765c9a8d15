"""``edgehmr report``: merge what ``validate`` and ``profile`` wrote into one table people read.

Every artifact folder found under the given run directories (the folder itself, or its direct sub-folders)
becomes one row: model, target, precision, what executed it, size, latency (p50/p90 from ``profile.json``),
drift (worst output relative L2 and task drift from ``validation.json``) and a one-line verdict against the
tolerances. Written as ``report.json`` (machines), ``report.md`` (READMEs, pull requests) and a self-contained
``report.html`` with the plots inline (latency per artifact, drift against latency, SAT-HMR latency per bucket,
drift per joint).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgehmr.artifact import METADATA, read_metadata, write_json
from edgehmr.tasks import KEYPOINTS, MESH, artifact_task
from edgehmr.errors import InputError
from edgehmr.jsonfile import read_json_object

VALIDATION_FILE = "validation.json"
PROFILE_FILE = "profile.json"
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


def find_artifacts(run_dirs: list[Path]) -> list[Path]:
    found: list[Path] = []
    for d in run_dirs:
        d = Path(d)
        if not d.is_dir():
            raise InputError(f"{d} is not a folder; give artifact folders or folders that hold them.")
        candidates = [d] if (d / METADATA).is_file() else sorted(p for p in d.iterdir() if (p / METADATA).is_file())
        found += [c for c in candidates if c not in found]
    if not found:
        raise InputError(f"No artifact folders (with {METADATA}) in {', '.join(map(str, run_dirs))}; "
                         f"run 'edgehmr convert' first.")
    return found


def _read(path: Path) -> dict | None:
    return read_json_object(path, "an edgehmr result", "re-run the command that wrote it.") if path.is_file() else None


def row_for(artifact: Path) -> Row:
    meta = read_metadata(artifact)
    val, prof = _read(artifact / VALIDATION_FILE), _read(artifact / PROFILE_FILE)
    try:
        return _row(artifact, meta, val, prof)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # reason: validation.json and profile.json are edgehmr's own results; one that lacks what they hold was
        # edited or cut short.
        raise InputError(f"{artifact}: {VALIDATION_FILE} or {PROFILE_FILE} is damaged ({type(e).__name__}: {e}); "
                         f"re-run 'edgehmr validate' / 'edgehmr profile'.") from None


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
               (prof or {}).get("execution") or execution, (prof or {}).get("size_mb"),
               ((prof or {}).get("latency") or {}).get("p50_ms"), ((prof or {}).get("latency") or {}).get("p90_ms"),
               worst, metric if task is not None else None, task, verdict, buckets,
               _device_label((prof or {}).get("device")), (val or {}).get("per_joint"))


def _device_label(device: dict | None) -> str | None:
    if not device:
        return None
    if "cpu" not in device:  # imported from a native tool: what the files (or --device) said
        return ", ".join(str(v) for v in device.values()) or None
    return f"{device['cpu']}, {device['cores']} cores, {device['os']}"


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


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(rows: list[Row]) -> dict[str, str]:
    """Title -> base64 PNG. Only plots with data are drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    out = {}
    timed = [r for r in rows if r.p50_ms is not None]
    if timed:
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(timed) + 1.2))
        ax.barh([r.artifact for r in timed], [r.p50_ms for r in timed], color="#4c78a8")
        # Imports from tools that report no p90 (benchmark_app) get no tick.
        ax.errorbar([r.p90_ms if r.p90_ms is not None else float("nan") for r in timed], range(len(timed)), fmt="|",
                    color="#333", label="p90")
        ax.set_xlabel("latency p50 (ms); tick: p90")
        ax.invert_yaxis()
        out["Latency per artifact"] = _png(fig)
        plt.close(fig)
    both = [r for r in timed if r.task_value is not None]
    both = [r for r in both if r.task_metric == both[0].task_metric] if both else []  # one unit per axis
    if both:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in both:
            ax.scatter(r.p50_ms, r.task_value, color="#e45756" if r.verdict.startswith("fail") else "#54a24b")
            ax.annotate(f"{r.target} {r.precision}", (r.p50_ms, r.task_value), fontsize=7,
                        textcoords="offset points", xytext=(4, 3))
        ax.set_xlabel("latency p50 (ms)")
        ax.set_ylabel(f"drift vs FP32 ({both[0].task_metric})")
        ax.set_title("accuracy drift vs latency (green: within tolerance)")
        out["Drift vs latency"] = _png(fig)
        plt.close(fig)
    bucketed = [r for r in rows if any("p50_ms" in b for b in r.buckets.values())]
    for r in bucketed:
        names = [n for n, b in r.buckets.items() if "p50_ms" in b and n != "stage1"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(names, [r.buckets[n]["p50_ms"] for n in names], color="#72b7b2")
        if "stage1" in r.buckets:
            ax.axhline(r.buckets["stage1"]["p50_ms"], color="#333", linestyle="--", label="stage 1")
            ax.legend()
        ax.set_ylabel("p50 ms")
        ax.set_title(f"{r.artifact}: stage 2 per bucket")
        ax.tick_params(axis="x", rotation=30)
        out[f"Latency per bucket: {r.artifact}"] = _png(fig)
        plt.close(fig)
    out |= _per_joint_plots(rows, plt)
    return out


def _per_joint_plots(rows: list[Row], plt) -> dict[str, str]:
    """One plot per joint set (SMPL joints in mm, COCO keypoints in px): mean drift per joint, a line per artifact,
    so a target that breaks the hands or the feet shows at a glance."""
    out = {}
    metrics = dict.fromkeys(r.per_joint["metric"] for r in rows if r.per_joint)
    for metric in metrics:
        same = [r for r in rows if r.per_joint and r.per_joint["metric"] == metric]
        names = same[0].per_joint["names"]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(names) + 1.5), 3.8))
        for r in same:
            ax.plot(range(len(names)), r.per_joint["mean"], marker="o", markersize=3,
                    label=f"{r.target} {r.precision}" if len({x.model for x in same}) == 1 else r.artifact)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"mean drift ({same[0].per_joint['unit']})")
        ax.set_yscale("symlog", linthresh=1e-3)  # fp32 sits near zero, INT8 orders of magnitude above
        ax.set_title(f"per-joint drift vs FP32 ({metric})")
        ax.legend(fontsize=7)
        out[f"Per-joint drift ({metric})"] = _png(fig)
        plt.close(fig)
    return out


def html_page(rows: list[Row], images: dict[str, str], notes: list[str] = ()) -> str:
    head = ["artifact", "target", "precision", "size MB", "p50 ms", "p90 ms", "worst rel L2", "task drift", "verdict"]
    body = []
    for r in rows:
        task = "-" if r.task_value is None else f"{r.task_value:.3f} ({r.task_metric})"
        cls = "pass" if r.verdict == "pass" else "fail" if r.verdict.startswith("fail") else "none"
        cells = [r.artifact, r.target, r.precision, _fmt(r.size_mb, ".1f"), _fmt(r.p50_ms, ".1f"),
                 _fmt(r.p90_ms, ".1f"), _fmt(r.worst_rel_l2, ".1e"), task]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                    + f'<td class="{cls}">{html.escape(r.verdict)}</td></tr>')
    figures = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}">'
                      f"<figcaption>{html.escape(t)}</figcaption></figure>" for t, b in images.items())
    devices = "; ".join(sorted({r.device for r in rows if r.device})) or "not profiled"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgehmr report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
td.pass {{ background: #e3f4e1; }} td.fail {{ background: #fbe3e1; }} td.none {{ color: #888; }}
figure {{ display: inline-block; margin: 1rem; }} img {{ max-width: 640px; }}
</style></head><body>
<h1>edgehmr report</h1>
<p>{len(rows)} artifact(s); measured on: {html.escape(devices)}</p>
<table><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead><tbody>{"".join(body)}</tbody></table>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
{figures}
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
