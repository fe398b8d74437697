"""docs/seeds.md states the project's figures beside the seeds': it cannot drift from the code.

The measurement is tests/seed_numbers.py (the seeds' story on an empty
database); this test holds the document's "the project" column equal to it,
row for row, and every measured figure must have its row.
"""

from __future__ import annotations

import re

from .conftest import PG_MAJOR, ROOT
from .seed_numbers import measure

DOC = ROOT / "docs" / "seeds.md"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")
PIPE = re.compile(r"(?<!\\)\|")  # a cell boundary; \| is a pipe inside a cell


SECTION = "## The seeds' numbers beside the project's"


def documented() -> dict[str, str]:
    """{key: the project's value} of every keyed row of the tables in SECTION of docs/seeds.md."""
    rows: dict[str, str] = {}
    inside = False
    for n, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("## "):
            inside = line.strip() == SECTION
        m = ROW.match(line) if inside else None
        if not m:
            continue
        cells = [c.strip().replace("\\|", "|") for c in PIPE.split(line.strip())[1:-1]]
        assert len(cells) == 4, f"docs/seeds.md:{n}: a figure row has 4 cells (figure, seed, project, why)"
        assert m.group(1) not in rows, f"docs/seeds.md:{n}: {m.group(1)} is stated twice"
        rows[m.group(1)] = cells[2]
    return rows


def test_the_document_reads_as_a_table_of_figures() -> None:
    rows = documented()
    assert len(rows) >= 40 and all(v for v in rows.values())


def test_docs_seeds_md_states_what_the_project_measures(new_db) -> None:
    measured = measure(new_db(), ROOT, PG_MAJOR, say=print)
    doc = documented()
    assert sorted(set(measured) - set(doc)) == [], "measured, but docs/seeds.md has no row for it"
    assert sorted(set(doc) - set(measured)) == [], "docs/seeds.md states a figure nothing measures"
    wrong = [f"| `{k}` | … | {measured[k].replace('|', chr(92) + '|')} | … |   (the document says: {doc[k]})"
             for k in measured if measured[k] != doc[k]]
    assert not wrong, "docs/seeds.md is out of date; the project now measures:\n" + "\n".join(wrong)
