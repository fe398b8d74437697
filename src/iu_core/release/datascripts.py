"""The runtime data scripts: `runtime/<N>.sql` and their paired `runtime/rollback/<N>.sql`.

Seeds 001 §8 and 003 §6/§11 run data scripts beside the schema chain
(runtime/270, runtime/290 → runtime/rollback/290): data written only through
the governed functions, gates opened through the protocol for the window.
They are not revisions (no alembic_version entry) but run exactly like one:
the same sectioned files (`@guard`, `@body`, `@assert`), the same statement
runner and transcript, one transaction, the migration advisory lock and the
run's timeouts (a lock timeout retries the whole script, iu_core.framework.lockretry),
a guard error is a refusal, an audit row per run in
`iucore.migration_log` (revision `runtime/<N>`, direction `apply` or
`rollback`, the sha256 of both files) and a rehearsal that runs everything,
rolls back and proves nothing persisted: the catalog fingerprint and the row
count of every IU Core table unchanged.

The approval id the gate protocol needs is an input: set for the transaction
with a bound `set_config('iucore.approval_id', …, true)`; each script's guard
refuses without one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunOptions, find_project_root
from ..errors import BadInput, Failed, IUCoreError, LockRetriesExhausted, RehearsalLeak
from ..framework.audit import bootstrap
from ..framework.fingerprint import commit_channels, fingerprint, persisted, snapshot
from ..framework.lockretry import LockRetries
from ..framework.runner import ScriptRun, StatementHook, run_script
from ..framework.session import MigrationSession
from ..framework.sqlfiles import ROLLBACK_SECTIONS, parse_script, sha256_file
from ..framework.transcript import Sink
from ..pg.db import connect
from ..pg.target import Target

if TYPE_CHECKING:
    import psycopg

RUNTIME_DIR = "runtime"
DIRECTIONS = ("apply", "rollback")
# What each script creates: whether it is applied is read from the data itself.
COLLECTIONS = {
    "270": "iu_core.composer.scratch-file-001",
    "290": "iu_core.runtime290.file-001",
}


class UnknownDataScript(BadInput):
    """A runtime script name with no runtime/<N>.sql."""


@dataclass(frozen=True)
class DataScript:
    name: str
    project: Path

    @property
    def label(self) -> str:
        """How the audit names it: runtime/<N>."""
        return f"{RUNTIME_DIR}/{self.name}"

    @property
    def forward(self) -> Path:
        return self.project / RUNTIME_DIR / f"{self.name}.sql"

    @property
    def rollback(self) -> Path:
        return self.project / RUNTIME_DIR / "rollback" / f"{self.name}.sql"

    @property
    def collection_key(self) -> str | None:
        return COLLECTIONS.get(self.name)

    def file(self, direction: str) -> Path:
        return self.forward if direction == "apply" else self.rollback

    def checksums(self) -> dict[str, str]:
        """sha256 of both files that exist, keyed by path relative to the project."""
        return {str(p.relative_to(self.project)): sha256_file(p)
                for p in (self.forward, self.rollback) if p.is_file()}


def scripts(project: Path) -> list[DataScript]:
    """Every runtime/<N>.sql of the project, in order."""
    found = (project / RUNTIME_DIR).glob("*.sql")
    names = sorted((p.stem for p in found), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    return [DataScript(n, project) for n in names]


def script(project: Path, name: str) -> DataScript:
    name = name.removeprefix(f"{RUNTIME_DIR}/").removesuffix(".sql")
    known = scripts(project)
    for s in known:
        if s.name == name:
            return s
    raise UnknownDataScript(
        f"unknown runtime script {name!r}; known: {', '.join(s.name for s in known) or '(none)'} "
        f"(files {RUNTIME_DIR}/<N>.sql)", script=name)


# ---------------------------------------------------------------- list
@dataclass
class ScriptState:
    name: str
    applied: bool | None  # None: the data cannot tell (no collection declared, or not at head)
    evidence: str
    checksums: dict[str, str]
    last_run: dict[str, Any] | None = None
    has_rollback: bool = True

    @property
    def files_as_run(self) -> bool | None:
        """Whether the files are the ones the last real run recorded (None: never run for real)."""
        if self.last_run is None:
            return None
        return bool(self.last_run["checksums"] == self.checksums)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "applied": self.applied, "evidence": self.evidence,
                "checksums": self.checksums, "last_run": self.last_run,
                "files_as_run": self.files_as_run, "has_rollback": self.has_rollback}


def status(target: Target, *, project: Path | None = None) -> list[ScriptState]:
    """Each runtime script: applied or not (from the data it creates), its last real run, its files' sha256."""
    project = project or find_project_root()
    out = []
    with connect(target) as conn:
        for s in scripts(project):
            applied, evidence = _applied(conn, s)
            out.append(ScriptState(name=s.name, applied=applied, evidence=evidence, checksums=s.checksums(),
                                   last_run=_last_real_run(conn, s), has_rollback=s.rollback.is_file()))
    return out


