"""Accuracy-aware INT8 (``convert -p int8 --max-drift``): the fewest layers kept float that meet a drift budget.

The search holds out the last quarter of the calibration crops and makes FP32 references for them with the loaded
model (the user's weights). Then, step by step:

1. convert with the current recipe, calibrated on the other crops (the one pipeline: a searched artifact is
   exactly what ``convert --recipe recipe.json`` writes);
2. measure the task drift on the held-out crops (``validate``'s numbers, against the budget);
3. while the budget is not met, ask the target's ``debug drift`` probe which layers add the most error and keep the
   Linear/Conv module behind the top one float (a scope appended to the recipe); after a step that barely helped,
   twice as many (:func:`layers_per_step`).

It stops when the budget holds, when no ranked layer is left to keep float, or after ``steps`` steps. Every step
is a whole conversion, so the search costs about (steps + 1) conversions, validations and drift probes.

The budget is validate's task metrics (``mpjpe=5mm,cam_t=50mm``, ``keypoints=2px``); left out, the INT8 rows of
the tolerance table (:mod:`edgehmr.tolerances`) for every metric of the model's task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from edgehmr import tolerances
from edgehmr.artifact import METADATA, VALIDATION_FILE, artifact_mb, file_hashes, read_metadata, staged_dir, write_json
from edgehmr.calibration.dataset import CalibrationSet
from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.capabilities import get_target
from edgehmr.errors import EdgeHMRError, SpecError
from edgehmr.progress import step
from edgehmr.tasks import CROPS

RECIPE_FILE = "recipe.json"
DEFAULT_STEPS = 8
HELD_OUT_SHARE = 4  # one calibration crop in this many is held out to measure drift
MIN_HELD_OUT = 2
STALL_CUT = 0.1  # a step that cuts the worst drift / budget ratio by less than this doubles the next step's layers

# Budget names -> (validate's task metric, its unit).
BUDGET_METRICS = {
    "mpjpe": ("mpjpe_mm", "mm"), "pa_mpjpe": ("pa_mpjpe_mm", "mm"), "pve": ("pve_mm", "mm"),
    "cam_t": ("cam_t_mm", "mm"), "keypoints": ("kp2d_px", "px"), "kp2d": ("kp2d_px", "px"),
}
QUANTIZED_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


class BudgetNotMet(EdgeHMRError):
    """The search ended without meeting the budget; the message carries the best recipe and its drift, ``result``
    the whole search."""

    exit_code = 1

    def __init__(self, message: str, result: "SearchResult"):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class DriftBudget:
    limits: dict[str, float]  # validate's task metric -> the largest drift allowed

    def over(self, task: dict[str, dict]) -> dict[str, float]:
        """The metrics of a validation report's ``task`` section that exceed the budget (value per metric)."""
        values = {m: float(task[m]["value"]) for m in self.limits}
        return {m: v for m, v in values.items() if not (math.isfinite(v) and v <= self.limits[m])}

    def excess(self, drift: dict[str, float]) -> float:
        """The worst value / limit ratio: how far a step is from the budget (<= 1: met)."""
        ratios = [drift[m] / lim if lim > 0 else (0.0 if drift[m] == 0 else math.inf) for m, lim in self.limits.items()]
        return max((r if math.isfinite(r) else math.inf for r in ratios), default=0.0)

    def describe(self) -> str:
        return ", ".join(f"{m} <= {v:g}" for m, v in self.limits.items())


def parse_budget(text: str | None, precision: str, metrics: tuple[str, ...]) -> DriftBudget:
    """``mpjpe=5mm,cam_t=50mm`` / ``keypoints=2px``; None or ``default``: the tolerance table's row for
    ``precision`` over the task's ``metrics``."""
    if text is None or text.strip() in ("", "default"):
        return DriftBudget({m: tolerances.task_tolerance(precision, m) for m in metrics})
    limits = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip().lower()
        if not sep or name not in BUDGET_METRICS:
            raise SpecError(f"--max-drift: '{item.strip()}' is not NAME=VALUE with NAME one of "
                            f"{', '.join(BUDGET_METRICS)} (e.g. mpjpe=5mm,cam_t=50mm or keypoints=2px).")
        metric, unit = BUDGET_METRICS[name]
        if metric not in metrics:
            known = [n for n, (m, _) in BUDGET_METRICS.items() if m in metrics]
            raise SpecError(f"--max-drift: this model is not measured in {name}; its budget names: "
                            f"{', '.join(known)}.")
        number = value.strip().lower().removesuffix(unit)
        try:
            bound = float(number)
        except ValueError:
            raise SpecError(f"--max-drift: '{value.strip()}' for {name} is not a number of {unit} "
                            f"(e.g. {name}=5{unit}).") from None
        if not math.isfinite(bound) or bound < 0:
            raise SpecError(f"--max-drift: {name} must be a finite number >= 0 (got {value.strip()}).")
        limits[metric] = bound
    return DriftBudget(limits)


