"""The docs' target tables equal what the capability table renders, and every relative link in the README and
docs/ leads to a file (and heading) that exists. The repository's own files are read: the test runs in a temporary
folder, so paths are taken from this file's place."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgehmr import docs_tables
from edgehmr.converters.capabilities import TARGETS, Precision

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DETAIL_HEADER = "| target | fp32 | fp16 | int8 (W8A8, static PTQ) | int8-weights (weight-only) |"


@pytest.mark.parametrize("rel, name, render", docs_tables.BLOCKS, ids=[b[0] for b in docs_tables.BLOCKS])
def test_generated_table_equals_capability_table(rel, name, render):
    current = docs_tables.current_block((ROOT / rel).read_text(encoding="utf-8"), name)
    assert current == render(), (f"{rel}: the '{name}' table differs from converters/capabilities.py; "
                                 f"run 'python -m edgehmr.docs_tables' and commit the result")


def test_precision_methods_table_names_exactly_the_capability_precisions():
    """docs/targets.md's hand-written 'how each precision is made' table: one row per target, '-' exactly where
    the capability table has no such precision."""
    lines = (ROOT / "docs/targets.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(DETAIL_HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert [r[0] for r in rows] == [f"`{t}`" for t in TARGETS]
    for row in rows:
        caps = TARGETS[row[0].strip("`")]
        for precision, cell in zip(Precision, row[1:]):
            assert (cell != "-") == (precision in caps.precisions), (caps.id, precision.value, cell)


def test_check_and_rewrite(tmp_path, capsys):
    for rel, _, _ in docs_tables.BLOCKS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert docs_tables.main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "docs/targets.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `onnx` |", "| `onnx2` |", 1), encoding="utf-8")
    assert docs_tables.main(["--check", "--root", str(tmp_path)]) == 1
    assert "run 'python -m edgehmr.docs_tables'" in capsys.readouterr().out
    assert docs_tables.stale_blocks(tmp_path) == ["docs/targets.md"]
    assert docs_tables.main(["--root", str(tmp_path)]) == 0
    assert page.read_text(encoding="utf-8") == (ROOT / "docs/targets.md").read_text(encoding="utf-8")
    page.write_text("no markers\n", encoding="utf-8")
    assert docs_tables.main(["--root", str(tmp_path)]) == 2
    assert "expected one '<!-- targets-table:start -->'" in capsys.readouterr().err


def _outside_code(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(path: Path) -> Iterator[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to '-', '-N' on repeats."""
    seen: dict[str, int] = {}
    for line in _outside_code(path.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            seen[slug] = seen.get(slug, -1) + 1
            yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for line in _outside_code(page.read_text(encoding="utf-8")):
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{target}: no file {dest}")
            elif anchor and dest.suffix == ".md" and anchor not in set(_anchors(dest)):
                broken.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
