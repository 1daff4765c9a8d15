"""The ``edgehmr`` command line, one module per command group. Results go to stdout (tables, or JSON with
--json); progress and logs to stderr. Every :class:`~edgehmr.errors.EdgeHMRError` ends as one line and its exit
code (2 for bad input)."""

from __future__ import annotations

import os
import sys

from rich.markup import escape

from edgehmr.cli import check, convert, demo, device, inventory  # noqa: F401  (registers the commands)
from edgehmr.cli.common import app, err
from edgehmr.errors import CheckpointMismatchError, EdgeHMRError

# --help lists the commands in the order a user needs them, not in the order their modules are imported.
ORDER = ("models", "targets", "convert", "reference", "validate", "profile", "report", "bench", "build-engine",
         "doctor", "smpl-to-npz", "demo")
app.registered_commands.sort(key=lambda c: ORDER.index(c.name or c.callback.__name__))


# Errors raised outside edgehmr's own checks that are still the user's to fix: (type, exit code, what to say).
# The first matching row wins, so subclasses come before OSError.
FOREIGN_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (PermissionError, 2, "permission denied: {e.filename}; choose a folder you can write, or fix its permissions."),
    (IsADirectoryError, 2, "{e.filename} is a folder where a file was expected."),
    (NotADirectoryError, 2, "{e.filename} is a file where a folder was expected."),
    (MemoryError, 1, "out of memory; close other programs, or use a smaller model, batch or canvas."),
    (OSError, 2, "{e}"),
)


def foreign_error_line(e: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an error of :data:`FOREIGN_ERRORS`; None for anything else (a bug: traceback)."""
    for kind, code, text in FOREIGN_ERRORS:
        if isinstance(e, kind):
            return code, text.format(e=e)
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    except EdgeHMRError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        if isinstance(e, CheckpointMismatchError):
            for line in e.diff.lines():
                err.print(escape(line), highlight=False)
        if os.environ.get("EDGEHMR_DEBUG"):
            raise
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except (OSError, MemoryError) as e:
        code, line = foreign_error_line(e)
        if os.environ.get("EDGEHMR_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
