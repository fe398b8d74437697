"""Self-tests: `selftests/<rev>.sql` replayed against recorded transcripts.

A self-test is one `BEGIN … ROLLBACK` block that fails by raising (Sqitch's
verify scripts). The runner replays it statement by statement and writes a
psql-like transcript — the comment lines before each statement, its first
line, then its command tag or result rows, NOTICE lines and errors — with
volatile values (uuids, timestamps, hashes, durations) normalised so the
transcript is stable run to run. It then proves nothing persisted (catalog
fingerprint and the row count of every IU Core table unchanged) and compares
the transcript with `selftests/<rev>.expected`.

A self-test runs as politely as a migration: with the run's lock_timeout and
statement_timeout, and a self-test that hits lock_timeout is rolled back and
retried whole (iu_core.framework.lockretry); the retries go to the run's transcript,
never into the self-test's own. Its snapshots read the catalog and the tables
with plain SELECTs in their own transactions (ACCESS SHARE: no writer waits).
"""

from __future__ import annotations

import difflib
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, LockRetriesExhausted, SqlFileError
from .fingerprint import commit_channels, current_heads, persisted, snapshot
from .layout import RevisionFiles, applied_chain, script_directory
from .lockretry import LOCK_NOT_AVAILABLE, LockRetries
from .runner import execute, notices
from .sqlfiles import expand, project_root, shown, split_statements
from .transcript import format_table

# A self-test runs at REPEATABLE READ (one snapshot, so production's commits do
# not move what it compares); updating a row another session changed since that
# snapshot is a serialization failure, and the self-test is replayed whole. A
# self-test raises one itself where another session's commit since its snapshot
# would otherwise fail it (selftests/lib/catalog_set_aside.sql).
SERIALIZATION_FAILURE = "40001"
CONFLICT_TRIES = 10

if TYPE_CHECKING:
    import psycopg

    from ..config import RunOptions

_NORMALISE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}(?::?\d{2})?|Z)?"), "<timestamp>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<md5>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?ms\b"), "<ms>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}\.\d+\b"), "<interval>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
]


def normalise(text: str) -> str:
    for rx, repl in _NORMALISE:
        text = rx.sub(repl, text)
    return text


@dataclass
class SelftestResult:
    name: str
    status: str  # passed | failed | mismatch | skipped | recorded | refused (a lock, every try)
    reason: str = ""
    transcript: list[str] = field(default_factory=list)
    diff: str = ""
    lock_retries: dict[str, Any] | None = None  # its tries, when it hit lock_timeout
    moved_by_others: list[str] = field(default_factory=list)  # tables other sessions wrote meanwhile
    conflict_retries: int = 0  # replays after a serialization failure

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped", "recorded")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "reason": self.reason, "diff": self.diff}
        if self.lock_retries:
            out["lock_retries"] = self.lock_retries
        if self.moved_by_others:
            out["moved_by_others"] = self.moved_by_others
        if self.conflict_retries:
            out["conflict_retries"] = self.conflict_retries
        return out


@dataclass
class Step:
    sql: str
    line: int
    comments: list[str]
    # Where the statement was written when not in the self-test itself (an `\\ir`-included
    # file, e.g. the revision's own rollback), relative to the project.
    file: str | None = None


def load(path: Path) -> list[Step]:
    """Statements with the comment lines just above them; BEGIN first, ROLLBACK last, no COMMIT."""
    from pglast import parse_sql

    # A self-test may `\\ir` shared SQL, and the revision's own migration or rollback file
    # whole, so that it exercises the text that runs, not a copy; each statement keeps
    # the file and line it was written at.
    root = project_root(path)
    ex = expand(path, root)
    text = ex.text
    steps: list[Step] = []
    prev_end = 0
    for sql, start in split_statements(text):
        gap = text[prev_end:start]
        comments = [ln.strip() for ln in gap.splitlines() if ln.strip().startswith("--")]
        origin = ex.origin(text.count("\n", 0, start) + 1)
        own = origin.path.resolve() == path.resolve()
        steps.append(Step(sql=sql, line=origin.line, comments=comments,
                          file=None if own else shown(origin.path, root)))
        prev_end = start + len(sql)
    if not steps:
        raise SqlFileError(f"{path}: empty self-test", file=str(path))
    kinds = [_txn_kind(parse_sql(s.sql)[0].stmt) for s in steps]
    if kinds[0] not in ("TRANS_STMT_BEGIN", "TRANS_STMT_START") or kinds[-1] != "TRANS_STMT_ROLLBACK":
        raise SqlFileError(f"{path}: a self-test is one BEGIN … ROLLBACK block (first statement BEGIN, "
                           "last ROLLBACK)", file=str(path))
    allowed = {None, "TRANS_STMT_SAVEPOINT", "TRANS_STMT_RELEASE", "TRANS_STMT_ROLLBACK_TO"}
    for step, kind in zip(steps[1:-1], kinds[1:-1], strict=True):
        if kind not in allowed:
            where = step.file or str(path)
            raise SqlFileError(
                f"{where}:{step.line}: {step.sql.split()[0].upper()} inside a self-test would end its "
                "transaction (and could persist); only SAVEPOINT / RELEASE / ROLLBACK TO are allowed",
                file=where, line=step.line,
            )
    return steps


