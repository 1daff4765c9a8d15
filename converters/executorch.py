"""ExecuTorch target (XNNPACK delegate): ``torch2pte`` = torch.export -> ``to_edge_transform_and_lower`` with the
XNNPACK partitioner -> ``model.pte``.

What XNNPACK does not take stays on ExecuTorch's portable kernels; the converter records those ops per type
(``target_details.non_delegated``) so users see what runs outside the delegate.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from pathlib import Path

import torch

from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.errors import ConversionError

MODEL_FILE = "model.pte"
# Graph plumbing that is not compute: never worth reporting as "not delegated".
_PLUMBING = {"getitem", "output", "placeholder", "executorch_call_delegate"}


def non_delegated_ops(edge_program) -> dict[str, int]:
    """Op type -> count of compute nodes left outside every delegate."""
    counts: Counter[str] = Counter()
    for node in edge_program.exported_program().graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))  # e.g. 'aten.native_layer_norm.default'
        if name not in _PLUMBING:
            counts[name.removesuffix(".default")] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def torch2pte(job: ExportJob, out_path: Path) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.export.export(job.module, job.example_inputs)
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            leftover = non_delegated_ops(edge)
            executorch_program = edge.to_executorch()
    except Exception as e:
        raise ConversionError(f"ExecuTorch lowering of {job.model_name} failed: {str(e).splitlines()[0]}") from e
    out_path.write_bytes(executorch_program.buffer)
    return {"delegate": "XnnpackPartitioner", "non_delegated": leftover,
            "non_delegated_total": sum(leftover.values())}


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    if job.precision != Precision.fp32:
        raise ConversionError(f"ExecuTorch target has no {job.precision.value} path yet.")
    import executorch

    details = torch2pte(job, out_dir / MODEL_FILE)
    return ConvertResult(MODEL_FILE, details | {"executorch": getattr(executorch, "__version__", "unknown")})
