"""psql-like transcripts: command tags, NOTICE lines, aligned result tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Sink = Callable[[str], None]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(", ", ": "), sort_keys=True, default=str)
    if isinstance(v, tuple):
        return "{" + ",".join(_cell(x) for x in v) + "}"
    return str(v)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Render rows the way psql's aligned format does (header, rule, rows, count)."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [len(c) for c in columns]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    # psql right-aligns numbers and left-aligns everything else
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float | Decimal) and not isinstance(r[i], bool)
                           for r in rows if r[i] is not None)
        for i in range(len(columns))
    ]
    out = [" " + " | ".join(c.center(widths[i]) for i, c in enumerate(columns)).rstrip()]
    out.append("-" + "-+-".join("-" * w for w in widths) + "-")
    for r in cells:
        out.append(" " + " | ".join(
            c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]) for i, c in enumerate(r)
        ).rstrip())
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return out


@dataclass
class StatementResult:
    section: str
    line: int
    tag: str
    notices: list[str] = field(default_factory=list)
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None

    def lines(self) -> list[str]:
        out = [f"NOTICE:  {n}" for n in self.notices]
        if self.columns is not None and self.rows is not None:
            out += format_table(self.columns, self.rows)
            out.append("")
        else:
            out.append(self.tag)
        return out

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"section": self.section, "line": self.line, "tag": self.tag}
        if self.notices:
            d["notices"] = self.notices
        if self.columns is not None:
            d["rows"] = [dict(zip(self.columns, r, strict=False)) for r in self.rows or []]
        return d
