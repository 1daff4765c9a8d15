"""``edgehmr bench``: convert, validate and profile every model x target x precision, then one report.

Each model gets one reference bundle (FP32 PyTorch on this machine, synthetic crops unless ``inputs`` names an
image folder) and, for INT8, one calibration set; combinations a target does not offer are listed as skipped
with the reason, and failures as failed with their one-line error, so one bad cell never hides the others.
Artifacts that only simulate here (Core ML off macOS, TensorRT without an engine) are validated but not timed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgehmr.errors import EdgeHMRError, SpecError, TargetUnavailableError
from edgehmr.tasks import FRAMES

BENCH_CALIBRATION = 32


@dataclass
class Cell:
    model: str
    target: str
    precision: str
    status: str  # done | skipped | failed
    reason: str = ""
    artifact: str | None = None


def run_matrix(models: list[str], targets: list[str], precisions: list[str], out_dir: Path, runs: int = 20,
               warmup: int = 3, inputs: str = "synthetic", count: int = 8, threads: int | None = None,
               log: Callable[[str], None] = print) -> tuple[list[Cell], dict[str, Path]]:
    from edgehmr.calibration.sources import open_source
    from edgehmr.convert import calibration_for, convert
    from edgehmr.models import get_model_info, load_model
    from edgehmr.profile import profile, save_profile
    from edgehmr.reference import make_bundle
    from edgehmr.report import make_report
    from edgehmr.spec import resolve_spec
    from edgehmr.validate import validate

    for model in models:
        if get_model_info(model).task.input == FRAMES:
            raise SpecError("edgehmr bench covers the person-crop models; for sat-hmr use 'edgehmr demo -m sat-hmr' "
                            "or convert/validate/profile.")
    artifacts_dir = out_dir / "artifacts"
    cells: list[Cell] = []
    for model in models:
        loaded = load_model(model)
        bundle = make_bundle(loaded, open_source(inputs, count), out_dir / f"reference-{model}", source=inputs)
        log(f"{model}: reference bundle ({count} crops)")
        calibration = None
        for target in targets:
            for precision in precisions:
                cell = Cell(model, target, precision, "done")
                cells.append(cell)
                try:
                    spec = resolve_spec(model, target, precision, out_dir=str(artifacts_dir), calib=inputs,
                                        calib_count=BENCH_CALIBRATION)
                except SpecError as e:
                    cell.status, cell.reason = "skipped", str(e)
                    continue
                try:
                    if spec.calib and calibration is None:
                        calibration = calibration_for(spec, loaded)
                    path = convert(spec, loaded, calibration if spec.calib else None)
                    cell.artifact = str(path)
                    validate(path, bundle, threads=threads)
                    try:
                        save_profile(profile(path, runs, warmup, threads))
                    except TargetUnavailableError as e:
                        cell.reason = f"validated, not timed: {e}"
                except EdgeHMRError as e:
                    cell.status, cell.reason = "failed", str(e)
                log(f"{model} {target} {precision}: {cell.status}{' - ' + cell.reason if cell.reason else ''}")
    done = [Path(c.artifact) for c in cells if c.artifact]
    if not done:
        raise SpecError("no combination converted; see the reasons above.")
    notes = [f"{c.model} {c.target} {c.precision}: {c.status} ({c.reason})" for c in cells if c.reason]
    return cells, make_report(done, out_dir, notes)
