"""Vendor packages: imported with one clear line when they are missing, and kept from printing while they work.

Converters and runners both use these, so they live in neither.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

from edgehmr.errors import TargetUnavailableError


@contextlib.contextmanager
def vendor_quiet():
    """Silence vendor tools while they work: progress bars (stderr), version warnings and log lines about native
    pieces that exist only on other platforms. Their exceptions still propagate; converters turn those into
    one clear message."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TargetUnavailableError("Building or running TensorRT engines needs TensorRT: pip install "
                                     "'edgehmr[tensorrt]' (on Jetson: JetPack's TensorRT), or run the artifact's "
                                     "build_engine.sh with trtexec.") from None
    return trt
