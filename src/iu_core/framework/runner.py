"""Executing SQL statement by statement on a live connection.

`execute` runs one statement as written and `notices` collects what the server
says meanwhile: the one way iucore runs a statement of a file, for a revision's
script (`run_script`, here) and for a self-test (`selftest.replay`). The caller
owns the transaction; `run_script` collects the transcript (tags, notices,
rows) and turns an error into a refusal (the guard sections) or a failure
(everything else).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import RevisionFailed, RevisionRefused
from .sqlfiles import GUARD_SECTIONS, SqlScript, Statement
from .transcript import Sink, StatementResult

if TYPE_CHECKING:
    import psycopg

MAX_ROWS_KEPT = 50
# SQLSTATE classes that are about the session or the server, never a guard's verdict.
_NOT_A_DECISION = frozenset({"08", "53", "54", "57", "58", "XX"})  # evidence rows per statement kept in transcript and audit


@dataclass
class ScriptRun:
    """What running one script produced, for the transcript and the audit row."""

    revision: str
    direction: str
    script: SqlScript
    results: list[StatementResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    duration_ms: float = 0.0
    error: dict[str, Any] | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # sha256 of the revision's files
    # What the run observed of the database around the script (iu_core.framework.observe), for its report.
    observed: dict[str, Any] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        """What the audit row keeps: the guard and check sections' evidence (`checks`), the
        command tag of every statement that ran, in order, and what the run observed around it."""
        ev: dict[str, Any] = {"transcript": [
            {"section": r.section, "file": self.script.rel(st.file), "line": r.line, "tag": r.tag}
            for st, r in zip(self.script.statements, self.results, strict=False)]}
        ev.update(self.checks())
        if self.observed:
            ev["observed"] = self.observed
        return ev

    def checks(self) -> dict[str, Any]:
        """Notices and result rows of the guard and check sections, and the error if any
        (what a run's result prints; the audit row keeps more, see `evidence`)."""
        ev: dict[str, Any] = {}
        for r in self.results:
            if r.section == "body":
                continue
            sec = ev.setdefault(r.section, {"statements": 0, "notices": [], "rows": []})
            sec["statements"] += 1
            sec["notices"].extend(r.notices)
            if r.columns is not None:
                sec["rows"].extend(dict(zip(r.columns, row, strict=False)) for row in r.rows or [])
        if self.error:
            ev["error"] = self.error
        return ev


@dataclass
class Executed:
    """One statement's answer: its command tag, and its columns and rows when it returned any."""

    tag: str
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None


def execute(conn: psycopg.Connection[Any], sql: str, max_rows: int | None = None) -> Executed:
    """Run one statement exactly as written (sent as bytes: no %-placeholder parsing);
    keep up to `max_rows` of its rows (all when None). A psycopg.Error propagates."""
    with conn.cursor() as cur:
        cur.execute(sql.encode())
        if cur.description is None:
            return Executed(cur.statusmessage or "")
        rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows)
        return Executed(cur.statusmessage or "", [d.name for d in cur.description], [list(r) for r in rows])


@contextmanager
def notices(conn: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """The server's NOTICE messages while the block runs, in order (the caller may clear the list)."""

    said: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        said.append(diag.message_primary or "")

    conn.add_notice_handler(on_notice)
    try:
        yield said
    finally:
        conn.remove_notice_handler(on_notice)


# A hook the fault-injection tests use to act between statements: it gets the
# run's own connection (inside its transaction), the statement and its index.
StatementHook = Callable[["psycopg.Connection[Any]", Statement, int], None]


def run_script(
    conn: psycopg.Connection[Any],
    run: ScriptRun,
    sink: Sink | None = None,
    before_statement: StatementHook | None = None,
) -> ScriptRun:
    """Run every statement of `run.script` on `conn` (inside the caller's transaction)."""
    import psycopg

    t0 = time.perf_counter()
    section = None
    try:
        with notices(conn) as said:
            for i, stmt in enumerate(run.script.statements):
                if sink and stmt.section != section:
                    sink(f"-- @{stmt.section}")
                section = stmt.section
                if before_statement:
                    before_statement(conn, stmt, i)
                said.clear()
                try:
                    done = execute(conn, stmt.sql, MAX_ROWS_KEPT)
                except psycopg.Error as exc:
                    raise _classify(run, stmt, exc, list(said), sink) from exc
                res = StatementResult(section=stmt.section, line=stmt.line, tag=done.tag, notices=list(said),
                                      columns=done.columns, rows=done.rows)
                run.results.append(res)
                if sink:
                    for line in res.lines():
                        sink(line)
    finally:
        run.duration_ms = (time.perf_counter() - t0) * 1000
    return run


def _classify(
    run: ScriptRun,
    stmt: Statement,
    exc: Exception,
    notices: list[str],
    sink: Sink | None,
) -> RevisionRefused | RevisionFailed:
    diag = getattr(exc, "diag", None)
    sqlstate: str = getattr(exc, "sqlstate", None) or ""
    primary = (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
    rel = run.script.rel(stmt.file)
    run.error = {
        "section": stmt.section,
        "file": rel,
        "line": stmt.line,
        "sqlstate": sqlstate,
        "message": primary,
        "notices": notices,
    }
    if sink:
        for n in notices:
            sink(f"NOTICE:  {n}")
        sink(f"ERROR:  {primary}")
    data = {
        "revision": run.revision,
        "direction": run.direction,
        "file": rel,
        "line": stmt.line,
        "section": stmt.section,
        "sqlstate": sqlstate,
    }
    # A guard that never got to decide (connection lost, cancelled, out of
    # resources, a lock it waited for, a privilege the role lacks) has failed, not refused.
    infrastructure = sqlstate[:2] in _NOT_A_DECISION or sqlstate in ("55P03", "42501")
    if stmt.section in GUARD_SECTIONS and not infrastructure:
        what = {"preflight": "preflight", "guard": "rollback guard" if run.direction == "downgrade"
                else "guard"}[stmt.section]
        return RevisionRefused(
            f"{run.revision} {run.direction} refused by its {what} ({rel}:{stmt.line}): {primary}",
            **data,
        )
    hint = ""
    if sqlstate == "55P03":
        hint = " — another transaction holds a lock this revision needs; retry when it ends"
    elif sqlstate == "57014":
        hint = " — statement_timeout reached"
    elif sqlstate == "42501":
        hint = (" — the role running iucore lacks a privilege here (README: \"Running as an ordinary role\" "
                "lists what it needs)")
    return RevisionFailed(
        f"{run.revision} {run.direction} failed in @{stmt.section} ({rel}:{stmt.line}): "
        f"{primary}{hint}; the revision was rolled back",
        **data,
    )