def _applied(conn: psycopg.Connection[Any], s: DataScript) -> tuple[bool | None, str]:
    if s.collection_key is None:
        return None, "no collection declared for this script"
    if conn.execute("SELECT to_regclass('public.iu_collection')").fetchone() == (None,):
        return None, "public.iu_collection does not exist (not at head)"
    row = conn.execute(
        """SELECT c.created_by, c.created_at,
                  (SELECT count(*) FROM public.iu_collection_member m WHERE m.collection_id = c.collection_id)
             FROM public.iu_collection c WHERE c.collection_key = %s""", (s.collection_key,)).fetchone()
    if row is None:
        return False, f"collection {s.collection_key} absent"
    return True, f"collection {s.collection_key} present ({row[2]} members, by {row[0]} at {row[1]:%Y-%m-%d %H:%M:%S})"


def _last_real_run(conn: psycopg.Connection[Any], s: DataScript) -> dict[str, Any] | None:
    if conn.execute("SELECT to_regclass('iucore.migration_log')").fetchone() == (None,):
        return None
    cur = conn.execute(
        """SELECT log_id, run_id::text, direction, outcome, actor, started_at, checksums
             FROM iucore.migration_log
            WHERE revision = %s AND mode = 'real' AND outcome = 'applied'
            ORDER BY log_id DESC LIMIT 1""", (s.label,))
    row = cur.fetchone()
    return dict(zip([d.name for d in cur.description or []], row, strict=True)) if row else None


# ---------------------------------------------------------------- apply / rollback
@dataclass
class DataScriptResult:
    name: str
    direction: str
    mode: str
    run_id: str
    file: str
    checksums: dict[str, str]
    statements: int = 0
    duration_ms: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    fingerprint_before: str | None = None
    fingerprint_after: str | None = None
    tables_counted: int = 0
    moved_by_others: list[str] = field(default_factory=list)  # counts other sessions moved during a rehearsal

    def to_json(self) -> dict[str, Any]:
        return {"script": f"{RUNTIME_DIR}/{self.name}", "direction": self.direction, "mode": self.mode,
                "run_id": self.run_id, "file": self.file, "checksums": self.checksums,
                "statements": self.statements, "duration_ms": round(self.duration_ms, 1),
                "evidence": self.evidence, "fingerprint_before": self.fingerprint_before,
                "fingerprint_after": self.fingerprint_after, "tables_counted": self.tables_counted,
                "moved_by_others": self.moved_by_others}


def apply(target: Target, name: str, *, approval_id: str | None, project: Path | None = None,
          options: RunOptions | None = None, sink: Sink | None = None,
          before_statement: StatementHook | None = None) -> DataScriptResult:
    """Run runtime/<name>.sql: guard → body → assert, one transaction, locked, audited.

    `approval_id` (a uuid) is what the gate protocol opens the gates on; without
    one the script's guard refuses. With options.rehearse everything runs and
    is rolled back, and the run fails unless nothing persisted.
    """
    return _run("apply", target, name, approval_id=approval_id, project=project, options=options,
                sink=sink, before_statement=before_statement)


def rollback(target: Target, name: str, *, approval_id: str | None, project: Path | None = None,
             options: RunOptions | None = None, sink: Sink | None = None,
             before_statement: StatementHook | None = None) -> DataScriptResult:
    """Run runtime/rollback/<name>.sql: fail-closed guard → body → assert, like apply."""
    return _run("rollback", target, name, approval_id=approval_id, project=project, options=options,
                sink=sink, before_statement=before_statement)


def _approval(value: str | None) -> str | None:
    if value is None:
        return None  # the script's guard refuses, and the refusal is audited
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise BadInput(f"--approval-id {value!r} is not a uuid", approval_id=value) from None


