"""Tables in the docs that are generated from the capability table (``converters/capabilities.py``).

``python -m edgehmr.docs_tables`` rewrites them between their markers (``<!-- NAME:start -->`` and
``<!-- NAME:end -->``): the target table in ``docs/targets.md`` and the short one in ``README.md``. ``--check``
only compares and exits with status 1 when a table differs. tests/test_docs_tables.py keeps them equal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgehmr.converters.capabilities import TARGETS, Precision, TargetCaps

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m edgehmr.docs_tables"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def precision_cell(caps: TargetCaps, precision: Precision) -> str:
    """'yes', 'yes (default)', 'yes (needs `--calib`)' ... or '-' when the target does not have the precision."""
    if precision not in caps.precisions:
        return "-"
    notes = []
    if precision is caps.precisions[0]:
        notes.append("default")
    if precision is Precision.int8:
        notes.append("needs `--calib`" if precision in caps.calibrated else "no calibration")
    return "yes" + (f" ({', '.join(notes)})" if notes else "")


def targets_table() -> str:
    """The target table of docs/targets.md: one row per target of the capability table."""
    header = ["target", "runtime", "fp32", "fp16", "int8 (W8A8)", "int8-weights (weight-only)", "SAT-HMR buckets",
              "host", "install"]
    rows = [[f"`{c.id}`", c.runtime, *(precision_cell(c, p) for p in Precision), c.buckets, c.host, c.extra]
            for c in TARGETS.values()]
    return _table(header, rows)


def targets_summary() -> str:
    """The short target table of README.md."""
    rows = [[f"`{c.id}`", c.runtime, ", ".join(p.value for p in c.precisions), c.host] for c in TARGETS.values()]
    return _table(["target", "runtime", "precisions (first: default)", "host"], rows)


# (file relative to the repository root, marker name, renderer)
BLOCKS = (
    ("docs/targets.md", "targets-table", targets_table),
    ("README.md", "targets-summary", targets_summary),
)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def current_block(text: str, name: str) -> str:
    """The text between the markers, without the newlines that surround it."""
    start, end = _markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one '{start}' followed by one '{end}'")
    return text[text.index(start) + len(start):text.index(end)].strip("\n")


def replace_block(text: str, name: str, table: str) -> str:
    current_block(text, name)  # checks the markers
    start, end = _markers(name)
    return text[:text.index(start) + len(start)] + "\n" + table + "\n" + text[text.index(end):]


def stale_blocks(root: Path = ROOT) -> list[str]:
    """Files whose generated table differs from what the capability table renders now."""
    return [rel for rel, name, render in BLOCKS
            if current_block((root / rel).read_text(encoding="utf-8"), name) != render()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare only; exit status 1 when a table differs")
    args = parser.parse_args(argv)
    updates = []  # every file is read and checked before any is written
    for rel, name, render in BLOCKS:
        path = args.root / rel
        if not path.is_file():
            print(f"{COMMAND}: error: {path} not found; pass --root with the repository root.", file=sys.stderr)
            return 2
        text = path.read_text(encoding="utf-8")
        try:
            updates.append((rel, name, path, text, replace_block(text, name, render())))
        except ValueError as exc:
            print(f"{COMMAND}: error: {rel}: {exc}.", file=sys.stderr)
            return 2
    stale = False
    for rel, name, path, text, new in updates:
        if new == text:
            print(f"{rel}: {name} is up to date")
        elif args.check:
            stale = True
            print(f"{rel}: {name} differs from converters/capabilities.py; run '{COMMAND}'")
        else:
            path.write_text(new, encoding="utf-8")
            print(f"{rel}: {name} rewritten")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
