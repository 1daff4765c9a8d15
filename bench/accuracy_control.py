"""OpenVINO INT8 under a drift budget: edgehmr's ``--max-drift`` search against NNCF's
``quantize_with_accuracy_control``, on the model the search tests use (test-hmr2 with one layer INT8 cannot keep).

    python bench/accuracy_control.py [--budget-mm 0.1] [--calib-count 16]

Both start from the same IR, calibration crops, held-out crops, FP32 references and default recipe (its float
scopes as NNCF's ignored scope), and both judge a model by the same task metric: held-out MPJPE through the
synthetic SMPL, as ``validate`` measures it. NNCF runs with the task metric per data item (its metric mode, the
ranking it documents for a task metric) and ``max_drop`` = the budget, with and without SmoothQuant (our converter's
preset applies it). Prints a Markdown table: whether the budget was met, the drift reached, how many of the
quantized ops ended float, and the time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgehmr.calibration.dataset import build_calibration
from edgehmr.convert import build_export_module, export_recipe
from edgehmr.converters import openvino as ov_converter
from edgehmr.converters.base import ExportJob, batched_samples
from edgehmr.models import load_model
from edgehmr.models.smpl import SMPLLayer, load_smpl
from edgehmr.models.tiny import FRAGILE_LAYER, fragile_test_hmr2_state
from edgehmr.quant_search import BudgetNotMet, convert_searched, held_out_count, plan_search
from edgehmr.reference import run_reference
from edgehmr.spec import resolve_spec
from edgehmr.validate import hmr2_task_drift

MODEL = "test-hmr2"


def fragile_checkpoint(folder: Path) -> str:
    from safetensors.torch import save_file

    state = fragile_test_hmr2_state(load_model(MODEL, seed=0).module.state_dict())
    path = folder / "fragile.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def edgehmr_search(spec, loaded, calibration, budget_mm: float) -> dict:
    plan = plan_search(spec, loaded.info, f"mpjpe={budget_mm}mm", steps=8)
    started = time.perf_counter()
    try:
        _, result = convert_searched(spec, loaded, calibration, plan)
    except BudgetNotMet as e:  # the closest step is still a result to show
        result = e.result
    best = result.steps[result.best]
    return {"met": result.met, "mpjpe": best.drift["mpjpe_mm"], "float": ", ".join(best.kept_float) or "-",
            "evaluations": len(result.steps), "seconds": time.perf_counter() - started}


class HeldOutMetric:
    """NNCF's validation function: minus held-out MPJPE (higher is better) over the items it is given, and per item.
    An item is (feed, the indices of its crops), so any subset NNCF picks is compared with its own references."""

    def __init__(self, references: dict[str, np.ndarray]):
        self.references = references
        self.smpl = SMPLLayer(load_smpl(None), dtype=torch.float64)
        self.calls = 0

    def mpjpe(self, compiled, items) -> float:
        chunks, rows = [], []
        for feed, indices in items:
            result = compiled(feed)
            chunks.append({o.get_any_name(): result[o] for o in compiled.outputs})
            rows += indices
        out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        task, _ = hmr2_task_drift(out, {k: v[rows] for k, v in self.references.items()}, self.smpl)
        return task["mpjpe_mm"][0]

    def __call__(self, compiled, items):
        self.calls += 1
        items = list(items)
        return -self.mpjpe(compiled, items), [-self.mpjpe(compiled, [item]) for item in items]


def nncf_accuracy_control(spec, loaded, tune, held, budget_mm: float, smooth_quant: bool) -> dict:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    module, outputs, _ = build_export_module(loaded, spec)
    recipe = export_recipe(spec.recipe, module, spec.with_mesh)
    example = tuple(torch.zeros(spec.batch, *t.shape[1:]) for t in loaded.info.inputs)
    name = loaded.info.inputs[0].name
    job = ExportJob.single(module, example, [name], outputs, spec.precision, spec.model,
                           batched_samples(tune, spec.batch), recipe)
    model, scopes = ov_converter.torch2openvino_entries(job)
    ignored, _ = ov_converter._ignored_scope(model, scopes, recipe)
    feeds = ov_converter.calibration_feeds(job)
    items = [({name: held[i:i + spec.batch]}, list(range(i, i + spec.batch))) for i in range(0, len(held), spec.batch)]
    metric = HeldOutMetric(run_reference(loaded, held))
    advanced = AdvancedQuantizationParameters() if smooth_quant else AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1, convolution=-1))
    common = dict(preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds), model_type=nncf.ModelType.TRANSFORMER,
                  ignored_scope=ignored)
    with ov_converter._quiet():
        plain = nncf.quantize(model, nncf.Dataset(feeds), advanced_parameters=advanced, **common)
    started = time.perf_counter()
    with ov_converter._quiet():
        searched = nncf.quantize_with_accuracy_control(model, nncf.Dataset(feeds), nncf.Dataset(items), metric,
                                                       max_drop=budget_mm, advanced_quantization_parameters=advanced,
                                                       **common)
    seconds = time.perf_counter() - started
    mpjpe = metric.mpjpe(ov.Core().compile_model(searched, "CPU", ov_converter.runtime_config(spec.precision)),
                         items)
    before = ov_converter.count_quantized(plain)["fake_quantize"]
    after = ov_converter.count_quantized(searched)["fake_quantize"]
    return {"met": mpjpe <= budget_mm, "mpjpe": mpjpe, "float": f"{before - after} of {before} FakeQuantize removed",
            "evaluations": metric.calls, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-mm", type=float, default=0.1, help="held-out MPJPE budget (default 0.1, the tests')")
    ap.add_argument("--calib-count", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgehmr-ac-"))
    checkpoint = fragile_checkpoint(work)
    spec = resolve_spec(MODEL, "openvino", "int8", checkpoint=checkpoint, out_dir=str(work / "out"),
                        calib="synthetic", calib_count=args.calib_count)
    loaded = load_model(MODEL, checkpoint)
    calibration = build_calibration("synthetic", loaded.info.crop, args.calib_count, seed=spec.seed)
    held = held_out_count(len(calibration.images), spec.batch)  # the search's own split
    tune, held_out = calibration.images[:-held], calibration.images[-held:]
    rows = {
        "edgehmr --max-drift (drift ranking)": edgehmr_search(spec, loaded, calibration, args.budget_mm),
        "NNCF accuracy control, SmoothQuant on (our preset)":
            nncf_accuracy_control(spec, loaded, tune, held_out, args.budget_mm, smooth_quant=True),
        "NNCF accuracy control, SmoothQuant off":
            nncf_accuracy_control(spec, loaded, tune, held_out, args.budget_mm,
                                  smooth_quant=False),
    }
    print(f"\n{MODEL} with {FRAGILE_LAYER} fragile, OpenVINO INT8, budget MPJPE <= {args.budget_mm} mm on {held} "
          f"held-out crops ({len(tune)} calibration crops)\n")
    print("| method | budget met | held-out MPJPE mm | kept float | evaluations | seconds |")
    print("|---|---|---:|---|---:|---:|")
    for label, r in rows.items():
        print(f"| {label} | {'yes' if r['met'] else 'no'} | {r['mpjpe']:.3g} | {r['float']} | {r['evaluations']} | "
              f"{r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
