"""Reading the mirrored SQL files of a revision: includes, sections, statements, checksums.

A file may include another with psql's own `\\ir FILE` (path relative to the
including file), so a function body is written once and both the revision
that creates it and a later rollback that restores it run the same text
(docs/sql-conventions.md). Everything below works on the EXPANDED text — the
text psql runs — while each statement keeps the file and line it was written
at, for messages. Checksums are taken over the expanded text, so moving SQL
into an included file does not change the checksum of what runs.

The expanded file is cut into sections at lines `-- @<name>` and each section
into statements by PostgreSQL's own parser (pglast), so dollar-quoted bodies
and semicolons inside strings are safe.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SqlFileError

MIGRATION_SECTIONS = ("preflight", "body", "postcheck")
ROLLBACK_SECTIONS = ("guard", "body", "assert")
# Sections whose errors mean "the database is not in the state this script
# expects": a refusal, nothing changed.
GUARD_SECTIONS = frozenset({"preflight", "guard"})

_MARKER = re.compile(r"^--\s*@(\w+)\s*$")
_INCLUDE = re.compile(r"^\\(?:ir|include_relative)[ \t]+(\S+)[ \t]*$")
_TXN_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|END|START\s+TRANSACTION|SAVEPOINT|RELEASE|ABORT)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Origin:
    """Where a line of an expanded file was written."""

    path: Path
    line: int  # 1-based


@dataclass(frozen=True)
class Expanded:
    """A SQL file with its `\\ir` includes replaced by the included text."""

    path: Path
    text: str
    origins: tuple[Origin, ...]  # one per line of `text`
    includes: tuple[Path, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def origin(self, line: int) -> Origin:
        """The file and line where line `line` (1-based) of the expanded text was written."""
        if not self.origins:
            return Origin(self.path, line)
        return self.origins[min(max(line, 1), len(self.origins)) - 1]


@dataclass(frozen=True)
class Statement:
    section: str
    sql: str
    line: int  # 1-based line where the statement starts, in `file`
    file: Path | None = None  # the file it was written in (an included file, or the script's own)


@dataclass
class SqlScript:
    path: Path
    sha256: str
    statements: list[Statement] = field(default_factory=list)
    root: Path | None = None
    includes: tuple[Path, ...] = ()

    def section(self, name: str) -> list[Statement]:
        return [s for s in self.statements if s.section == name]

    def rel(self, path: Path | None) -> str:
        """A statement's file, relative to the project when it lies inside it."""
        p = path or self.path
        if self.root is not None:
            try:
                return str(p.resolve().relative_to(self.root.resolve()))
            except ValueError:
                pass
        return str(p)


def project_root(path: Path) -> Path:
    """The project a SQL file belongs to: the nearest ancestor holding alembic.ini.

    Without one, the file's own directory (includes may then only go down).
    """
    for parent in path.resolve().parents:
        if (parent / "alembic.ini").is_file():
            return parent
    return path.resolve().parent


def _lines(text: str) -> list[str]:
    """Lines split on '\\n' only, each keeping its end (psql reads lines that way)."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _read(path: Path, shown: str) -> str:
    if not path.is_file():
        raise SqlFileError(f"{shown}: file not found", file=shown)
    try:
        # bytes → text without newline translation: the checksum is of what is on disk
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SqlFileError(f"{shown}: not UTF-8 ({exc.reason} at byte {exc.start})", file=shown) from None


def _statement_spans(text: str, shown: str) -> list[tuple[int, int, str]]:
    """(start, end inclusive, token name) of every token of `text`, by PostgreSQL's scanner."""
    from pglast import parser
    from pglast.parser import ParseError

    try:
        return [(t.start, t.end, t.name) for t in parser.scan(text)]
    except ParseError as exc:
        raise SqlFileError(f"{shown}: SQL does not scan: {exc}", file=shown) from exc


def expand(path: Path, root: Path | None = None) -> Expanded:
    """The file with every `\\ir FILE` line replaced by FILE's expanded text.

    An include line must stand between statements (not inside a string, a
    dollar-quoted body or an unfinished statement), name a file inside the
    project (`root`, by default the nearest ancestor with alembic.ini) that
    ends with a newline, and must not include itself, directly or not. Any
    other psql meta-command is refused. Errors name the file and line.

    Section markers in an included file are refused where sections are read
    (`parse_script`: a revision, rollback or runtime file), not here: a
    self-test, which has no sections, may include a whole revision file to
    exercise the very text that runs.
    """
    root = (root or project_root(path)).resolve()
    return _expand(path, root, ())


