"""One migration run: what env.py sets up and every revision file calls into.

A MigrationSession lives in the Alembic config's `attributes` for the length of
one `upgrade`/`downgrade`. It holds the raw psycopg connection, the options,
the transcript sink and what each revision produced, so that the revision
files stay one line long and `alembic upgrade head` runs exactly the same
guards, lock, timeouts and audit as `iucore db upgrade head`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunOptions
from ..errors import ChecksumGate, IUCoreError, LockBusy
from ..pg.target import Target
from . import audit
from .checksums import verify
from .fingerprint import diff, fingerprint, snapshot
from .layout import RevisionFiles, applied_chain
from .lockretry import LockRetries
from .observe import VERSION as OBSERVED_VERSION
from .observe import State, artifacts, compare, identity, observe, revision_files
from .runner import ScriptRun, StatementHook, run_script
from .scope import scope_of
from .sqlfiles import MIGRATION_SECTIONS, ROLLBACK_SECTIONS, parse_script
from .transcript import Sink

if TYPE_CHECKING:
    import psycopg

    from .scope import Scope

SESSION_KEY = "iucore.session"
# The retry unit of a rehearsal: one transaction over all its revisions.
REHEARSAL_UNIT = "rehearsal"
# One key for every iucore run against a database: bigint from a fixed name.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"iucore.migrations").digest()[:8], "big", signed=True)


@dataclass
class MigrationSession:
    project: Path
    target: Target
    options: RunOptions
    sink: Sink | None = None
    before_statement: StatementHook | None = None
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    raw: psycopg.Connection[Any] | None = None
    done: list[ScriptRun] = field(default_factory=list)
    current: ScriptRun | None = None
    heads_before: list[str] = field(default_factory=list)
    heads_after: list[str] = field(default_factory=list)
    fingerprint_before: str | None = None
    fingerprint_after: str | None = None
    # Recorded on every audit row of the run: the verified backup taken before
    # it, and an explicit override of the checksum gate.
    backup: dict[str, Any] | None = None
    override: dict[str, Any] | None = None
    # Upgrades pass the checksum gate first, under the lock, on this connection.
    direction: str = "upgrade"
    allow_checksum_drift: str | None = None
    # The run's lock-timeout retries (iu_core.framework.lockretry): what each audit row's
    # evidence says about the tries of its revision (or of the whole rehearsal).
    retries: LockRetries | None = None
    # What the run observes for its report (iu_core.framework.observe): per revision, and
    # for a rehearsal the state before its first statement.
    _observing: dict[int, State] = field(default_factory=dict, repr=False)
    _rehearsal_before: dict[str, Any] | None = field(default=None, repr=False)
    _scope: Scope | None = field(default=None, repr=False)
    _identity: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        return "rehearsal" if self.options.rehearse else "real"

    # -- called by the revision files ----------------------------------------
    def run_revision(self, revision: str, direction: str) -> ScriptRun:
        assert self.raw is not None, "MigrationSession used outside env.py"
        files = RevisionFiles(self.project, revision)
        if direction == "upgrade":
            script = parse_script(files.forward, MIGRATION_SECTIONS, self.project)
        else:
            script = parse_script(files.rollback, ROLLBACK_SECTIONS, self.project)
        run = ScriptRun(revision=revision, direction=direction, script=script, checksums=files.checksums())
        self.current = run
        if self.sink:
            tag = " (rehearsal: will ROLLBACK)" if self.options.rehearse else ""
            self.sink(f"== {revision} {direction}{tag} — {script.path.relative_to(self.project)} ==")
        self.observe_before(run, revision_files(self.project, revision))
        run_script(self.raw, run, self.sink, self.before_statement)
        self.observe_after(run)
        self.current = None
        self.done.append(run)
        if not self.options.rehearse:
            # Same transaction as the revision and its alembic_version update:
            # the row exists if and only if the revision committed.
            self._record(run, "applied", f"{revision} {direction} applied")
        return run

    # -- called by env.py ------------------------------------------------------
    def acquire_lock(self) -> None:
        """Session-level advisory lock, waiting at most lock_wait.

        Statements only, in the caller's transaction (env.py's is SQLAlchemy's): the
        lock is the session's at once, the timeouts once the caller commits. A wait
        that times out is rolled back to a savepoint, so that the holder can be named
        in the same transaction, which the caller then rolls back.
        """
        import psycopg

        assert self.raw is not None
        conn = self.raw
        conn.execute(f"SET lock_timeout = {int(self.options.lock_wait_ms)}")
        conn.execute("SAVEPOINT iucore_lock")
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        except psycopg.errors.LockNotAvailable:
            conn.execute("ROLLBACK TO SAVEPOINT iucore_lock")
            holder = conn.execute(
                """SELECT a.pid, a.application_name, a.usename, now() - a.xact_start
                     FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                    WHERE l.locktype = 'advisory' AND l.granted
                      AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1
                    LIMIT 1""",
                ((LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF),
            ).fetchone()
            who = (
                f"pid {holder[0]} ({holder[1] or 'no application_name'}, user {holder[2]}, "
                f"transaction open {holder[3]})"
                if holder
                else "another session"
            )
            raise LockBusy(
                f"another migration run holds the iucore lock: {who}; waited "
                f"{self.options.lock_wait_ms / 1000:g}s (--lock-wait). Nothing was changed; "
                "retry when it finishes",
                holder_pid=holder[0] if holder else None,
            ) from None
        conn.execute("RELEASE SAVEPOINT iucore_lock")
        conn.execute(f"SET lock_timeout = {int(self.options.lock_timeout_ms)}")
        conn.execute(f"SET statement_timeout = {int(self.options.statement_timeout_ms)}")

    def checksum_gate(self) -> None:
        """Refuse an upgrade whose applied revisions' files do not verify, unless overridden."""
        assert self.raw is not None
        report = verify(self.raw, self.project)
        if report.ok:
            return
        problems = report.lines()
        if not self.allow_checksum_drift:
            raise ChecksumGate(
                "checksum gate: the applied revisions' files do not verify against their apply: "
                + "; ".join(problems)
                + ". Restore the files, or pass --allow-checksum-drift REASON (recorded in the audit)",
                problems=[f.to_json() for f in report.problems],
            )
        if self.sink:
            for line in problems:
                self.sink(f"WARNING: checksum drift allowed ({self.allow_checksum_drift}): {line}")
        self.override = {"allow_checksum_drift": self.allow_checksum_drift,
                         "problems": [f.to_json() for f in report.problems]}

    def unlock(self) -> None:
        """Release the advisory lock: a statement in the caller's transaction (the lock
        is the session's, not the transaction's: it goes at once either way)."""
        assert self.raw is not None
        self.raw.execute("SELECT pg_advisory_unlock_all()")

    def release_lock(self) -> None:
        """`unlock` on a plain psycopg connection (datascripts, adopt), which psycopg
        alone manages: whatever is open is rolled back first. env.py's connection is
        SQLAlchemy's to manage: it calls `unlock` in a transaction begun there."""
        if self.raw is None or self.raw.closed:
            return
        try:
            self.raw.rollback()
            self.unlock()
            self.raw.commit()
        except Exception:  # the lock goes with the connection anyway
            pass

    def settle(self, heads_after: list[str]) -> tuple[list[ScriptRun], ScriptRun | None]:
        """After a failure, refusal or interrupt, once rolled back: what committed, and
        the revision whose transaction did not, read from where the database now is.

        A revision is in `done` as soon as its SQL ran; it committed only if the
        database's position says so (its transaction may have died in the
        alembic_version update or the audit insert).
        """
        self.heads_after = heads_after
        if self.options.rehearse:
            committed: list[ScriptRun] = []
        else:
            applied = set(applied_chain(self.project, heads_after))
            committed = [r for r in self.done if (r.revision in applied) == (r.direction == "upgrade")]
        lost = self.current or next((r for r in reversed(self.done) if r not in committed), None)
        return committed, lost

    def record_failure(self, exc: IUCoreError, run: ScriptRun | None) -> None:
        """After the rollback: the revision that failed, was refused or was
        interrupted, in its own transaction."""
        if run is None:
            return
        outcome = exc.outcome if exc.outcome in ("refused", "failed", "interrupted") else "failed"
        self._record(run, outcome, exc.message)
        self.current = None

    def record_rehearsal(self) -> None:
        """After the ROLLBACK: one `rehearsed` row per revision, each with the proof that
        nothing persisted (the state before the first statement against the state now)."""
        proof = self.rehearsal_proof()
        for run in self.done:
            if proof is not None:
                run.observed["rehearsal"] = proof
            self._record(run, "rehearsed", f"{run.revision} {run.direction} rehearsed (rolled back)")

    def evidence(self, run: ScriptRun) -> dict[str, Any]:
        """The run's evidence, with its lock-timeout tries when it had any (the
        rehearsal's, for every revision of a rehearsal: it is retried whole)."""
        ev = run.evidence()
        if self.retries is not None:
            tries = self.retries.evidence(run.revision) or self.retries.evidence(REHEARSAL_UNIT)
            if tries:
                ev["lock_retries"] = tries
        return ev
    # -- what the report needs, recorded while the run happens (iu_core.framework.observe) --
    def observe_before(self, run: ScriptRun, files: list[tuple[str, Path]]) -> None:
        """Inside the run's transaction, before its first statement: identity, the
        files' checksums (sha256 and md5, includes too) and the state before."""
        run.observed.update(version=OBSERVED_VERSION, identity=self._who(),
                            artifacts=self._artifacts(run.observed, files))
        state = self._observe(run.observed, "before")
        if state is not None:
            self._observing[id(run)] = state
            run.observed["before"] = state.summary()
        if self.options.rehearse and self._rehearsal_before is None:
            snap = self._guarded(run.observed, "rehearsal fingerprint",
                                 lambda c: snapshot(c, project=self.project))
            self._rehearsal_before = {
                "fingerprint": fingerprint(snap) if snap is not None else None,
                "snapshot": snap, "state": state.digest() if state is not None else None,
                "tables": {t: v for t, v in state.counts.items() if v[1] == "exact"} if state else {},
            }

    def observe_after(self, run: ScriptRun) -> None:
        """Inside the run's transaction, after its last statement: the state after and
        what changed (objects, catalog rows, functions, row counts, writes, size)."""
        state = self._observe(run.observed, "after")
        before = self._observing.pop(id(run), None)
        if state is None:
            return
        run.observed["after"] = state.summary()
        if before is not None:
            run.observed["changes"] = compare(before, state)

    def observe_state(self, files: list[tuple[str, Path]]) -> dict[str, Any]:
        """One observation with identity and artifacts (`db adopt`, which runs no script)."""
        observed: dict[str, Any] = {"version": OBSERVED_VERSION, "identity": self._who()}
        observed["artifacts"] = self._artifacts(observed, files)
        state = self._observe(observed, "state")
        if state is not None:
            observed["state"] = state.summary()
        return observed

    def rehearsal_proof(self) -> dict[str, Any] | None:
        """After a rehearsal's ROLLBACK: the catalog fingerprint and the observed state
        (objects, reference rows, exact row counts) against those before it ran."""
        before = self._rehearsal_before
        if before is None or not self.done:
            return None
        notes: dict[str, Any] = {}
        snap = self._guarded(notes, "rehearsal fingerprint", lambda c: snapshot(c, project=self.project))
        state = self._observe(notes, "after rollback")
        counts = {t: v for t, v in state.counts.items() if v[1] == "exact"} if state else {}
        moved = sorted(t for t in set(before["tables"]) | set(counts) if before["tables"].get(t) != counts.get(t))
        fp_after = fingerprint(snap) if snap is not None else None
        proof = {
            "fingerprint_before": before["fingerprint"], "fingerprint_after": fp_after,
            "state_before": before["state"], "state_after": state.digest() if state is not None else None,
            "tables_counted": len(counts), "tables_changed": moved,
        }
        proof["unchanged"] = (fp_after is not None and fp_after == before["fingerprint"]
                              and proof["state_after"] is not None and proof["state_after"] == before["state"]
                              and not moved)
        if snap is not None and before["snapshot"] is not None and fp_after != before["fingerprint"]:
            proof["differences"] = diff(before["snapshot"], snap)[:50]
        proof.update(notes)
        return proof

    def _artifacts(self, notes: dict[str, Any], files: list[tuple[str, Path]]) -> list[dict[str, Any]]:
        try:
            return artifacts(self.project, files)
        except OSError as exc:  # an unreadable file: the run reads it next and says so itself
            notes.setdefault("not_observed", []).append(f"artifacts: {exc}")
            return []

    def _who(self) -> dict[str, Any]:
        if self._identity is None:
            got = self._guarded(None, "identity", identity)
            self._identity = got if got is not None else {}
        return self._identity

    def _observe(self, notes: dict[str, Any] | None, when: str) -> State | None:
        if self._scope is None:
            try:
                self._scope = scope_of(self.project)
            except Exception as exc:  # e.g. a project of runtime scripts only: no chain, no scope
                if notes is not None:
                    notes.setdefault("not_observed", []).append(f"{when}: no IU Core scope ({_first_line(exc)})")
                return None
        scope = self._scope
        return self._guarded(notes, when, lambda c: observe(c, scope))

    def _guarded(self, notes: dict[str, Any] | None, what: str, fn: Any) -> Any:
        """fn(conn) inside a savepoint: an observation that fails (a privilege, a lock
        wait) is noted in the evidence and never fails or alters the revision."""
        import psycopg

        assert self.raw is not None
        conn = self.raw
        try:
            conn.execute("SAVEPOINT iucore_observe")
        except psycopg.Error as exc:  # e.g. the transaction is already aborted
            if notes is not None:
                notes.setdefault("not_observed", []).append(f"{what}: {_first_line(exc)}")
            return None
        try:
            out = fn(conn)
        except Exception as exc:  # never a reason for the revision to fail
            conn.execute("ROLLBACK TO SAVEPOINT iucore_observe")
            conn.execute("RELEASE SAVEPOINT iucore_observe")
            if notes is not None:
                notes.setdefault("not_observed", []).append(f"{what}: {_first_line(exc)}")
            return None
        conn.execute("RELEASE SAVEPOINT iucore_observe")
        return out

    def _record(self, run: ScriptRun, outcome: str, message: str) -> None:
        assert self.raw is not None
        audit.record(
            self.raw,
            run_id=self.run_id,
            revision=run.revision,
            direction=run.direction,
            mode=self.mode,
            outcome=outcome,
            checksums=run.checksums,
            actor=self.options.actor,
            started_at=run.started,
            duration_ms=run.duration_ms or (time.time() - run.started) * 1000,
            message=message,
            evidence=self.evidence(run),
            backup=self.backup,
            override=self.override,
        )


def _first_line(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    text = str(exc).strip()
    return (diag.message_primary if diag else None) or (text.splitlines()[0] if text else type(exc).__name__)
