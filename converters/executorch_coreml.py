"""ExecuTorch with the Core ML delegate: the whole graph becomes one Core ML partition inside a ``.pte``.

It runs only where ExecuTorch is built with the Core ML backend (iOS / macOS apps); here it is built and its
delegation checked. See :mod:`edgehmr.converters.executorch`.
"""

from pathlib import Path

from edgehmr.converters.base import ConvertResult, ExportJob
from edgehmr.converters.executorch import convert_with_delegate
from edgehmr.converters.shapes import prepare


def convert(job: ExportJob, out_dir: Path) -> ConvertResult:
    """``model.pte`` with the Core ML delegate."""
    prepare("executorch-coreml", job)
    return convert_with_delegate(job, out_dir, "coreml")