def _expand(path: Path, root: Path, stack: tuple[Path, ...]) -> Expanded:
    real = path.resolve()
    where = shown(path, root)
    text = _read(path, where)
    lines = _lines(text)
    metas = [i for i, ln in enumerate(lines) if ln.startswith("\\")]
    if not metas:
        return Expanded(path, text, tuple(Origin(path, n) for n in range(1, len(lines) + 1)), ())

    # Where is each meta line, and is it between statements? Scan the text with
    # the meta lines blanked (same length, so the offsets hold).
    starts, off = [], 0
    for ln in lines:
        starts.append(off)
        off += len(ln)
    blanked = list(lines)
    for i in metas:
        blanked[i] = " " * (len(lines[i]) - 1) + ("\n" if lines[i].endswith("\n") else " ")
    tokens = _statement_spans("".join(blanked), where)

    out: list[str] = []
    origins: list[Origin] = []
    includes: list[Path] = []
    meta_set = set(metas)
    for i, ln in enumerate(lines):
        lineno = i + 1
        if i not in meta_set or _inside_token(tokens, starts[i]):
            out.append(ln)
            origins.append(Origin(path, lineno))
            continue
        m = _INCLUDE.match(ln.rstrip("\r\n"))
        if not m:
            raise SqlFileError(
                f"{where}:{lineno}: psql meta-command {ln.split()[0]!r} is not supported in a revision "
                "file (only '\\ir FILE' is)", file=where, line=lineno)
        if not _between_statements(tokens, starts[i]):
            raise SqlFileError(
                f"{where}:{lineno}: '\\ir' inside an unfinished statement; an include stands "
                "between statements", file=where, line=lineno)
        target = (real.parent / m.group(1)).resolve()
        tshown = shown(target, root)
        if target != root and root not in target.parents:
            raise SqlFileError(f"{where}:{lineno}: '\\ir {m.group(1)}' leaves the project ({root})",
                               file=where, line=lineno)
        if target == real or target in stack:
            raise SqlFileError(f"{where}:{lineno}: '\\ir {m.group(1)}' includes itself "
                               f"(cycle through {tshown})", file=where, line=lineno)
        if not target.is_file():
            raise SqlFileError(f"{where}:{lineno}: '\\ir {m.group(1)}': {tshown} not found",
                               file=where, line=lineno)
        sub = _expand(target, root, (*stack, real))
        if sub.text and not sub.text.endswith("\n"):
            raise SqlFileError(f"{tshown}: an included file must end with a newline (included from "
                               f"{where}:{lineno})", file=tshown)
        out.append(sub.text)
        origins.extend(sub.origins)
        includes.extend([target, *sub.includes])
    return Expanded(path, "".join(out), tuple(origins), tuple(dict.fromkeys(includes)))


def shown(path: Path, root: Path) -> str:
    """PATH as a message shows it: relative to the project ROOT, or whole when outside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _inside_token(tokens: list[tuple[int, int, str]], offset: int) -> bool:
    return any(s <= offset <= e for s, e, _ in tokens)


def _between_statements(tokens: list[tuple[int, int, str]], offset: int) -> bool:
    """No unfinished statement before `offset`: the last real token before it is ';' (or none)."""
    last = None
    for s, _, name in tokens:
        if s >= offset:
            break
        if name not in ("SQL_COMMENT", "C_COMMENT"):
            last = name
    return last is None or last == "ASCII_59"


def checksum(path: Path, root: Path | None = None) -> str:
    """sha256 of the file as psql runs it (includes expanded)."""
    return expand(path, root).sha256


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


def statements(path: Path, root: Path | None = None) -> list[tuple[str, Origin]]:
    """Every statement of a SQL file (includes expanded), with where it was written."""
    ex = expand(path, root)
    out = []
    for sql, offset in split_statements(ex.text):
        stripped = _strip_leading_comments(sql)
        lead = sql[: len(sql) - len(stripped)].count("\n")
        out.append((stripped, ex.origin(ex.text.count("\n", 0, offset) + 1 + lead)))
    return out


def parse_script(path: Path, sections: tuple[str, ...], root: Path | None = None) -> SqlScript:
    """Parse a migration or rollback file into sectioned statements.

    Raises SqlFileError naming the file and line when the file breaks the
    conventions: a bad include, missing/misordered sections, SQL before the
    first marker, transaction control, or SQL that does not parse.
    """
    if not path.is_file():
        raise SqlFileError(f"{path}: file not found", file=str(path))
    root = (root or project_root(path)).resolve()
    ex = expand(path, root)
    chunks: list[tuple[str, int, list[str]]] = []  # (section, first line no, lines)
    preamble: list[str] = []
    for lineno, line in enumerate(_lines(ex.text), start=1):
        m = _MARKER.match(line.rstrip("\r\n"))
        if m and ex.origin(lineno).path.resolve() != path.resolve():
            o = ex.origin(lineno)
            oshown = shown(o.path, root)
            raise SqlFileError(f"{oshown}:{o.line}: a section marker in an included file (included from "
                               f"{shown(path, root)}); markers belong to the revision file",
                               file=oshown, line=o.line)
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

    script = SqlScript(path=path, sha256=ex.sha256, root=root, includes=ex.includes)
    for name, first_line, lines in chunks:
        body = "".join(lines)
        try:
            stmts = split_statements(body)
        except SqlFileError as exc:
            raise SqlFileError(f"{path} (section @{name}): {exc}", file=str(path)) from exc
        for sql, offset in stmts:
            # psql reports the line of the first token; skip leading comments/blank lines
            stripped = _strip_leading_comments(sql)
            expanded_line = (first_line + body.count("\n", 0, offset)
                             + sql[: len(sql) - len(stripped)].count("\n"))
            origin = ex.origin(expanded_line)
            if _TXN_CONTROL.match(stripped):
                where = script.rel(origin.path)
                raise SqlFileError(
                    f"{where}:{origin.line}: transaction control is not allowed; iucore runs "
                    "the file as one transaction (psql -1 by hand)",
                    file=where,
                    line=origin.line,
                )
            script.statements.append(Statement(section=name, sql=stripped, line=origin.line, file=origin.path))
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
