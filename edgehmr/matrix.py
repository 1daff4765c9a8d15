"""``edgehmr bench``: convert, validate and profile a matrix of cells, then one report.

A cell is a model x target x precision (x conversion options, x checks) on one device. The matrix comes from the
command's flags (every model x target x precision) or from a TOML file (``--config``; bench/hierarchical_matrix.toml
is one). Each model gets one FP32 reference bundle, each conversion one artifact, each cell one validate/profile
task on its device; the executor (:mod:`edgehmr.executors`) decides where those run.

Every finished cell is appended to the matrix's results file (JSON lines) under the hash of everything it depends
on; a rerun skips the cells found there and finds finished conversions in the store, so an interrupted matrix
resumes. A cell's artifact folder (with its validation.json and profile.json) is written whole or not at all, and
only after that is the cell recorded, so nothing half-written reaches the report.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edgehmr.errors import InputError, SpecError
from edgehmr.matrix_tasks import Cell, Settings, cell_json

RESULTS_FILE = "cells.jsonl"
STATUSES = ("pass", "fail", "error", "skipped")  # skipped: the target refuses the model or precision


@dataclass
class Plan:
    cells: list[Cell]
    settings: Settings
    results: Path | None = None  # default: <out>/cells.jsonl
    keep_artifacts: bool = True  # False: record the cells only (a matrix of hundreds of artifacts)

    def needs_of(self) -> set:
        from edgehmr.executors import Needs

        needs = {Needs("build")}
        if any(c.validate for c in self.cells):
            needs.add(Needs("reference"))
        return needs | {Needs(f"device:{c.device}") for c in self.cells}


@dataclass
class Record:
    """One cell's result, as the results file holds it."""
    key: str
    model: str
    cell: str
    target: str
    precision: str
    device: str
    status: str
    detail: str
    seconds: float = 0.0
    ran_on: dict = field(default_factory=dict)
    artifact: str | None = None  # relative to the output folder


