"""User-facing errors. The message of each is what the CLI prints: what failed, the fact, what to do next."""

from __future__ import annotations


class EdgeHMRError(Exception):
    """Base class; the CLI prints the message on one line and exits with ``exit_code``."""

    exit_code = 2


class SpecError(EdgeHMRError, ValueError):
    """Unknown model/target/precision or an option combination that cannot work."""


class InputError(EdgeHMRError, ValueError):
    """A file the user gave is missing, unreadable or of the wrong kind."""


class CheckpointMismatchError(EdgeHMRError, ValueError):
    """A checkpoint whose keys or shapes do not fit the model; carries the diff."""

    def __init__(self, message: str, diff: "KeyDiff"):  # noqa: F821 - defined in models._checkpoint
        super().__init__(message)
        self.diff = diff


class TargetUnavailableError(EdgeHMRError, RuntimeError):
    """The runtime a target needs is not installed here; the message names the install command."""


class ConversionError(EdgeHMRError, RuntimeError):
    """A vendor conversion step failed."""

    exit_code = 1


class DriftError(EdgeHMRError):
    """Validation found an output beyond its tolerance."""

    exit_code = 1
