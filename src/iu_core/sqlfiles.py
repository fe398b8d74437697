"""Reading the mirrored SQL files of a revision: sections, statements, checksums.

A file is cut into sections at lines `-- @<name>` and each section into
statements by PostgreSQL's own parser (pglast), so dollar-quoted bodies and
semicolons inside strings are safe (docs/sql-conventions.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SqlFileError

MIGRATION_SECTIONS = ("preflight", "body", "postcheck")
ROLLBACK_SECTIONS = ("guard", "body", "assert")
# Sections whose errors mean "the database is not in the state this script
# expects": a refusal, nothing changed.
GUARD_SECTIONS = frozenset({"preflight", "guard"})

_MARKER = re.compile(r"^--\s*@(\w+)\s*$")
_TXN_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|END|START\s+TRANSACTION|SAVEPOINT|RELEASE|ABORT)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    section: str
    sql: str
    line: int  # 1-based line in the file where the statement starts


@dataclass
class SqlScript:
    path: Path
    sha256: str
    statements: list[Statement] = field(default_factory=list)

    def section(self, name: str) -> list[Statement]:
        return [s for s in self.statements if s.section == name]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_statements(sql: str) -> list[tuple[str, int]]:
    """Split SQL into (statement, 0-based char offset) with the real parser."""
    from pglast import parser
    from pglast.parser import ParseError

    try:
        slices = parser.split(sql, with_parser=True, only_slices=True)
    except ParseError as exc:
        raise SqlFileError(f"SQL does not parse: {exc}") from exc
    return [(sql[s], s.start) for s in slices]


def parse_script(path: Path, sections: tuple[str, ...]) -> SqlScript:
    """Parse a migration or rollback file into sectioned statements.

    Raises SqlFileError naming the file and line when the file breaks the
    conventions: missing/misordered sections, SQL before the first marker,
    transaction control, or SQL that does not parse.
    """
    if not path.is_file():
        raise SqlFileError(f"{path}: file not found", file=str(path))
    text = path.read_text(encoding="utf-8")
    chunks: list[tuple[str, int, list[str]]] = []  # (section, first line no, lines)
    preamble: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        m = _MARKER.match(line.rstrip("\n"))
        if m:
            chunks.append((m.group(1), lineno + 1, []))
        elif chunks:
            chunks[-1][2].append(line)
        else:
            preamble.append(line)

    found = tuple(name for name, _, _ in chunks)
    if found != sections:
        raise SqlFileError(
            f"{path}: sections are {list(found)}, expected {list(sections)} "
            "(markers are lines '-- @<name>', see docs/sql-conventions.md)",
            file=str(path),
        )
    if split_statements("".join(preamble)):
        raise SqlFileError(f"{path}: SQL before the first '-- @' marker", file=str(path))

    script = SqlScript(path=path, sha256=hashlib.sha256(text.encode()).hexdigest())
    for name, first_line, lines in chunks:
        body = "".join(lines)
        try:
            stmts = split_statements(body)
        except SqlFileError as exc:
            raise SqlFileError(f"{path} (section @{name}): {exc}", file=str(path)) from exc
        for sql, offset in stmts:
            stmt_line = first_line + body.count("\n", 0, offset)
            # psql reports the line of the first token; skip leading comments/blank lines
            stripped = _strip_leading_comments(sql)
            stmt_line += sql[: len(sql) - len(stripped)].count("\n")
            if _TXN_CONTROL.match(stripped):
                raise SqlFileError(
                    f"{path}:{stmt_line}: transaction control is not allowed; iucore runs "
                    "the file as one transaction (psql -1 by hand)",
                    file=str(path),
                    line=stmt_line,
                )
            script.statements.append(Statement(section=name, sql=stripped, line=stmt_line))
    for name in sections:
        if name != "body" and not script.section(name):
            raise SqlFileError(f"{path}: section @{name} is empty", file=str(path))
    return script


def _strip_leading_comments(sql: str) -> str:
    out = sql
    while True:
        s = out.lstrip()
        if s.startswith("--"):
            nl = s.find("\n")
            out = "" if nl < 0 else s[nl + 1 :]
            continue
        return s