@dataclass(frozen=True)
class SearchPlan:
    budget: DriftBudget
    steps: int = DEFAULT_STEPS
    keep_best: bool = False


def plan_search(spec, info, max_drift: str | None, steps: int = DEFAULT_STEPS, keep_best: bool = False) -> SearchPlan:
    """Check that ``spec`` can be searched (INT8 on a target with a drift probe, a crop model) and parse the
    budget; every refusal is one line before anything is loaded."""
    from edgehmr.drift import drift_targets
    from edgehmr.validate import TASK_METRICS

    caps = get_target(spec.target)
    if spec.recipe is None:
        raise SpecError(f"--max-drift searches INT8 recipes (-p int8 or int8-weights), not {spec.precision.value}.")
    if info.task.input != CROPS:
        raise SpecError(f"--max-drift is not available for {spec.model} yet (its search would run per bucket); "
                        f"convert it with the default recipe and check it with 'edgehmr validate'.")
    if caps.drift is None:
        raise SpecError(f"--max-drift needs a per-layer drift probe, which {caps.id} has not; search on a target "
                        f"that has one ({', '.join(drift_targets())}) and pass its recipe.json with --recipe.")
    if steps < 0:
        raise SpecError(f"--search-steps must be at least 0 (got {steps}).")
    return SearchPlan(parse_budget(max_drift, spec.precision.value, TASK_METRICS[info.task.output]), steps, keep_best)


@dataclass
class SearchStep:
    kept_float: list[str]  # scopes the search added to the starting recipe so far
    drift: dict[str, float]
    over_budget: list[str]
    float_weights_pct: float  # share of the Linear/Conv weights the step's recipe keeps float
    size_mb: float
    seconds: float


@dataclass
class SearchResult:
    budget: DriftBudget
    start_recipe: QuantRecipe
    steps: list[SearchStep] = field(default_factory=list)
    stopped: str = ""
    best: int = 0  # index of the step kept: the first that met the budget, else the closest

    @property
    def met(self) -> bool:
        return bool(self.steps) and not self.steps[self.best].over_budget

    def recipe(self) -> QuantRecipe:
        return searched_recipe(self.start_recipe, self.steps[self.best].kept_float)

    def to_json(self) -> dict:
        return {"budget": self.budget.limits, "met": self.met, "stopped": self.stopped, "best_step": self.best,
                "start_recipe": self.start_recipe.to_json(), "recipe": self.recipe().to_json(),
                "steps": [dataclasses.asdict(s) for s in self.steps]}

    @classmethod
    def from_json(cls, record: dict) -> "SearchResult":
        """The search as an artifact's ``quantization.search`` records it."""
        return cls(DriftBudget(record["budget"]), QuantRecipe.from_json(record["start_recipe"]),
                   [SearchStep(**s) for s in record["steps"]], record["stopped"], record["best_step"])

    def summary(self) -> str:
        """One line: the verdict, the steps, what the kept step keeps float and its held-out drift."""
        best = self.steps[self.best]
        drift = ", ".join(f"{m} {v:.3g}" for m, v in best.drift.items())
        verdict = "budget met" if self.met else f"budget not met ({self.stopped})"
        return (f"search: {verdict} after {len(self.steps)} step(s), kept float {best.kept_float or 'nothing'}; "
                f"held-out drift {drift}")


def searched_recipe(start: QuantRecipe, added: list[str]) -> QuantRecipe:
    """``start`` with the scopes the search keeps float appended (named so when there are any)."""
    if not added:
        return start
    return dataclasses.replace(start, name=f"{start.name}+searched",
                               keep_float_scopes=start.keep_float_scopes + tuple(added))


