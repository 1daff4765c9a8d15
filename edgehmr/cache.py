"""The user's edgehmr cache folder (``$EDGEHMR_CACHE``, default ``~/.cache/edgehmr``): calibration crops, the
model catalog of a changed checkout, the host probe. Import-light: commands that only read tables use it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("EDGEHMR_CACHE", Path.home() / ".cache" / "edgehmr"))
