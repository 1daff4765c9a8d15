"""One ExecuTorch method with bounded dynamic token axes against one static method per bucket (SAT-HMR stage 2,
XNNPACK, FP32): conversion time and per-bucket latency, timed in alternation in one run.

The multi-shape ExecuTorch converter writes the dynamic form for FP32 (every method is exported, decomposed and
partitioned on its own, so it converts once instead of once per bucket). This shows what that costs at run time,
with the buckets alternating as they do between frames (XNNPACK reshapes its runtime when the shape changes).
Seeded weights: times are real, outputs are not. Run it alone (nothing else on the machine).

    python bench/executorch_dynamic.py --model sat-hmr --canvas 672x448 --buckets 24x192,96x384
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sat-hmr")
    parser.add_argument("--canvas", default="672x448")
    parser.add_argument("--buckets", default="24x192,96x384")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from _timing import time_alternating

    from edgehmr.converters.capabilities import Precision
    from edgehmr.converters.executorch import Method, lower_methods
    from edgehmr.converters.base import ExportJob
    from edgehmr.converters.shapes import export_job, torch_dynamic_shapes
    from edgehmr.models import load_model
    from edgehmr.models.sat_hmr import STAGE2_INPUTS, STAGE2_OUTPUTS, Stage2Graph
    from edgehmr.sat.convert import stage2_example
    from edgehmr.sat.frame import Canvas
    from edgehmr.sat.tables import parse_buckets
    from edgehmr.targets.executorch import _runtime

    model = load_model(args.model).module.eval()
    canvas = Canvas.parse(args.canvas)
    table = parse_buckets(args.buckets, canvas.grid)
    image = torch.randn(1, 3, canvas.height, canvas.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, tokens, cls = model.stage1(image)
    graph = Stage2Graph(model).eval()
    entries = {b.name: stage2_example(image, tokens, cls, b, canvas.grid) for b in table.buckets}
    job = ExportJob(graph, entries, STAGE2_INPUTS, STAGE2_OUTPUTS, Precision.fp32, args.model)

    forms = {"static (one method per bucket)": {name: Method(graph, ex) for name, ex in entries.items()},
             "dynamic (one method)": {"forward": Method(graph, export_job(job).example_inputs,
                                                        torch_dynamic_shapes(job))}}
    programs, convert_s = {}, {}
    for form, methods in forms.items():
        start = time.perf_counter()
        buffer, _ = lower_methods(methods, "xnnpack", Precision.fp32, args.model)
        convert_s[form] = time.perf_counter() - start
        programs[form] = _runtime().load_program(buffer)
        print(f"{form}: lowered in {convert_s[form]:.0f} s, {len(buffer) / 2**20:.0f} MB", flush=True)

    class Call:
        default_entry = "forward"

        def __init__(self, method, inputs):
            self.method, self.inputs = method, list(inputs)

        def run(self, _entry, _feed):
            return self.method.execute(self.inputs)

    rows = []
    for form, program in programs.items():
        for name, inputs in entries.items():
            method = program.load_method(name if name in program.method_names else "forward")
            rows.append({"form": form, "bucket": name, "runner": Call(method, inputs), "feed": None})
    time_alternating(rows, warmup=2, runs=args.runs)
    print(f"\n{args.model} stage 2, canvas {args.canvas}, fp32 XNNPACK, p50 over {args.runs} alternating runs")
    print("| form | convert s | " + " | ".join(f"{b} ms" for b in entries) + " |")
    print("|---|---:|" + "---:|" * len(entries))
    for form in programs:
        p50 = [r["p50_ms"] for r in rows if r["form"] == form]
        print(f"| {form} | {convert_s[form]:.0f} | " + " | ".join(f"{v:.0f}" for v in p50) + " |")
    spread = np.array([[r["p50_ms"] for r in rows if r["form"] == form] for form in programs])
    print("dynamic / static per bucket: " + ", ".join(f"{v:.2f}" for v in spread[1] / spread[0]))


if __name__ == "__main__":
    main()