def float_weights_pct(recipe: QuantRecipe, model: nn.Module) -> float:
    """Percent of the model's Linear/Conv weights inside the recipe's float scopes: what the recipe gives up of
    INT8's size (and most of its speed)."""
    sizes = [(name, m.weight.numel()) for name, m in model.named_modules() if isinstance(m, QUANTIZED_MODULES)]
    total = sum(n for _, n in sizes)
    kept = sum(n for name, n in sizes if recipe.covers(name))
    return round(100.0 * kept / total, 2) if total else 0.0


def held_out_count(samples: int, batch: int) -> int:
    held = max(MIN_HELD_OUT, samples // HELD_OUT_SHARE)
    held -= held % batch
    if held < max(batch, MIN_HELD_OUT) or samples - held < batch:
        raise SpecError(f"--max-drift holds out a quarter of the calibration crops to measure drift; {samples} "
                        f"crops at batch {batch} are too few (give --calib-count 16 or more).")
    return held


def next_scopes(layers: list[dict], recipe: QuantRecipe, model: nn.Module, prefix: str, count: int) -> list[str]:
    """The Linear/Conv modules behind the ``count`` highest-ranked layers that are still quantized (layers ranked
    by the error each added; ``prefix``: the export module's path to the model, stripped)."""
    found: list[str] = []
    for layer in layers:
        scope = layer.get("scope") or ""
        if prefix and scope.startswith(prefix):
            scope = scope[len(prefix):]
        if not scope or layer["added"] <= 0 or recipe.covers(scope) or scope in found:
            continue
        try:
            module = model.get_submodule(scope)
        except AttributeError:
            continue
        if isinstance(module, QUANTIZED_MODULES):
            found.append(scope)
            if len(found) == count:
                break
    return found


def layers_per_step(current: int, excess_before: float, excess_now: float) -> int:
    """How many layers the next step keeps float: doubled after a step that did not cut the worst drift / budget
    ratio by :data:`STALL_CUT`. reason: where drift is spread thinly over many layers (hmr2-vit-s on ONNX Runtime,
    seeded weights: single layers moved MPJPE by under 0.1 mm of 1.3), one layer per step would spend the whole
    step limit; a single fragile layer is still found alone, as its step cuts the drift at once."""
    return current * 2 if excess_now > (1 - STALL_CUT) * excess_before else current


def _next_scopes_or_reason(folder: Path, bundle: Path, held: int, recipe: QuantRecipe, model: nn.Module,
                           prefix: str, count: int) -> tuple[list[str], str]:
    """(the scopes to keep float next, "") or ([], why the search stops here)."""
    from edgehmr.drift import debug_drift

    try:
        # not strict: the ranking only proposes the next layers; the next step measures the artifact itself
        layers = debug_drift(folder, bundle, samples=held, top=1 << 30, strict=False)["layers"]
    except EdgeHMRError as e:
        return [], f"the layers could not be ranked: {e}"
    scopes = next_scopes(layers, recipe, model, prefix, count)
    return (scopes, "") if scopes else ([], "no quantized layer left among those that add drift")


def held_out_bundle(loaded, images: np.ndarray, folder: Path) -> Path:
    from edgehmr.reference import run_reference, save_bundle

    outputs = run_reference(loaded, images)
    names = [f"held-out-{i}" for i in range(len(images))]
    return save_bundle(folder, loaded, {"image": images}, outputs, loaded.info.crop.to_json(),
                       "held-out calibration crops (convert --max-drift)", names, "cpu")


def search(spec, loaded, calibration: CalibrationSet, plan: SearchPlan, workdir: Path) -> tuple[SearchResult, Path]:
    """Run the search in ``workdir``; returns the result and the kept step's artifact folder. Only that step's
    folder is kept along the way (published-size artifacts are GBs each)."""
    from edgehmr.convert import MESH_MODEL_SCOPE, convert
    from edgehmr.validate import validate

    held = held_out_count(len(calibration.images), spec.batch)
    tune = dataclasses.replace(calibration, images=calibration.images[:-held])
    step(f"FP32 references for {held} held-out calibration crops")
    bundle = held_out_bundle(loaded, calibration.images[-held:], workdir / "held-out")
    smpl = spec.smpl if spec.with_mesh and spec.smpl != "synthetic" else None
    prefix = f"{MESH_MODEL_SCOPE}." if spec.with_mesh else ""
    result = SearchResult(plan.budget, spec.recipe)
    statistics = workdir / "statistics"  # calibration statistics the steps share, where the converter keeps them
    statistics.mkdir()
    recipe, added, growth, kept = spec.recipe, [], 1, None
    while True:
        i = len(result.steps)
        started = time.perf_counter()
        step(f"search step {i}: converting with {len(added)} layer(s) kept float by the search")
        folder = convert(dataclasses.replace(spec, recipe=recipe, out_dir=str(workdir / f"step-{i}")), loaded, tune,
                         statistics)
        step(f"search step {i}: measuring drift on {held} held-out crops")
        report = validate(folder, bundle, smpl)
        drift = {m: float(report.task[m]["value"]) for m in plan.budget.limits}
        over = sorted(plan.budget.over(report.task))
        result.steps.append(SearchStep(list(added), drift, over, float_weights_pct(recipe, loaded.module),
                                       round(artifact_mb(folder), 2), 0.0))
        if not over:
            result.stopped = "budget met"
        elif i >= plan.steps:
            result.stopped = f"step limit reached ({plan.steps})"
        else:
            step(f"search step {i}: ranking layers by the drift they add")
            if i > 0:
                growth = layers_per_step(growth, plan.budget.excess(result.steps[-2].drift),
                                         plan.budget.excess(drift))
            scopes, result.stopped = _next_scopes_or_reason(folder, bundle, held, recipe, loaded.module, prefix,
                                                            growth)
            added += scopes
            recipe = searched_recipe(spec.recipe, added)
        result.steps[-1].seconds = round(time.perf_counter() - started, 1)
        if kept is None or plan.budget.excess(drift) < plan.budget.excess(result.steps[result.best].drift):
            if kept is not None:
                shutil.rmtree(kept.parent, ignore_errors=True)
            kept, result.best = folder, i
        else:
            shutil.rmtree(folder.parent, ignore_errors=True)
        if result.stopped:
            break
    return result, kept


def _publish(step_dir: Path, final: Path, result: SearchResult, spec, seconds: float) -> None:
    """The kept step's artifact as the final one: its files, ``recipe.json`` and the search in its metadata."""
    meta = read_metadata(step_dir)
    with staged_dir(final) as stage:
        for item in step_dir.iterdir():
            if item.name not in (METADATA, VALIDATION_FILE):
                shutil.move(str(item), stage / item.name)
        recipe = result.recipe()
        write_json(stage / RECIPE_FILE, recipe.to_json())
        meta["spec"]["out_dir"] = spec.out_dir
        meta["quantization"]["search"] = result.to_json()
        meta["convert_seconds"] = round(seconds, 2)
        meta["files_sha256"] = file_hashes(stage)
        write_json(stage / METADATA, meta)


def convert_searched(spec, loaded, calibration: CalibrationSet, plan: SearchPlan) -> tuple[Path | None, SearchResult]:
    """Search, then write the kept step's artifact where ``convert`` would (always when the budget is met; when it
    is not, only with ``plan.keep_best``, after which :class:`BudgetNotMet` is still raised)."""
    from edgehmr.convert import artifact_path

    started = time.perf_counter()
    final = artifact_path(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{final.name}.search-", dir=final.parent))
    try:
        result, kept = search(spec, loaded, calibration, plan, workdir)
        written = None
        if result.met or plan.keep_best:
            _publish(kept, final, result, spec, time.perf_counter() - started)
            written = final
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not result.met:
        best = result.steps[result.best]
        drift = ", ".join(f"{m} {v:.3g}" for m, v in best.drift.items())
        kept = ", ".join(best.kept_float) or "nothing beyond the starting recipe"
        where = f"; the closest artifact was written to {written}" if written else " and nothing was written"
        raise BudgetNotMet(f"--max-drift not met ({plan.budget.describe()}): {result.stopped}. Closest: {drift} with "
                           f"{kept} kept float{where}. Recipe: {best_recipe_json(result)}", result)
    return written, result


def best_recipe_json(result: SearchResult) -> str:
    return json.dumps(result.recipe().to_json(), separators=(",", ":"))