def _at(error: dict[str, Any]) -> str:
    """`line N` of the self-test itself, `FILE:N` of a file it includes."""
    return f"{error['file']}:{error['line']}" if error.get("file") else f"line {error['line']}"


def _txn_kind(node: Any) -> str | None:
    from pglast import ast

    if isinstance(node, ast.TransactionStmt) and node.kind is not None:
        return node.kind.name
    return None


def replay(conn: psycopg.Connection[Any], steps: list[Step]) -> tuple[list[str], dict[str, Any] | None]:
    """Run the steps on an autocommit connection, each through the one statement
    runner (`runner.execute`); (transcript lines, error or None)."""
    import psycopg

    out: list[str] = []
    error = None
    try:
        with notices(conn) as said:
            for step in steps:
                out.extend(step.comments)
                first = step.sql.strip().splitlines()[0]
                out.append("> " + (first if len(first) <= 100 else first[:97] + "..."))
                said.clear()
                try:
                    done = execute(conn, step.sql)
                except psycopg.Error as exc:
                    diag = getattr(exc, "diag", None)
                    msg = (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
                    out.extend(f"NOTICE:  {normalise(n)}" for n in said)
                    out.append(f"ERROR:  {normalise(msg)}")
                    error = {"line": step.line, "file": step.file, "sqlstate": exc.sqlstate, "message": msg}
                    break
                out.extend(f"NOTICE:  {normalise(n)}" for n in said)
                if done.columns is not None and done.rows is not None:
                    out.extend(format_table(done.columns, [[_norm_cell(v) for v in r] for r in done.rows]))
                else:
                    out.append(done.tag)
    finally:
        if conn.info.transaction_status != 0:  # still in (or aborted) transaction: never keep it
            conn.execute("ROLLBACK")
            if error:
                out.append("ROLLBACK")
    return out, error


def _norm_cell(v: Any) -> Any:
    """Numbers and booleans stay themselves (psql aligns them); text is normalised."""
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, dict | list):
        v = json.dumps(v, sort_keys=True, separators=(", ", ": "), default=str)
    return normalise(str(v))


def available(project: Path) -> list[str]:
    """Revisions with a self-test, in chain order."""
    script = script_directory(project)
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    return [r for r in chain if RevisionFiles(project, r).selftest.is_file()]


def set_timeouts(conn: psycopg.Connection[Any], options: RunOptions) -> None:
    """The run's lock_timeout and statement_timeout, for the session (integers: no text reaches SQL)."""
    conn.execute(f"SET lock_timeout = {int(options.lock_timeout_ms)}")
    conn.execute(f"SET statement_timeout = {int(options.statement_timeout_ms)}")


