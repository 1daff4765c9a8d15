"""ExecuTorch with the Core ML delegate: the whole graph becomes one Core ML partition inside a ``.pte``.

It runs only where ExecuTorch is built with the Core ML backend (iOS / macOS apps); here it is built and its
delegation checked. See :mod:`edgehmr.converters.executorch`.
"""

from edgehmr.converters.executorch import convert_coreml_delegate as convert

__all__ = ["convert"]
