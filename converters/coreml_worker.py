"""The Core ML conversion step, run in its own process (:mod:`edgehmr.isolated`).

``python -m edgehmr.converters.coreml_worker request.json``: loads the traced program the converter saved (a
torch.export program, decomposed here, or TorchScript for the W8A8 graph), converts it with coremltools and saves
the ``.mlpackage``. A crash in coremltools' native code then fails this conversion only.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from edgehmr.isolated import serve
from edgehmr.vendor import vendor_quiet

# Core ML's dtypes for the request's input dtypes: integer inputs (indices) are int32 at the model boundary.
INPUT_DTYPES = {"float32": np.float32, "int32": np.int32}


def convert(request: dict) -> bool:
    """Every conversion of the request, in order (one per static shape of a package)."""
    for conversion in request["conversions"]:
        convert_one(conversion)
    return True


def convert_one(request: dict) -> None:
    with torch.no_grad(), vendor_quiet():
        import coremltools as ct

        if request["format"] == "torchscript":
            program = torch.jit.load(request["program"])
        else:
            # Decomposed here, after loading: a decomposed program does not always come back from
            # torch.export.save/load in a form coremltools lowers (multi-output ops lose their bindings).
            program = torch.export.load(request["program"]).run_decompositions({})
        model = ct.convert(
            program, convert_to="mlprogram", compute_precision=getattr(ct.precision, request["compute_precision"]),
            minimum_deployment_target=getattr(ct.target, request["minimum_deployment_target"]),
            inputs=[ct.TensorType(name=i["name"], shape=tuple(i["shape"]), dtype=INPUT_DTYPES[i["dtype"]])
                    for i in request["inputs"]],
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in request["outputs"]],
        )
        model.save(request["out"])


if __name__ == "__main__":
    sys.exit(serve(sys.argv, convert))
