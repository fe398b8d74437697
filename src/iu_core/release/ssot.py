"""The SSOT check of seed 004: the registry against the live catalog, row for row, with
the catalog seed INSERTs of 280 and 034 re-run in a rolled-back transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.registry import catalog_row, governed
from ..errors import SqlFileError
from ..framework.layout import RevisionFiles
from ..framework.sqlfiles import MIGRATION_SECTIONS, parse_script

if TYPE_CHECKING:
    import psycopg


# --------------------------------------------------------------------------- SSOT
# Seed 004: the registry is the single source of truth of the command catalog,
# and "the R280 seed was re-applied as a no-op verification of SSOT consistency:
# INSERT 0 0". These revisions' idempotent catalog INSERTs are re-run.
SSOT_SEED_REVISIONS = ("280", "034")
_CATALOG = "dot_iu_command_catalog"
_COLUMNS = ("category", "mutating", "reversible", "target_functions")


@dataclass
class CatalogDifference:
    command: str
    problem: str  # missing | extra | differs
    detail: str

    def line(self) -> str:
        return f"catalog row {self.command}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "problem": self.problem, "detail": self.detail}


@dataclass
class SeedRerun:
    """One file's catalog seed INSERT, re-run inside a transaction that rolls back."""

    revision: str
    file: str
    tag: str = ""
    would_insert: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.tag == "INSERT 0 0"

    def line(self) -> str:
        if self.error:
            return f"{self.file} seed INSERT re-run (rolled back): could not prove INSERT 0 0: {self.error}"
        if self.ok:
            return f"{self.file} seed INSERT re-run (rolled back): INSERT 0 0"
        return (f"{self.file} seed INSERT re-run (rolled back): {self.tag} — the live catalog lacks "
                f"row(s) the file seeds: {', '.join(self.would_insert)}")

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "file": self.file, "tag": self.tag, "ok": self.ok,
                "would_insert": self.would_insert, "error": self.error}


@dataclass
class SsotReport:
    applied: list[str]
    registry_rows: int = 0
    catalog_rows: int = 0
    differences: list[CatalogDifference] = field(default_factory=list)
    reruns: list[SeedRerun] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences and all(r.ok for r in self.reruns)

    def lines(self) -> list[str]:
        """The problems, one line each (empty when the SSOT holds)."""
        out = [f"SSOT check could not run: {self.error}"] if self.error else []
        out += [d.line() for d in self.differences]
        out += [r.line() for r in self.reruns if not r.ok]
        return out

    def summary(self) -> list[str]:
        """What was proven, one line each, problems included."""
        if self.error:
            return self.lines()
        out = [f"registry ↔ catalog: {self.registry_rows} governed command(s), {self.catalog_rows} catalog row(s), "
               f"{len(self.differences)} difference(s)"]
        out += [f"  {d.line()}" for d in self.differences]
        out += [r.line() for r in self.reruns]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "applied": self.applied, "registry_rows": self.registry_rows,
                "catalog_rows": self.catalog_rows, "differences": [d.to_json() for d in self.differences],
                "seed_reruns": [r.to_json() for r in self.reruns], "error": self.error}


def catalog_seed_insert(path: Path) -> str:
    """The one idempotent `INSERT INTO public.dot_iu_command_catalog … ON CONFLICT DO NOTHING` of a file's body."""
    from pglast import ast, parse_sql
    from pglast.enums import OnConflictAction

    found = []
    for stmt in parse_script(path, MIGRATION_SECTIONS).section("body"):
        node = parse_sql(stmt.sql)[0].stmt
        if (isinstance(node, ast.InsertStmt) and node.relation is not None
                and node.relation.relname == _CATALOG and node.relation.schemaname == "public"
                and node.onConflictClause is not None
                and node.onConflictClause.action == OnConflictAction.ONCONFLICT_NOTHING):
            found.append(stmt.sql)
    if len(found) != 1:
        raise SqlFileError(f"{path}: expected one idempotent INSERT INTO public.{_CATALOG} … ON CONFLICT DO "
                           f"NOTHING in @body, found {len(found)}", file=str(path))
    return found[0]


def ssot(conn: psycopg.Connection[Any], project: Path, applied: list[str]) -> SsotReport:
    """The registry's governed commands against the live catalog, row for row, and
    the seed INSERTs of 280 and 034 re-run in a rolled-back transaction (INSERT 0 0).

    `conn` must be in autocommit mode; nothing it runs here persists.
    """
    import psycopg as pg

    rep = SsotReport(applied=applied)
    if not applied:
        return rep
    want = {c.name: catalog_row(c) for c in governed() if c.revision in applied}
    rep.registry_rows = len(want)
    if not want and conn.execute(f"SELECT to_regclass('public.{_CATALOG}') IS NULL").fetchone() == (True,):
        return rep  # not an IU Core chain (or before its catalog): nothing to hold the registry against
    try:
        got = {r[0]: (r[0], r[1], r[2], r[3], tuple(r[4])) for r in conn.execute(
            f"SELECT command_name, {', '.join(_COLUMNS)} FROM public.{_CATALOG}")}
    except pg.Error as exc:
        rep.error = f"cannot read public.{_CATALOG}: {_first_line(exc)}"
        return rep
    rep.catalog_rows = len(got)
    for name in sorted(set(want) | set(got)):
        if name not in got:
            rep.differences.append(CatalogDifference(name, "missing", "in the registry, missing from the catalog"))
        elif name not in want:
            rep.differences.append(CatalogDifference(
                name, "extra", "in the catalog, not a governed command of the applied revisions in the registry"))
        elif want[name] != got[name]:
            diffs = [f"{col} registry {w!r}, catalog {g!r}"
                     for col, w, g in zip(_COLUMNS, want[name][1:], got[name][1:], strict=True) if w != g]
            rep.differences.append(CatalogDifference(name, "differs", "; ".join(diffs)))
    for rev in SSOT_SEED_REVISIONS:
        if rev in applied:
            rep.reruns.append(_rerun(conn, project, rev))
    return rep


def _rerun(conn: psycopg.Connection[Any], project: Path, rev: str) -> SeedRerun:
    import psycopg as pg

    path = RevisionFiles(project, rev).forward
    res = SeedRerun(revision=rev, file=str(path.relative_to(project)))
    try:
        insert = catalog_seed_insert(path)
    except SqlFileError as exc:
        res.error = exc.message
        return res
    names = f"SELECT command_name FROM public.{_CATALOG}"
    try:
        with conn.transaction(force_rollback=True):
            # Never queue behind a migration holding the catalog.
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("SET LOCAL statement_timeout = '30s'")
            before = {r[0] for r in conn.execute(names)}
            cur = conn.execute(insert.encode())  # bytes: the file's text, no %-placeholder parsing
            res.tag = cur.statusmessage or ""
            if cur.rowcount:
                res.would_insert = sorted({r[0] for r in conn.execute(names)} - before)
    except pg.Error as exc:
        res.error = _first_line(exc)
        if isinstance(exc, pg.errors.InsufficientPrivilege):
            res.error += " (run db verify as the role that owns the catalog)"
    return res


def _first_line(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    return (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