def run(conn: psycopg.Connection[Any], project: Path, names: list[str] | None = None,
        *, record: bool = False, retries: LockRetries | None = None) -> list[SelftestResult]:
    """Replay the named (default: every applied) self-test on `conn`, an autocommit connection.

    With `retries`, the session gets its options' timeouts and a self-test
    that hits lock_timeout is retried whole; one that does on every try is
    `refused`, and the others still run.
    """

    if retries is not None:
        set_timeouts(conn, retries.options)
    known = available(project)
    for n in names or []:
        if n not in known:
            raise BadInput(f"no self-test {n!r}; self-tests: {', '.join(known) or '(none)'}")
    heads = current_heads(conn)
    applied = set(applied_chain(project, heads))
    channels = commit_channels(conn)
    results = []
    for name in names or known:
        path = RevisionFiles(project, name).selftest
        if name not in applied:
            results.append(SelftestResult(
                name, "skipped", f"revision {name} is not applied (database at {', '.join(heads) or 'base'})"))
            continue
        steps = load(path)
        conflicts = 0
        try:
            while True:
                before, lines, error, after = _replay_retried(conn, project, name, steps, retries,
                                                              counted=bool(channels))
                if not (error and error["sqlstate"] == SERIALIZATION_FAILURE) or conflicts + 1 >= CONFLICT_TRIES:
                    break
                conflicts += 1
                time.sleep(random.uniform(0.05, 0.1) * conflicts)
        except LockRetriesExhausted as exc:
            results.append(SelftestResult(name, "refused", exc.message,
                                          lock_retries=retries.evidence(name) if retries else None))
            continue
        # Production keeps writing while a self-test runs: a row count another
        # session moved is not the self-test's, unless something installed lets
        # SQL commit elsewhere (then it cannot be told apart and fails).
        changed, others = persisted(before, after, channels)
        if changed:
            why = (f" ({', '.join(channels)} installed: nothing tells another session's commit from one "
                   "the self-test made through it)" if channels and any(
                       c.startswith(("~ count ", "~ rows ")) for c in changed) else "")
            changed[-1] += why
            lines.append(f"-- iucore: PERSISTED after ROLLBACK: {'; '.join(changed)}")
        else:
            # the same line whatever other sessions did: the transcript is compared
            lines.append("-- iucore: nothing persisted (catalog fingerprint unchanged; no row outlived the ROLLBACK)")
        res = SelftestResult(name, "passed", transcript=lines,
                             lock_retries=retries.evidence(name) if retries else None, moved_by_others=others,
                             conflict_retries=conflicts)
        notes = []
        if conflicts:
            notes.append(f"replayed {conflicts}x after a serialization failure (another session committed a "
                         "write to a row this self-test writes or sets aside)")
        if others:
            notes.append(f"row counts moved by other sessions meanwhile: {', '.join(others)} (no extension or "
                         "language is installed through which a rolled-back transaction could commit them)")
        res.reason = "; ".join(notes)
        expected_path = RevisionFiles(project, name).expected
        if error or changed:
            res.status = "failed"
            res.reason = (f"{_at(error)}: {error['message']}" if error
                          else f"the self-test persisted changes: {'; '.join(changed)}")
        elif record:
            expected_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            res.status, res.reason = "recorded", f"wrote {expected_path.relative_to(project)}"
        elif not expected_path.is_file():
            res.status, res.reason = "mismatch", f"no recorded transcript {expected_path.name}: run with --record and review it"
        else:
            want = expected_path.read_text(encoding="utf-8").splitlines()
            if want != lines:
                res.status, res.reason = "mismatch", "transcript differs from the recorded one"
                res.diff = "\n".join(difflib.unified_diff(
                    want, lines, f"selftests/{name}.expected", f"{name} (this run)", lineterm=""))
        results.append(res)
    return results


Snapshot = dict[str, dict[str, str]]


def _replay_retried(conn: psycopg.Connection[Any], project: Path, name: str, steps: list[Step],
                    retries: LockRetries | None, *, counted: bool
                    ) -> tuple[Snapshot, list[str], dict[str, Any] | None, Snapshot]:
    """Snapshot, replay, snapshot; a lock timeout anywhere in them retries all three
    (the replay rolled itself back). Raises LockRetriesExhausted when every try timed out.

    `counted`: the snapshots count every row of every IU Core table. Only
    worth it when something installed lets SQL commit elsewhere: otherwise a
    moved count is another session's (fingerprint.persisted), and counting
    millions of rows twice per self-test would be for nothing."""

    while True:
        if retries is not None:
            retries.begin_try()
        try:
            before = snapshot(conn, with_counts=counted, project=project)
            lines, error = replay(conn, steps)
            if not (retries and retries.enabled and error and error["sqlstate"] == LOCK_NOT_AVAILABLE):
                return before, lines, error, snapshot(conn, with_counts=counted, project=project)
            where: str | None = f"{error['file'] or f'selftests/{name}.sql'}:{error['line']}"
            cause: BaseException | None = None
        except Exception as exc:
            if retries is None or not retries.retryable(exc):
                raise
            if conn.info.transaction_status != 0:
                conn.execute("ROLLBACK")
            where, cause = None, exc
        finally:
            if retries is not None:
                retries.end_try()
        sleep = retries.timed_out(cause, name, "selftest", where=where)
        retries.sleep(sleep)
        retries.next_try(name)
