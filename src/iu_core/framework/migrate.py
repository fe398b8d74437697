"""The `iucore db` verbs as library functions: upgrade, downgrade, current, history.

Each builds an Alembic config around a MigrationSession and lets
migrations/env.py (iu_core.framework.alembic_env) do the run; the CLI only parses,
calls these and maps errors to exit codes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunOptions, default_actor, find_project_root
from ..errors import BadInput, MissingPrivilege
from ..pg.db import connect
from ..pg.target import Target
from . import audit
from .audit import record_check
from .backup import backup as take_backup
from .fingerprint import current_heads
from .layout import alembic_config, check_revision, revision_graph, script_directory
from .lockretry import LockRetries
from .offline import build as build_offline
from .runner import StatementHook
from .selftest import run as run_selftests
from .session import SESSION_KEY, MigrationSession
from .stamp import StampResult
from .transcript import Sink

if TYPE_CHECKING:
    import psycopg


# What each verb that only reads (or probes and rolls back) needs, said when the role lacks it.
NEEDS_AUDIT = ("iucore's reads need USAGE on schema iucore and SELECT on its tables: GRANT them, "
               "or connect as their owner")
NEEDS_SELFTEST = ("self-tests replay each applied revision's checks with the migration owner's rights, inside "
                  "a transaction they roll back (they read schema iucore and every IU Core table and call the "
                  "writers): run them as the owner, or GRANT that role to this one")


@contextmanager
def reading(target: Target, needs: str = NEEDS_AUDIT, *, app: str = "iucore") -> Iterator[psycopg.Connection[Any]]:
    """A connection for a verb that reads; a privilege the role lacks is bad input (exit 2) that
    names what was denied and what the verb needs (`needs`), not a traceback."""
    import psycopg

    with connect(target, app=app) as conn:
        try:
            yield conn
        except psycopg.errors.InsufficientPrivilege as exc:
            raise MissingPrivilege(
                f"cannot read {target.display}: {exc.diag.message_primary or exc} ({needs})",
                sqlstate=exc.sqlstate,
            ) from None


@dataclass
class RunResult:
    run_id: str
    direction: str
    mode: str
    target: str
    from_heads: list[str]
    to_heads: list[str]
    revisions: list[dict[str, Any]] = field(default_factory=list)
    fingerprint_before: str | None = None
    fingerprint_after: str | None = None

    @property
    def nothing_to_do(self) -> bool:
        return not self.revisions

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "direction": self.direction,
            "mode": self.mode,
            "target": self.target,
            "from": self.from_heads,
            "to": self.to_heads,
            "revisions": self.revisions,
            "fingerprint_before": self.fingerprint_before,
            "fingerprint_after": self.fingerprint_after,
        }


def _run(
    direction: str,
    target: Target,
    revision: str,
    *,
    project: Path | None,
    options: RunOptions,
    sink: Sink | None,
    before_statement: StatementHook | None,
    allow_checksum_drift: str | None = None,
    backup_dir: Path | None = None,
) -> RunResult:
    from alembic.runtime.environment import EnvironmentContext
    from alembic.util import CommandError

    project = project or find_project_root()
    session = MigrationSession(
        project=project, target=target, options=options, sink=sink, before_statement=before_statement,
        direction=direction, allow_checksum_drift=allow_checksum_drift,
    )
    cfg = alembic_config(project)
    cfg.attributes[SESSION_KEY] = session
    check_revision(script_directory(project), revision)
    if direction == "upgrade" and backup_dir is not None and not options.rehearse:
        b = take_backup(target, backup_dir, sink=sink)
        session.backup = {"path": b.path, "sha256": b.sha256, "bytes": b.size, "toc_entries": b.toc_entries}
    script = script_directory(project)

    # What alembic.command.upgrade/downgrade do, with the cached script directory.
    def step(rev: Any, context: Any) -> Any:
        if direction == "upgrade":
            return script._upgrade_revs(revision, rev)
        if direction == "stamp":
            return script._stamp_revs((revision,), rev)
        return script._downgrade_revs(revision, rev)

    try:
        with EnvironmentContext(cfg, script, fn=step, destination_rev=revision):
            script.run_env()
    except CommandError as exc:
        # Alembic's own resolution errors: not a valid target from here.
        raise BadInput(f"{direction} {revision}: {exc}", revision=revision) from None
    return RunResult(
        run_id=session.run_id,
        direction=direction,
        mode=session.mode,
        target=target.display,
        from_heads=session.heads_before,
        to_heads=session.heads_after,
        revisions=[
            {
                "revision": r.revision,
                "statements": len(r.results),
                "duration_ms": round(r.duration_ms, 1),
                "outcome": "rehearsed" if options.rehearse else "applied",
                "evidence": r.checks(),  # the audit row has the whole evidence (db report)
            }
            for r in session.done
        ],
        fingerprint_before=session.fingerprint_before,
        fingerprint_after=session.fingerprint_after,
    )


def upgrade(
    target: Target,
    revision: str = "head",
    *,
    project: Path | None = None,
    options: RunOptions | None = None,
    sink: Sink | None = None,
    before_statement: StatementHook | None = None,
    allow_checksum_drift: str | None = None,
    backup_dir: Path | None = None,
) -> RunResult:
    """Apply revisions up to REVISION: preflight → body → post-check, one transaction each.

    Refuses first when an applied revision's files changed since apply, unless
    `allow_checksum_drift` gives a reason (recorded in the audit). With
    `backup_dir`, a verified backup is mandatory before a real apply.
    """
    return _run(
        "upgrade", target, revision, project=project, options=options or RunOptions(),
        sink=sink, before_statement=before_statement,
        allow_checksum_drift=allow_checksum_drift, backup_dir=backup_dir,
    )


def offline_sql(
    direction: str,
    revision: str,
    *,
    project: Path | None = None,
    options: RunOptions | None = None,
) -> Any:
    """The psql script for change review, [FROM:]TO (FROM defaults to base); no connection.

    `psql -X -v ON_ERROR_STOP=1 -f` runs it to the same end state as the
    online run: bootstrap, lock, timeouts, then per revision one transaction
    with its preflight, body, post-check, the version row and the audit row.
    """
    project = project or find_project_root()
    start, _, dest = revision.rpartition(":")
    if direction == "downgrade" and not start:
        raise BadInput(f"downgrade {revision} --sql: name the start, FROM:TO (e.g. 034:033): an offline "
                       "script cannot ask the database where it is")
    check_revision(script_directory(project), dest)
    return build_offline(project, direction, dest, start or None, options=options)


def backup(target: Target, out_dir: Path, *, jobs: int | None = None, pg_dump: str | None = None,
           sink: Sink | None = None) -> Any:
    """pg_dump -Fc (or -Fd -j JOBS), verified and tied to this database (see iu_core.framework.backup)."""
    return take_backup(target, out_dir, jobs=jobs, pg_dump=pg_dump, sink=sink)


def selftest(target: Target, names: list[str] | None = None, *, project: Path | None = None,
             record: bool = False, options: RunOptions | None = None, sink: Sink | None = None,
             actor: str | None = None) -> Any:
    """Replay the self-tests of the applied revisions against their recorded transcripts,
    with the run's timeouts; a self-test that hits lock_timeout is retried whole.

    The outcome is audited (revision `selftest`, direction `check`: `passed`, or
    `failed` with each result), so the report of the run before it can cite it.
    """
    project = project or find_project_root()
    started = time.time()
    retries = LockRetries(options or RunOptions(), sink=sink)
    with reading(target, NEEDS_SELFTEST, app="iucore:selftest") as conn:
        retries.watch_backend(target, conn.info.backend_pid, "iucore:selftest")
        try:
            results = run_selftests(conn, project, names, record=record, retries=retries)
        finally:
            retries.close()
        ok = all(r.ok for r in results)
        ran = [r for r in results if r.status in ("passed", "failed", "mismatch")]
        summary = (f"{sum(r.status == 'passed' for r in ran)}/{len(ran)} self-test(s) passed"
                   + (f", {len(results) - len(ran)} not run" if len(ran) < len(results) else ""))
        record_check(conn, kind="selftest", outcome="passed" if ok else "failed", actor=actor or default_actor(),
                     started_at=started, duration_ms=(time.time() - started) * 1000,
                     message=f"selftest: {summary}",
                     evidence={"at": current_heads(conn), "summary": summary, "record": record,
                               "results": [r.to_json() for r in results]})
        return results


def downgrade(
    target: Target,
    revision: str,
    *,
    project: Path | None = None,
    options: RunOptions | None = None,
    sink: Sink | None = None,
    before_statement: StatementHook | None = None,
) -> RunResult:
    """Roll back to REVISION: fail-closed guard → rollback → assertion, one transaction each."""
    return _run(
        "downgrade", target, revision, project=project, options=options or RunOptions(),
        sink=sink, before_statement=before_statement,
    )


def stamp(
    target: Target,
    revision: str,
    *,
    project: Path | None = None,
    options: RunOptions | None = None,
    sink: Sink | None = None,
) -> Any:
    """Record REVISION as applied WITHOUT checking anything (Alembic's stamp), audited.

    The audit row (outcome `stamped`) says what was stamped, from where, who,
    and that nothing was verified. To take over a database migrated by hand,
    use adopt: it proves every object first.
    """
    result = _run("stamp", target, revision, project=project, options=options or RunOptions(),
                  sink=sink, before_statement=None)
    with connect(target) as conn:
        cur = conn.execute(
            """SELECT revision, direction, message, evidence FROM iucore.migration_log
                WHERE run_id = %s AND outcome = 'stamped' ORDER BY log_id""", (result.run_id,))
        cols = [d.name for d in cur.description or []]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return StampResult(run_id=result.run_id, target=target.display, revision=revision,
                       from_heads=result.from_heads, to_heads=result.to_heads, rows=rows)


@dataclass
class Position:
    """`db current`: where the database is against the scripts."""

    target: str
    current: list[str]
    head: list[str]
    pending: list[str]

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "current": self.current, "head": self.head,
                "at_head": self.at_head, "pending": self.pending}


@dataclass
class History:
    """`db history`: the audit log's rows, newest first."""

    rows: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        """The rows, start times ISO 8601 with the session's UTC offset."""
        return [{**r, "started_at": r["started_at"].isoformat()} for r in self.rows]


def current(target: Target, *, project: Path | None = None) -> Position:
    """The applied revision(s), the script head(s) and what is pending."""
    project = project or find_project_root()
    graph = revision_graph(project)
    with reading(target) as conn:
        heads = current_heads(conn)
    referenced = {d for downs in graph.values() for d in downs}
    script_heads = sorted(r for r in graph if r not in referenced)
    applied: set[str] = set()
    todo = list(heads)
    while todo:  # everything at or below the applied heads
        r = todo.pop()
        if r in graph and r not in applied:
            applied.add(r)
            todo.extend(graph[r])
    pending: list[str] = []
    order: list[str] = []  # base → head, for a readable pending list
    while len(order) < len(graph):
        ready = sorted(r for r in graph if r not in order and all(d in order for d in graph[r]))
        if not ready:
            break
        order += ready
    pending = [r for r in order if r not in applied]
    return Position(target=target.display, current=heads, head=script_heads, pending=pending)


def history(target: Target, *, limit: int = 50, revision: str | None = None) -> History:
    """The audit log, newest first."""
    if limit < 1:
        raise BadInput(f"--limit must be at least 1, got {limit}")
    with reading(target) as conn:
        return History(audit.history(conn, limit=limit, revision=revision))