def _run(direction: str, target: Target, name: str, *, approval_id: str | None, project: Path | None,
         options: RunOptions | None, sink: Sink | None, before_statement: StatementHook | None) -> DataScriptResult:
    import psycopg

    project = project or find_project_root()
    options = options or RunOptions()
    ds = script(project, name)
    approval = _approval(approval_id)
    path = ds.file(direction)
    if not path.is_file():
        raise UnknownDataScript(f"{ds.label} has no {direction} file ({path.relative_to(project)})", script=name)
    parsed = parse_script(path, ROLLBACK_SECTIONS, project)  # a malformed file: exit 2 before connecting
    session = MigrationSession(project=project, target=target, options=options, sink=sink, direction=direction)
    run = ScriptRun(revision=ds.label, direction=direction, script=parsed, checksums=ds.checksums())
    result = DataScriptResult(name=ds.name, direction=direction, mode=session.mode, run_id=session.run_id,
                              file=str(path.relative_to(project)), checksums=run.checksums)
    conn = connect(target, autocommit=False, app=f"iucore:{session.run_id[:8]}")
    session.raw = conn
    retries = session.retries = LockRetries(options, sink=sink)
    try:
        session.acquire_lock()
        conn.commit()
        bootstrap(conn)
        conn.commit()
        retries.watch_backend(target, conn.info.backend_pid, f"iucore:{session.run_id[:8]}")
        before = retries.call("the snapshot before the rehearsal", lambda: _counted(conn)) if options.rehearse else None
        if sink:
            tag = " (rehearsal: will ROLLBACK)" if options.rehearse else ""
            sink(f"== {ds.label} {direction}{tag} — {result.file} ==")
        while True:
            session.current = run
            retries.begin_try()
            try:
                # Bound, transaction-local: the value never becomes SQL text.
                conn.execute("SELECT set_config('iucore.approval_id', %s, true)", (approval or "",))
                session.observe_before(run, [("runtime", ds.forward), ("runtime rollback", ds.rollback)])
                run_script(conn, run, sink, before_statement)
                session.observe_after(run)
                break
            except IUCoreError as exc:
                if retries.retryable(exc):
                    run = _retry(conn, session, retries, exc, run, sink)
                    continue
                _after_failure(conn, session, exc, sink)
                raise
            except psycopg.Error as exc:  # the connection died under the run
                err = Failed(f"{ds.label} {direction} failed: {str(exc).strip().splitlines()[0]}; rolled back",
                             script=name, direction=direction)
                _after_failure(conn, session, err, sink)
                raise err from exc
            finally:
                retries.end_try()
        session.current = None
        session.done.append(run)
        result.statements, result.duration_ms, result.evidence = len(run.results), run.duration_ms, run.checks()
        if options.rehearse:
            conn.rollback()
            if sink:
                sink("ROLLBACK")
            session.record_rehearsal()
            conn.commit()
            after = retries.call("the snapshot after the rehearsal", lambda: _counted(conn))
            result.fingerprint_before, result.fingerprint_after = fingerprint(before or {}), fingerprint(after)
            result.tables_counted = len(after.get("count", {}))
            # Production writes meanwhile: a count another session moved is not the script's
            # unless something installed lets SQL commit elsewhere (fingerprint.persisted).
            changed, result.moved_by_others = persisted(before or {}, after, commit_channels(conn))
            if changed:
                raise RehearsalLeak(f"rehearsal of {ds.label} {direction} changed the database: "
                                    + "; ".join(changed[:20]), changed=changed)
        else:
            # Same transaction as the data: the row exists if and only if the run committed.
            session._record(run, "applied", f"{ds.label} {direction} applied (approval {approval})")
            conn.commit()
    finally:
        retries.close()
        session.release_lock()
        conn.close()
    return result


def _counted(conn: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
    """The catalog snapshot with every IU Core table's row count, in a transaction of its own."""
    with conn.transaction():
        return snapshot(conn, with_counts=True)


def _retry(conn: psycopg.Connection[Any], session: MigrationSession, retries: LockRetries, exc: IUCoreError,
           run: ScriptRun, sink: Sink | None) -> ScriptRun:
    """A try hit lock_timeout: roll it back, sleep, and return the run of the next try.

    The whole script is one transaction, so it is retried whole, rehearsal or
    not; when the budget is spent the refusal is audited like any other.
    """
    conn.rollback()
    where = f"{run.error['file']}:{run.error['line']}" if run.error else None
    try:
        sleep = retries.timed_out(exc, run.revision, run.direction, where=where, started=run.started)
    except LockRetriesExhausted as gave_up:
        _after_failure(conn, session, gave_up, sink)
        raise
    retries.sleep(sleep)
    retries.next_try(run.revision)
    return ScriptRun(revision=run.revision, direction=run.direction, script=run.script, checksums=run.checksums)


def _after_failure(conn: psycopg.Connection[Any], session: MigrationSession, exc: IUCoreError,
                   sink: Sink | None) -> None:
    """Roll the run back, then audit the refusal or failure in a transaction of its own
    (on a fresh connection when the run's connection died under it)."""
    run = session.current
    try:
        conn.rollback()
        session.record_failure(exc, run)
        conn.commit()
    except Exception:
        try:
            with connect(session.target, autocommit=False, app=f"iucore:{session.run_id[:8]}") as fresh:
                session.raw = fresh
                session.record_failure(exc, run)
                fresh.commit()
        except Exception as audit_exc:  # never hide the real error behind an audit error
            exc.data["audit"] = f"not recorded: {audit_exc}"
    if session.options.rehearse:
        exc.message += ". Rehearsal: everything was rolled back"
    if sink:
        sink("ROLLBACK")
