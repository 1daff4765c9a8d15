"""What the full-coverage buckets cost (SAT-HMR at published size): the default table with them (never demotes)
against the same table without them (``--allow-demotion``), per target.

For each (target, table): convert time and artifact size; for OpenVINO also what the app pays when it opens the
artifact (compile time and resident memory, one compiled model per bucket and the shared-weights mode), each in a
fresh subprocess so that memory is not shared between measurements; and the stage-2 latency of the largest ladder
bucket against the largest coverage bucket (timed in alternation). Seeded weights: times and sizes are real,
outputs are not. Run it alone (nothing else on the machine).

    python bench/sat_coverage.py --canvas 672x448 --targets onnx openvino
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPEN_SNIPPET = """
import json, resource, sys, time
from edgehmr.sat.runner import SatPipeline
start = time.perf_counter()
pipe = SatPipeline(sys.argv[1], shared_weights=sys.argv[2] == "1")
seconds = time.perf_counter() - start
print(json.dumps({"open_s": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _open_cost(artifact: Path, shared: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", OPEN_SNIPPET, str(artifact), "1" if shared else "0"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _latency(artifact: Path, names: list[str], runs: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from _timing import time_alternating

    from edgehmr.bucketing import Selection, pack_into
    from edgehmr.sat.runner import STAGE1_ENTRY, SatPipeline

    pipe = SatPipeline(artifact)
    image = np.random.default_rng(0).standard_normal(pipe.input_shape).astype(np.float32)
    first = pipe.stage1.run(STAGE1_ENTRY, {"image": image})
    rows = []
    for bucket in (b for b in pipe.table.buckets if b.name in names):
        feeds = {"image": image, "low_res_tokens": first["low_res_tokens"], "cls": first["cls"]}
        feeds |= pack_into(Selection.empty(pipe.table.grid), bucket, pipe.table.grid).feeds()

        class Entry:
            def run(self, feed, name=bucket.name):
                return pipe.stage2.run(name, feed)

        rows.append({"name": bucket.name, "runner": Entry(), "feed": feeds})
    time_alternating(rows, warmup=1, runs=runs)
    return {r["name"]: r["p50_ms"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canvas", default="672x448")
    parser.add_argument("--targets", nargs="+", default=["onnx", "openvino"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from edgehmr.models import load_model
    from edgehmr.sat.convert import convert_sat
    from edgehmr.spec import resolve_spec

    loaded = load_model("sat-hmr")
    root = Path(tempfile.mkdtemp(prefix="sat-coverage-"))
    rows = []
    for target in args.targets:
        for allow in (True, False):
            spec = resolve_spec("sat-hmr", target, "fp32", out_dir=str(root / str(allow)), canvas=args.canvas,
                                allow_demotion=allow)
            start = time.perf_counter()
            artifact = convert_sat(spec, loaded)
            row = {"target": target, "table": "without coverage" if allow else "default (never demotes)",
                   "convert_s": time.perf_counter() - start,
                   "size_mb": sum(f.stat().st_size for f in artifact.rglob("*") if f.is_file()) / 2**20}
            meta = json.loads((artifact / "metadata.json").read_text())["buckets"]
            row["buckets"] = [b["name"] for b in meta["buckets"]]
            if target == "openvino":
                for shared in (False, True):
                    cost = _open_cost(artifact, shared)
                    key = "shared" if shared else "per_bucket"
                    row[f"open_s_{key}"], row[f"rss_mb_{key}"] = cost["open_s"], cost["peak_rss_mb"]
                if not allow:
                    ladder = max((b for b in meta["buckets"] if b["name"] not in meta["full_coverage"]["buckets"]),
                                 key=lambda b: b["memory"])["name"]
                    row["latency_ms"] = _latency(artifact, [ladder, *meta["full_coverage"]["buckets"]], args.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\ncanvas {args.canvas}, seeded published-size sat-hmr, fp32")
    print("| target | table | buckets | convert s | MB | open s (per bucket / shared) | peak RSS MB (per bucket / "
          "shared) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        open_s = (f"{r['open_s_per_bucket']:.1f} / {r['open_s_shared']:.1f}" if "open_s_shared" in r else "-")
        rss = (f"{r['rss_mb_per_bucket']:.0f} / {r['rss_mb_shared']:.0f}" if "rss_mb_shared" in r else "-")
        print(f"| {r['target']} | {r['table']} | {', '.join(r['buckets'])} | {r['convert_s']:.0f} | "
              f"{r['size_mb']:.0f} | {open_s} | {rss} |")
    for r in rows:
        if "latency_ms" in r:
            print(f"stage-2 p50 on {r['target']}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in r["latency_ms"].items()))


if __name__ == "__main__":
    main()
