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
    return 0


if __name__ == "__main__":
    sys.exit(main())
