"""What a long library step is doing now, for whoever shows it (the CLI's spinner line).

Conversions run minutes on published models: exporting, calibrating every bucket, lowering every ExecuTorch
method, compiling. The library says each sub-step with :func:`step`; nothing is shown unless a caller listens
through :func:`reporting` (the CLI does, on a terminal). Library users and tests see nothing and pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_listener: ContextVar[Callable[[str], None] | None] = ContextVar("edgehmr_progress", default=None)


@contextmanager
def reporting(listener: Callable[[str], None]) -> Iterator[None]:
    """Send every :func:`step` inside the block to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def step(text: str) -> None:
    """Say what runs now, e.g. ``"stage 2: lowering for XNNPACK (3 buckets)"``."""
    listener = _listener.get()
    if listener is not None:
        listener(text)