def cell_key(cell: Cell, settings: Settings) -> str:
    """The hash of everything a cell's result depends on."""
    text = json.dumps({"cell": cell_json(cell), "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def conversion_key(cell: Cell, settings: Settings) -> str:
    text = json.dumps({"conversion": cell.conversion(), "inputs": settings.inputs, "calib_count": settings.calib_count},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_key(model: str, settings: Settings) -> str:
    text = json.dumps({"model": model, "inputs": settings.inputs, "count": settings.count, "seed": settings.seed},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- building the matrix -------------------------------------------------------------------------------------

def parse_devices(text: str | None, targets: list[str]) -> dict[str, list[str]]:
    """``--devices``: 'NAME' (every target on NAME) or 'TARGET=NAME' entries, comma-separated."""
    if not text:
        return {t: ["local"] for t in targets}
    devices: dict[str, list[str]] = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        target, _, name = entry.rpartition("=")
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise InputError(f"--devices entry '{entry}' is not NAME or TARGET=NAME (letters, digits, - _ .).")
        for t in ([target] if target else targets):
            if target and target not in targets:
                raise InputError(f"--devices names target '{target}', which this matrix does not convert "
                                 f"({', '.join(targets)}).")
            devices.setdefault(t, [])
            if name not in devices[t]:
                devices[t].append(name)
    return {t: devices.get(t, []) for t in targets if devices.get(t)}


def plan_from_flags(models: list[str], targets: list[str], precisions: list[str], devices: str | None,
                    settings: Settings) -> Plan:
    by_target = parse_devices(devices, targets)
    cells = [Cell(m, t, p, device=d) for m in models for t in targets if t in by_target for p in precisions
             for d in by_target[t]]
    return Plan(cells, settings)


CELL_KEYS = {f.name for f in fields(Cell)} - {"model", "name", "device"}
SETTING_KEYS = {f.name for f in fields(Settings)}
CONFIG_KEYS = {"models", "cells", "results", "devices", "profile", "keep_artifacts"} | SETTING_KEYS


def load_config(path: Path, devices: str | None, overrides: dict) -> Plan:
    """A TOML matrix: ``models`` (ids or patterns such as 'hmr2-swin-*', cheapest first), ``[cells.NAME]`` tables
    (target, precision, max_drift, search_steps, checks, validate, profile), settings (count, seed, calib_count,
    runs, warmup, inputs) and ``results`` (a JSON-lines file, relative to the config)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from edgehmr.matrix_tasks import CHECKS
    from edgehmr.models import list_models, model_cost

    try:
        config = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"cannot read the matrix config {path}: {e}") from None
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(CONFIG_KEYS))}.")
    known = list_models(include_test=True)
    models: list[str] = []
    for pattern in config.get("models") or []:
        found = [m for m in known if fnmatch.fnmatchcase(m, str(pattern))]
        if not found:
            raise InputError(f"{path}: models entry '{pattern}' matches no registered model ('edgehmr models').")
        models += [m for m in found if m not in models]
    models.sort(key=lambda m: model_cost(m)[1])
    if overrides.get("models"):
        models = [m for m in models if any(fnmatch.fnmatchcase(m, p) for p in overrides["models"])]
    settings = Settings(**{k: v for k, v in config.items() if k in SETTING_KEYS})
    tables = config.get("cells") or {}
    if not isinstance(tables, dict) or not tables:
        raise InputError(f"{path}: give the cells as [cells.NAME] tables with a target and a precision.")
    if overrides.get("cells"):
        missing = set(overrides["cells"]) - set(tables)
        if missing:
            raise InputError(f"--cells {', '.join(sorted(missing))}: not in {path} ({', '.join(tables)}).")
        tables = {n: t for n, t in tables.items() if n in overrides["cells"]}
    by_target = parse_devices(devices or config.get("devices"),
                              list(dict.fromkeys(str(t.get("target")) for t in tables.values())))
    cells = []
    for name, table in tables.items():
        bad = set(table) - CELL_KEYS
        if bad or "target" not in table or "precision" not in table:
            extra = f" (not {', '.join(sorted(bad))})" if bad else ""
            raise InputError(f"{path}: [cells.{name}] needs target and precision and knows "
                             f"{', '.join(sorted(CELL_KEYS))}{extra}.")
        unknown_checks = set(table.get("checks", ())) - set(CHECKS)
        if unknown_checks:
            raise InputError(f"{path}: [cells.{name}] check(s) {', '.join(sorted(unknown_checks))}; known: "
                             f"{', '.join(CHECKS)}.")
        table = {"profile": config.get("profile", True)} | table | {"checks": tuple(table.get("checks", ()))}
        cells += [Cell(m, name=name, device=d, **table) for d in by_target.get(table["target"], []) for m in models]
    results = config.get("results")
    return Plan(sorted(cells, key=lambda c: models.index(c.model)), settings,
                (Path(path).parent / results) if results else None, bool(config.get("keep_artifacts", True)))


# ---- results -------------------------------------------------------------------------------------------------

def load_records(path: Path) -> dict[str, Record]:
    """The finished cells; a last line cut short by a crash is left out (that cell runs again)."""
    records: dict[str, Record] = {}
    if not path.exists():
        return records
    names = {f.name for f in fields(Record)}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            record = Record(**{k: v for k, v in row.items() if k in names})
        except (json.JSONDecodeError, TypeError):
            continue
        records[record.key] = record
    return records


def append_record(path: Path, record: Record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(asdict(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---- running it ----------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    records: list[Record]


def run_matrix(plan: Plan, out_dir: Path, executor, share: str | None = None,
               log: Callable[[str], None] = print) -> Outcome:
    """Run every cell of ``plan`` not already in its results file; report them all."""
    from edgehmr.executors import RETRIES, Needs
    from edgehmr.matrix_tasks import Failed, convert_task, device_task, reference_task
    from edgehmr.spec import resolve_spec

    out_dir = Path(out_dir)
    results = plan.results or out_dir / RESULTS_FILE
    finished = load_records(results)
    local_store = Path(share) if share else out_dir / ".store"
    # where tasks write: a folder every node sees, or (tasks on other machines, no share) back as bytes
    task_store = str(local_store) if share or executor.store_is_local else None
    records: dict[str, Record] = {}
    todo: list[tuple[Cell, str]] = []
    for cell in plan.cells:
        key = cell_key(cell, plan.settings)
        if key in finished:
            records[key] = finished[key]
            continue
        try:
            resolve_spec(cell.model, cell.target, cell.precision, out_dir=str(out_dir),
                         calib=plan.settings.inputs, calib_count=plan.settings.calib_count)
        except SpecError as e:
            record = Record(key, cell.model, cell.label, cell.target, cell.precision, cell.device, "skipped", str(e))
            _finish(results, records, record, log)
            continue
        todo.append((cell, key))
    if todo:
        executor.check(Plan([c for c, _ in todo], plan.settings).needs_of())
        log(f"{len(todo)} cell(s) to run on {executor.name}; {len(records)} already done or skipped")

    refs: dict[str, object] = {}  # model -> handle, then Packed
    convs: dict[str, object] = {}  # conversion key -> handle, then (Packed, seconds, note)
    waiting: dict[object, tuple[str, str]] = {}  # handle -> (kind, key)
    cells_of: dict[str, list[tuple[Cell, str]]] = {}

    def submit(kind: str, key: str, fn, args, needs) -> None:
        waiting[executor.submit(fn, args, needs)] = (kind, key)

    for cell, key in todo:
        ckey = conversion_key(cell, plan.settings)
        cells_of.setdefault(ckey, []).append((cell, key))
        if ckey not in convs:
            convs[ckey] = None
            submit("convert", ckey, convert_task, (cell, plan.settings, ckey, task_store), Needs("build"))
        if cell.validate and cell.model not in refs:
            refs[cell.model] = None
            rkey = reference_key(cell.model, plan.settings)
            submit("reference", cell.model, reference_task, (cell.model, plan.settings, rkey, task_store),
                   Needs("reference"))
    pending_cells: dict[str, tuple[Cell, str]] = {}  # cell key -> (cell, conversion key), device task running
    deferred: list[tuple[str, tuple, Needs]] = []  # device tasks not submitted yet (see flush)

    def ready(ckey: str) -> None:
        """Submit the device tasks of a conversion whose artifact and references are in."""
        done = convs[ckey]
        for cell, key in list(cells_of.get(ckey, [])):
            if cell.validate and refs.get(cell.model) is None:
                continue
            cells_of[ckey].remove((cell, key))
            failure = done if isinstance(done, Failed) else (refs[cell.model] if cell.validate and
                                                              isinstance(refs[cell.model], Failed) else None)
            if failure is not None:
                _finish(results, records, Record(key, cell.model, cell.label, cell.target, cell.precision,
                                                 cell.device, "error", f"{failure.stage}: {failure.error}",
                                                 ran_on={"node": failure.node}), log)
                continue
            pending_cells[key] = (cell, ckey)
            bundle = refs[cell.model] if cell.validate else None
            deferred.append((key, (cell, plan.settings, done[0], bundle), Needs(f"device:{cell.device}",
                                                                              exclusive=cell.profile)))
        flush()

    def flush() -> None:
        """Submit the device tasks; where they share the cores of the conversions (one machine), a profiling task
        waits until every conversion is done, so the conversions run side by side and the timings alone."""
        converting = any(v is None for v in convs.values())
        for item in list(deferred):
            key, args, needs = item
            if needs.exclusive and executor.shares_cores and converting:
                continue
            deferred.remove(item)
            submit("device", key, device_task, args, needs)

    while waiting:
        for handle in executor.wait(list(waiting)):
            kind, key = waiting.pop(handle)
            try:
                value = executor.result(handle)
            except Exception as e:  # the task's worker or node was lost more often than the retries allow
                value = Failed(kind, f"lost its worker {1 + RETRIES} time(s): {type(e).__name__}: {e}")
            if kind == "reference":
                refs[key] = value
                if not isinstance(value, Failed):
                    log(f"{key}: FP32 reference ready")
                for ckey in convs:
                    if convs[ckey] is not None:
                        ready(ckey)
            elif kind == "convert":
                convs[key] = value
                flush()
                if not isinstance(value, Failed):
                    log(f"converted {value[0].name} ({value[1]} s)" + (f"; {value[2]}" if value[2] else ""))
                ready(key)
            else:
                cell, ckey = pending_cells.pop(key)
                _finish(results, records, _device_record(cell, key, value, convs[ckey], out_dir, local_store,
                                                         plan.keep_artifacts), log)
    if not share and not plan.keep_artifacts:
        shutil.rmtree(local_store, ignore_errors=True)
    return Outcome([records[cell_key(c, plan.settings)] for c in plan.cells])


def _device_record(cell: Cell, key: str, value, converted, out_dir: Path, local_store: Path, keep: bool) -> Record:
    """Write the cell's artifact folder (the artifact, its validation.json and profile.json) whole, then say so."""
    from edgehmr.artifact import staged_dir, write_json
    from edgehmr.matrix_tasks import Failed, copy_folder, materialize
    from edgehmr.profile import PROFILE_FILE
    from edgehmr.validate import VALIDATION_FILE

    base = Record(key, cell.model, cell.label, cell.target, cell.precision, cell.device, "error", "")
    if isinstance(value, Failed):
        return replace(base, detail=f"{value.stage}: {value.error}", ran_on={"node": value.node})
    packed, convert_s, note = converted
    detail = "; ".join(d for d in (note, value.detail) if d)
    base = replace(base, status=value.status, detail=detail, seconds=round(convert_s + value.seconds, 1),
                   ran_on=value.ran_on)
    if not keep:
        return base
    final = out_dir / "artifacts" / cell.device / f"{cell.model}-{cell.label}"
    with staged_dir(final) as stage:
        stage.rmdir()
        copy_folder(materialize(packed, local_store), stage, link=True)
        for name, data in ((VALIDATION_FILE, value.validation), (PROFILE_FILE, value.profile)):
            if data is not None:
                write_json(stage / name, data)
    return replace(base, artifact=str(final.relative_to(out_dir)))


def _finish(results: Path, records: dict[str, Record], record: Record, log: Callable[[str], None]) -> None:
    append_record(results, record)
    records[record.key] = record
    where = f" on {record.device}" + (f" ({record.ran_on['node']})" if record.ran_on.get("node") else "")
    log(f"{record.model} {record.cell}{where}: {record.status}" + (f" - {record.detail}" if record.detail else ""))


def report_matrix(outcome: Outcome, out_dir: Path) -> dict[str, Path]:
    from edgehmr.report import make_report

    done = [out_dir / r.artifact for r in outcome.records if r.artifact and (out_dir / r.artifact).is_dir()]
    if not done:
        raise SpecError("no cell produced an artifact; see the reasons above.")
    notes = [f"{r.model} {r.cell} on {r.device}: {r.status} ({r.detail})" for r in outcome.records
             if r.status != "pass" or r.detail.startswith("search") or "not timed" in r.detail]
    return make_report(done, out_dir, notes)


def summary_table(plan: Plan, records: dict[str, Record]) -> str:
    """The model x cell table of a matrix's results (what docs/models.md quotes)."""
    from edgehmr.models import model_cost

    names = list(dict.fromkeys(c.label for c in plan.cells))
    models = list(dict.fromkeys(c.model for c in plan.cells))
    by_cell = {(c.model, c.label): records.get(cell_key(c, plan.settings)) for c in plan.cells}
    mark = {"pass": "pass", "fail": "**FAIL**", "skipped": "refused", "error": "**ERROR**"}
    lines = ["| model | GMACs | " + " | ".join(names) + " |", "|---|---:|" + "---|" * len(names)]
    for m in models:
        row = [mark[r.status] if (r := by_cell.get((m, n))) else ("not run" if (m, n) in by_cell else "-")
               for n in names]
        lines.append(f"| {m} | {model_cost(m)[1]:.2f} | " + " | ".join(row) + " |")
    done = [r for r in by_cell.values() if r]
    lines += [""] + [f"- {r.model} {r.cell}: {r.status}: {r.detail}" for r in done if r.status in ("fail", "error")]
    counts = ", ".join(f"{sum(r.status == s for r in done)} {s}" for s in STATUSES)
    lines.append(f"\n{len(done)} of {len(by_cell)} cells run: {counts}")
    return "\n".join(lines)
