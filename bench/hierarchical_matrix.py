"""Validation matrix of the truncated hierarchical encoders: every registered
``{hmr2,vitpose}-{swin-t,swin-s,swin-b,gmf-t,gmf-s,vmamba-t,vmamba-s}-s{2,3,4}`` through

- ``onnx-fp32``, ``openvino-fp32``: ``validate`` against the model's FP32 PyTorch bundle, parity = every output
  within 1e-4 relative L2 and the task drift within the fp32 tolerances;
- ``openvino-int8``: NNCF static PTQ with the family's default recipe (32 synthetic calibration crops), ``validate``;
- ``openvino-int8-search``: the same through ``convert --max-drift`` with the tolerance table as the budget
  (``--search-steps``, default 4; a quarter of the crops held out), then ``validate`` on the matrix's bundle; the
  detail says what the search kept float, and "budget not met" with the closest drift when it ended short;
- ``executorch-fp32``: ``validate`` in the ExecuTorch runtime, and no linear/conv left outside XNNPACK;
- ``coreml-fp16``: the saved ML program's structure (fp16 compute and no fp32 op, output shapes as the metadata's);
  Core ML predictions need macOS.

A target the capability table refuses for a model (VMamba on Core ML / ExecuTorch) is recorded as ``refused`` with
``convert``'s reason. Every cell is appended to a JSON-lines file as it finishes, so an interrupted run resumes
where it stopped; ``--summary`` prints the Markdown table docs/models.md quotes. Seeded weights, synthetic crops:

    python bench/hierarchical_matrix.py                        # all 42, cheapest first
    python bench/hierarchical_matrix.py --models hmr2-swin-t-s2 --cells onnx-fp32 openvino-int8
    python bench/hierarchical_matrix.py --models hmr2-gmf-t-s3 --cells openvino-int8-search
    python bench/hierarchical_matrix.py --shard 0/2 & python bench/hierarchical_matrix.py --shard 1/2
    python bench/hierarchical_matrix.py --summary

Two shards on two cores finish sooner than one process: exporting and lowering are mostly single-threaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from edgehmr.calibration.sources import open_source
from edgehmr.convert import convert
from edgehmr.errors import EdgeHMRError, SpecError
from edgehmr.models import list_models, load_model, model_cost
from edgehmr.reference import make_bundle
from edgehmr.spec import resolve_spec
from edgehmr.validate import validate

CELLS = {  # cell -> (target, precision)
    "onnx-fp32": ("onnx", "fp32"),
    "openvino-fp32": ("openvino", "fp32"),
    "openvino-int8": ("openvino", "int8"),
    "openvino-int8-search": ("openvino", "int8"),
    "executorch-fp32": ("executorch", "fp32"),
    "coreml-fp16": ("coreml", "fp16"),
}
FAMILIES = ("swin", "gmf", "vmamba")
PARITY_REL_L2 = 1e-4
DEFAULT_RESULTS = Path(__file__).parent / "results" / "hierarchical_matrix.jsonl"


def registered_variants() -> list[str]:
    names = [n for n in list_models() if n.split("-")[1] in FAMILIES and n.split("-")[0] in ("hmr2", "vitpose")]
    return sorted(names, key=lambda n: model_cost(n)[1])


def failed_checks(report) -> list[str]:
    bad = [f"{n} rel L2 {o['rel_l2']:.1e}" for n, o in report.outputs.items() if not o["ok"]]
    return bad + [f"{m} {t['value']:.3g} {t['unit']} > {t['tolerance']:g}" for m, t in report.task.items()
                  if not t["ok"]]


def check_validated(path: Path, bundle: Path, parity: bool) -> tuple[str, str]:
    report = validate(path, bundle)
    worst = max(o["rel_l2"] for o in report.outputs.values())
    bad = failed_checks(report)
    if parity and worst >= PARITY_REL_L2:
        bad.append(f"worst rel L2 {worst:.1e} >= {PARITY_REL_L2:g}")
    summary = f"worst rel L2 {worst:.1e}; " + ", ".join(f"{m} {t['value']:.3g}" for m, t in report.task.items())
    return ("fail", "; ".join(bad) + f" ({summary})") if bad else ("pass", summary)


def check_executorch(path: Path, bundle: Path) -> tuple[str, str]:
    status, detail = check_validated(path, bundle, parity=True)
    details = json.loads((path / "metadata.json").read_text())["parts"]["model"]["details"]
    heavy = [op for op in details["non_delegated"] if any(k in op for k in ("linear", "convolution", "addmm", "bmm"))]
    if heavy:
        return "fail", f"not delegated to XNNPACK: {heavy}; {detail}"
    return status, detail


def check_coreml(path: Path) -> tuple[str, str]:
    from edgehmr.converters.coreml import program_summary

    summary = program_summary(path / "model.mlpackage")
    meta = json.loads((path / "metadata.json").read_text())
    dtypes = summary["compute_dtypes"]
    problems = []
    if dtypes.get("float16", 0) == 0 or "float32" in dtypes:
        problems.append(f"compute dtypes {dtypes}")
    shapes = [o["shape"] for o in summary["outputs"]]
    expected = [o["shape"] for o in meta["outputs"]]
    if shapes != expected:
        problems.append(f"output shapes {shapes} != {expected}")
    ops = sum(summary["ops"].values())
    return ("fail", "; ".join(problems)) if problems else ("pass", f"{ops} ops, fp16 compute {dtypes['float16']}")


def searched(spec, loaded, steps: int) -> tuple[Path, str]:
    """``convert --max-drift`` (default budget, the closest artifact kept); (artifact, what the search did)."""
    from edgehmr.convert import artifact_path, calibration_for
    from edgehmr.quant_search import BudgetNotMet, convert_searched, plan_search

    plan = plan_search(spec, loaded.info, None, steps, keep_best=True)
    try:
        path, result = convert_searched(spec, loaded, calibration_for(spec, loaded), plan)
    except BudgetNotMet as e:
        path, result = artifact_path(spec), e.result
    best = result.steps[result.best]
    drift = ", ".join(f"{m} {v:.3g}" for m, v in best.drift.items())
    verdict = "budget met" if result.met else f"budget not met ({result.stopped})"
    return path, (f"search: {verdict} after {len(result.steps)} step(s), kept float {best.kept_float or 'nothing'}; "
                  f"held-out drift {drift}")


def run_cell(name: str, cell: str, loaded, bundle: Path, work: Path, calib_count: int,
             search_steps: int = 4) -> tuple[str, str]:
    target, precision = CELLS[cell]
    try:
        spec = resolve_spec(name, target, precision, out_dir=str(work), calib="synthetic" if precision == "int8"
                            else None, calib_count=calib_count)
    except SpecError as e:
        return "refused", str(e)
    if cell.endswith("-search"):
        path, note = searched(spec, loaded, search_steps)
        try:
            status, detail = check_validated(path, bundle, parity=False)
            return status, f"{note}; validate: {detail}"
        finally:
            shutil.rmtree(path, ignore_errors=True)
    path = convert(spec, loaded)
    try:
        if cell == "coreml-fp16":
            return check_coreml(path)
        if cell == "executorch-fp32":
            return check_executorch(path, bundle)
        return check_validated(path, bundle, parity=precision == "fp32")
    finally:
        shutil.rmtree(path, ignore_errors=True)


def load_results(path: Path) -> dict[tuple[str, str], dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["model"], r["cell"]): r for r in rows}


def run(models: list[str], cells: list[str], results: Path, calib_count: int, eval_count: int,
        search_steps: int) -> None:
    done = load_results(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    for name in models:
        todo = [c for c in cells if (name, c) not in done]
        if not todo:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            loaded = load_model(name)
            bundle = make_bundle(loaded, open_source("synthetic", eval_count, seed=1000), Path(tmp) / "ref",
                                 source="synthetic")
            for cell in todo:
                start = time.perf_counter()
                try:
                    status, detail = run_cell(name, cell, loaded, bundle, Path(tmp) / "artifacts", calib_count,
                                              search_steps)
                except EdgeHMRError as e:
                    status, detail = "error", str(e)
                except Exception as e:  # a crash in a vendor tool is a result of the matrix, not its end
                    status, detail = "error", f"{type(e).__name__}: {e}"
                    traceback.print_exc()
                row = {"model": name, "cell": cell, "status": status, "detail": detail,
                       "seconds": round(time.perf_counter() - start, 1)}
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{name} {cell}: {status} ({row['seconds']} s) {detail}", flush=True)


def summary(results: Path, models: list[str]) -> None:
    done = load_results(results)
    mark = {"pass": "pass", "fail": "**FAIL**", "refused": "refused", "error": "**ERROR**"}
    print("| model | GMACs | " + " | ".join(CELLS) + " |")
    print("|---|---:|" + "---|" * len(CELLS))
    for name in models:
        cells = [mark[done[(name, c)]["status"]] if (name, c) in done else "not run" for c in CELLS]
        print(f"| {name} | {model_cost(name)[1]:.2f} | " + " | ".join(cells) + " |")
    problems = [r for r in done.values() if r["status"] in ("fail", "error")]
    for r in problems:
        print(f"- {r['model']} {r['cell']}: {r['status']}: {r['detail']}")
    counts = {s: sum(r["status"] == s for r in done.values()) for s in mark}
    total = len(models) * len(CELLS)
    print(f"\n{len(done)} of {total} cells run: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="default: every registered variant, cheapest first")
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--eval-count", type=int, default=8)
    parser.add_argument("--search-steps", type=int, default=4, help="openvino-int8-search: most search steps")
    parser.add_argument("--shard", default="0/1", help="K/N: run every N-th model from the K-th (default: all)")
    parser.add_argument("--summary", action="store_true", help="print the table of the results so far and exit")
    args = parser.parse_args()
    models = args.models or registered_variants()
    if not args.summary:
        k, n = (int(v) for v in args.shard.split("/"))
        models = models[k::n]
    if args.summary:
        summary(args.results, models)
    else:
        run(models, args.cells, args.results, args.calib_count, args.eval_count, args.search_steps)


if __name__ == "__main__":
    main()
