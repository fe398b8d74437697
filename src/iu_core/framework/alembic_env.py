"""What migrations/env.py runs: connection, lock, timeouts, transactions, audit.

`iucore db upgrade` hands env.py a MigrationSession through the Alembic
config; plain `alembic upgrade head` gets one built here from alembic.ini,
the environment and `-x` arguments (`-x rehearse=true -x actor=NAME
-x lock_timeout=200ms -x statement_timeout=60s -x lock_wait=30s -x lock_retries=40
-x retry_budget=3min`).

What runs depends on the Alembic command:
- a write (upgrade, downgrade, stamp, anything not known to be a read) takes
  the advisory lock, bootstraps schema iucore and audits every revision; a
  lock timeout is retried (iu_core.framework.lockretry): the revision that timed out in
  a real run, the whole rehearsal in a rehearsal;
  SIGINT/SIGTERM roll the running revision back, audit it `interrupted` and
  end with exit 130/143;
- a read (`current`, `history -i`, `show current`) only reads: no lock, no
  bootstrap, so a role without CREATE can run it;
- offline (`--sql`) writes iucore's own psql script (iu_core.framework.offline);
- `check` / `revision --autogenerate` say why there is nothing to compare.

On the `alembic` command line an iucore error ends the process with the
exit code of DESIGN §7 and one line on stderr, as `iucore` itself does.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunOptions, Settings
from ..errors import (
    Failed,
    Interrupted,
    InvalidTarget,
    IUCoreError,
    MissingPrivilege,
    RehearsalLeak,
    StoppedPartWay,
)
from ..pg.db import connect
from ..pg.server import resolve_target
from ..pg.target import Target
from .audit import SCHEMA, VERSION_TABLE, bootstrap
from .fingerprint import current_heads, diff, fingerprint, snapshot
from .layout import applied_chain, below, valid_targets
from .lockretry import LockRetries
from .offline import build as build_offline
from .runner import ScriptRun
from .session import REHEARSAL_UNIT, SESSION_KEY, MigrationSession
from .stamp import record_stamp

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# The functions alembic.command hands env.py, by what they do to the database.
_READS = frozenset({"display_version", "_display_current_history", "show_current", "edit_current", "nothing"})
_AUTOGENERATE = frozenset({"retrieve_migrations"})

AUTOGENERATE_MESSAGE = (
    "iucore revisions are SQL files (migrations/sql, rollbacks), not SQLAlchemy models: there is "
    "no metadata for `alembic check` or `revision --autogenerate` to compare. To check the live "
    "database against what the chain declares, run `iucore inventory --check`; to check the "
    "applied files, `iucore db verify`"
)


def run_env() -> None:
    from alembic import context
    from alembic.util import CommandError

    config = context.config
    opts = _context_opts(context)
    command = getattr(opts.get("fn"), "__name__", "")
    session: MigrationSession | None = config.attributes.get(SESSION_KEY)
    plain = session is None
    try:
        if context.is_offline_mode():
            _write_offline(context, session, command, opts)
            return
        if command in _AUTOGENERATE:
            raise CommandError(AUTOGENERATE_MESSAGE)
        if session is None:
            session = _session_for_plain_alembic(config, command)
            config.attributes[SESSION_KEY] = session
        kind = "read" if command in _READS else "write"
        with _signals_interrupt(enabled=kind == "write"):
            _run_online(context, session, config.attributes.get("connection"), kind, opts)
    except IUCoreError as exc:
        if plain and getattr(config, "cmd_opts", None) is not None:
            # The alembic command line: one line and DESIGN §7's exit code, no traceback.
            sys.stderr.write(f"iucore: {exc.label}: {exc.message}\n")
            raise SystemExit(exc.exit_code) from None
        raise


def _context_opts(context: Any) -> dict[str, Any]:
    """The EnvironmentContext's own arguments (fn, destination_rev, starting_rev…).

    Unknown means a write: the run then takes the lock and audits (fail closed).
    """
    env = getattr(context, "_proxy", None)
    opts = getattr(env, "context_opts", None)
    return dict(opts) if isinstance(opts, dict) else {}


def _plain_settings(config: Any) -> tuple[Settings, dict[str, str]]:
    """The settings `iucore` would resolve, with `-x` arguments as the flags."""
    x = context_x_args()
    ini = Path(config.config_file_name) if config.config_file_name else None
    settings = Settings.resolve(
        project=_project(config), ini=ini, url=x.get("url"), actor=x.get("actor"),
        lock_timeout=x.get("lock_timeout"), statement_timeout=x.get("statement_timeout"),
        lock_wait=x.get("lock_wait"), lock_retries=x.get("lock_retries"), retry_budget=x.get("retry_budget"),
    )
    return settings, x


def _plain_options(config: Any) -> RunOptions:
    settings, x = _plain_settings(config)
    return settings.run_options(rehearse=x.get("rehearse", "").lower() in ("1", "true", "yes"))


def _project(config: Any) -> Path:
    return Path(config.get_main_option("script_location")).resolve().parent


def _session_for_plain_alembic(config: Any, command: str) -> MigrationSession:
    settings, x = _plain_settings(config)
    options = settings.run_options(rehearse=x.get("rehearse", "").lower() in ("1", "true", "yes"))
    direction = command if command in ("upgrade", "downgrade") else "other"
    return MigrationSession(project=_project(config), target=resolve_target(settings), options=options,
                            sink=_stdout_sink, direction=direction,
                            allow_checksum_drift=x.get("allow_checksum_drift"))


def context_x_args() -> dict[str, str]:
    from alembic import context

    return context.get_x_argument(as_dictionary=True)


def _stdout_sink(line: str) -> None:
    sys.stdout.write(line + "\n")


def engine(target: Target, *, app: str = "iucore") -> Engine:
    """A SQLAlchemy engine whose every connection comes from `db.connect`.

    The one place the SQLAlchemy dialect is named: the URL carries no host,
    user or password, the factory does the connecting (settings pinned,
    errors without secrets).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine("postgresql+psycopg://", poolclass=NullPool,
                         creator=lambda: connect(target, autocommit=False, app=app))


def _write_offline(context: Any, session: MigrationSession | None, command: str, opts: dict[str, Any]) -> None:
    """`alembic upgrade A:B --sql`: iucore's reviewable psql script, not Alembic's."""
    from alembic.util import CommandError

    if command not in ("upgrade", "downgrade"):
        raise CommandError(
            "iucore writes offline (--sql) scripts for upgrade and downgrade only, not "
            + (command.removeprefix("do_") or "this command")
        )
    config = context.config
    if session is not None:
        project, options = session.project, session.options
    else:
        project = _project(config)
        options = _plain_options(config)
    if options.rehearse:
        raise CommandError("an offline script cannot rehearse: drop -x rehearse=true, or rehearse online")
    dest = opts.get("destination_rev")
    script = build_offline(project, command, str(dest) if dest is not None else "head", opts.get("starting_rev"),
                   options=options)
    out = getattr(config, "output_buffer", None) or sys.stdout
    out.write(script.text)


class _Signal(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread; psycopg cancels the running
    statement on a KeyboardInterrupt before it lets it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _signals_interrupt(enabled: bool) -> Iterator[None]:
    """While a run writes, SIGINT and SIGTERM interrupt it (once) instead of killing it.

    A signal the process was started ignoring stays ignored (nohup, `&`).
    Only the first signal interrupts: the clean-up that follows (rollback,
    audit row, reading the position) is not itself cut short.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise _Signal(signum)

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        before = signal.getsignal(sig)
        if before is not signal.SIG_IGN:
            previous[sig] = before
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def _run_online(context: Any, session: MigrationSession, external: Any, kind: str,
                opts: dict[str, Any]) -> None:
    """Run on `external` (Alembic's shared-connection recipe) or a connection of our own."""
    from sqlalchemy.engine import Engine

    own = None
    if external is not None and not isinstance(external, Engine):
        connection = external
        if connection.in_transaction():
            connection.commit()  # our transactions must be our own
    else:
        own = external or engine(session.target, app=f"iucore:{session.run_id[:8]}")
        connection = own.connect()  # a ConnectionFailed from the factory passes through
    raw = connection.connection.dbapi_connection
    session.raw = raw
    try:
        if kind == "read":
            _read(context, session, connection, getattr(opts.get("fn"), "__name__", ""))
            return
        try:
            # The command's own direction: a session handed in through the
            # config (pytest-alembic's runner) may serve upgrades and downgrades.
            command = getattr(opts.get("fn"), "__name__", "")
            if command in ("upgrade", "downgrade"):
                session.direction = command
            _write(context, session, connection, opts)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise _after_failure(connection, session, Interrupted(
                f"interrupted by {signal.Signals(signum).name}", signum)) from None
    finally:
        _release_lock(connection, session)
        if own is not None:
            connection.close()
            if external is None:
                own.dispose()


def _read(context: Any, session: MigrationSession, connection: Any, command: str) -> None:
    """`alembic current` and the like: read alembic_version, create nothing."""
    import psycopg

    assert session.raw is not None
    try:
        with _own_txn(connection):
            heads = current_heads(session.raw)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise MissingPrivilege(
            f"cannot read where {session.target.display} is: {exc.diag.message_primary or exc} "
            "(the role needs USAGE on schema iucore and SELECT on iucore.alembic_version)",
            sqlstate=exc.sqlstate,
        ) from None
    context.configure(connection=connection, target_metadata=None,
                      version_table_schema=SCHEMA, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
    if not heads and command == "display_version":  # Alembic prints nothing for base
        context.config.print_stdout("base (no revision applied)")


def _write(context: Any, session: MigrationSession, connection: Any, opts: dict[str, Any]) -> None:
    """Lock, bootstrap, checksum gate; then the run, with whom it waits for watched."""
    raw = session.raw
    assert raw is not None
    with _own_txn(connection):
        session.acquire_lock()
    with _own_txn(connection):
        bootstrap(raw)
    if session.direction == "upgrade":
        try:
            with _own_txn(connection):
                session.checksum_gate()
        except IUCoreError as exc:
            with _own_txn(connection):
                exc.data["now_at"] = current_heads(raw)
            raise
    session.retries = retries = LockRetries(session.options, sink=session.sink)
    retries.watch_backend(session.target, raw.info.backend_pid, f"iucore:{session.run_id[:8]}")
    try:
        _write_watched(context, session, connection, opts)
    finally:
        retries.close()


def _write_watched(context: Any, session: MigrationSession, connection: Any, opts: dict[str, Any]) -> None:
    """Read the position (and a rehearsal's snapshot), run the revisions, read again."""
    from alembic.util import CommandError

    raw, retries = session.raw, session.retries
    assert raw is not None and retries is not None

    def read_before() -> tuple[list[str], dict[str, dict[str, str]] | None]:
        with _own_txn(connection):
            return current_heads(raw), (snapshot(raw, project=session.project) if session.options.rehearse
                                        else None)

    session.heads_before, snap_before = retries.call("the catalog snapshot before the run", read_before)
    destination = opts.get("destination_rev")
    if session.direction == "upgrade" and isinstance(destination, str):
        _refuse_upgrade_below(session, destination)
    fn = opts.get("fn")
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table_schema=SCHEMA,
        version_table=VERSION_TABLE,
        transaction_per_migration=not session.options.rehearse,
        on_version_apply=_audit_stamp(session),
        **({"fn": _Plan(fn, session.project)} if fn is not None else {}),
    )
    try:
        _run_with_lock_retries(context, session, connection)
    except IUCoreError as exc:
        err = _after_failure(connection, session, exc)
        if err is exc:
            raise
        raise err from exc
    except CommandError as exc:
        if session.done or session.current:
            raise _after_failure(connection, session, Failed(f"run failed: {exc}")) from exc
        # Alembic resolves the destination before anything runs: not a valid target from here.
        raise _invalid_target(session, str(destination), str(exc)) from None
    except Exception as exc:
        # A lost connection makes Alembic's own rollback raise over our
        # error: report the root cause when there is one of ours.
        err = _root_cause(exc) or Failed(
            f"{session.current.revision if session.current else 'run'} failed: "
            f"{str(exc).strip().splitlines()[0]}; rolled back",
        )
        raise _after_failure(connection, session, err) from exc

    def read_after() -> None:
        with _own_txn(connection):  # a leak raises inside: its rehearsed rows are not kept
            if session.options.rehearse:
                session.record_rehearsal()
                snap_after = snapshot(raw, project=session.project)
                session.fingerprint_before = fingerprint(snap_before or {})
                session.fingerprint_after = fingerprint(snap_after)
                if session.fingerprint_before != session.fingerprint_after:
                    changed = diff(snap_before or {}, snap_after)
                    raise RehearsalLeak(
                        "rehearsal changed the database: " + "; ".join(changed[:20]),
                        changed=changed,
                    )
            session.heads_after = current_heads(raw)

    retries.call("the catalog snapshot after the run", read_after)


def _run_once(context: Any, session: MigrationSession, connection: Any) -> None:
    """One try: the revisions still to run, each committed on its own, or (a
    rehearsal) all of them in one transaction that is rolled back."""
    if session.options.rehearse:
        trans = connection.begin()
        try:
            context.run_migrations()
        finally:
            trans.rollback()
            if session.sink and session.done:
                session.sink("ROLLBACK")
    else:
        context.run_migrations()


def _run_with_lock_retries(context: Any, session: MigrationSession, connection: Any) -> None:
    """`_run_once` until it gets its locks (iu_core.framework.lockretry, GitLab's WithLockRetries).

    A lock timeout rolls the try back. A real run then retries the revision
    that timed out: the ones before it stay committed and the plan goes on
    from where the database is. A rehearsal is one transaction: it is retried
    whole, from its first revision, so it never sleeps holding the locks of
    the revisions it already ran. Each revision (each rehearsal) has its own
    budget; when it is spent, LockRetriesExhausted, with the revision that
    timed out as `session.current` for the audit.
    """
    retries = session.retries
    assert retries is not None
    while True:
        retries.begin_try()
        try:
            _run_once(context, session, connection)
            return
        except Exception as exc:
            if not retries.retryable(exc):
                raise
            run = _roll_back_try(connection, session)
            rehearsal = session.options.rehearse
            unit = REHEARSAL_UNIT if rehearsal else (run.revision if run else "run")
            where = f"{run.error['file']}:{run.error['line']}" if run and run.error else None
            sleep = retries.timed_out(exc, unit, run.direction if run else session.direction, where=where,
                                      started=None if rehearsal or run is None else run.started)
            # An interrupt while sleeping is audited on the revision that waits to run again.
            retries.sleep(sleep)
            retries.next_try(unit)
            session.current = None
        finally:
            retries.end_try()


def _roll_back_try(connection: Any, session: MigrationSession) -> ScriptRun | None:
    """After a lock timeout: roll back, keep what committed, and return the revision
    that timed out (left as `session.current`)."""
    raw = session.raw
    assert raw is not None
    with _own_txn(connection, discard=True):
        heads = current_heads(raw)
    committed, lost = session.settle(heads)
    session.done, session.current = committed, lost
    return lost


class _Plan:
    """Alembic's steps for the run, fixed by its first try.

    A retry runs those not yet committed. Asking Alembic again would resolve a
    relative destination (`-1`, `+2`) from the new position and overshoot.
    """

    def __init__(self, fn: Any, project: Path) -> None:
        self.fn = fn
        self.project = project
        self.steps: list[Any] | None = None

    def __call__(self, heads: Any, context: Any) -> list[Any]:
        if self.steps is None:
            self.steps = list(self.fn(heads, context))
            return self.steps
        applied = set(applied_chain(self.project, list(heads)))
        return [s for s in self.steps if not _committed(s, applied)]


def _committed(step: Any, applied: set[str]) -> bool:
    """Whether a revision step's work is already in the database (a stamp step: never assumed)."""
    script = getattr(step, "revision", None)
    revision = getattr(script, "revision", None)
    if getattr(step, "is_stamp", False) or not isinstance(revision, str):
        return False
    return (revision in applied) == bool(step.is_upgrade)


def _refuse_upgrade_below(session: MigrationSession, destination: str) -> None:
    """`upgrade 033` on a database at 034 is a downgrade in disguise: Alembic would
    call it nothing to do; iucore says it is not an upgrade target from here."""
    if below(session.project, destination, session.heads_before):
        raise _invalid_target(session, destination, f"{destination} is below where the database is (that is a downgrade)")


def _invalid_target(session: MigrationSession, destination: str, reason: str) -> InvalidTarget:
    at = ", ".join(session.heads_before) or "base"
    ups, downs = valid_targets(session.project, session.heads_before)
    up_text = f"{', '.join(ups)} (or {_steps('+', len(ups) - 1)})" if ups else "none (at head)"
    down_text = f"{', '.join(downs)} (or {_steps('-', len(downs))})" if downs else "none (at base)"
    return InvalidTarget(
        f"{session.direction} {destination}: {reason}. The database is at {at}; valid upgrade targets "
        f"from here: {up_text}; valid downgrade targets: {down_text}. No revision ran",
        revision=destination, now_at=session.heads_before, valid_upgrade=ups, valid_downgrade=downs,
    )


def _steps(sign: str, n: int) -> str:
    return f"{sign}1" if n == 1 else f"{sign}1…{sign}{n}"


def _own_txn(connection: Any, *, discard: bool = False) -> Any:
    """A transaction of ours on the run's connection, begun through SQLAlchemy.

    SQLAlchemy is the one transaction manager of that connection (Alembic drives
    it); psycopg (`session.raw`) only runs statements inside what it began. What is
    open first is ended: a read-only transaction Alembic autobegan is committed;
    after a failure (`discard`) whatever is open is rolled back.
    """
    if discard:
        connection.rollback()  # SQLAlchemy's own, if any (a lost connection's too)
    if connection.invalidated:
        # SQLAlchemy saw the backend go (killed, network): a begin would silently
        # reconnect, to a session without the run's lock and timeouts. Fail instead:
        # the caller settles on a fresh connection of its own.
        raise ConnectionError("the run's connection is lost")
    if discard:
        # psycopg may be in a transaction SQLAlchemy no longer counts (a signal between
        # its bookkeeping and the DBAPI call): a rollback of a transaction begun here
        # reaches psycopg either way, so nothing uncommitted ends up in ours.
        connection.begin().rollback()
    elif connection.in_transaction():
        connection.commit()
    return connection.begin()


def _release_lock(connection: Any, session: MigrationSession) -> None:
    """Release the advisory lock on the run's connection (an external one lives on)."""
    raw = session.raw
    if raw is None or raw.closed:  # the lock went with its backend
        return
    try:
        with _own_txn(connection, discard=True):
            session.unlock()
    except Exception:  # the lock goes with the connection anyway
        pass


def _settle_on_fresh_connection(
    session: MigrationSession, exc: IUCoreError
) -> tuple[list[str], list[ScriptRun], ScriptRun | None] | None:
    """The run's connection died (killed backend, network): settle and audit on a new one."""
    try:
        with connect(session.target, autocommit=False, app=f"iucore:{session.run_id[:8]}") as conn:
            session.raw = conn
            heads = current_heads(conn)
            conn.commit()
            committed, lost = session.settle(heads)
            _describe(exc, committed, lost)
            session.record_failure(exc, lost)
            conn.commit()
            return heads, committed, lost
    except Exception as audit_exc:  # never hide the real error behind an audit error
        exc.data["audit"] = f"not recorded: {audit_exc}"
        if session.sink:
            session.sink(f"WARNING: could not write the audit row: {audit_exc}")
        return None


def _root_cause(exc: BaseException) -> IUCoreError | None:
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, IUCoreError):
            return seen
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: IUCoreError, committed: list[ScriptRun], lost: ScriptRun | None) -> None:
    """An interrupt's message names the revision it cut short (the audit row keeps it too)."""
    if not isinstance(exc, Interrupted):
        return
    if lost:
        suffix = f" during {lost.revision} {lost.direction}: its transaction was rolled back"
    elif committed:
        suffix = f" after {committed[-1].revision} {committed[-1].direction} committed"
    else:
        suffix = " before any revision ran"
    if suffix not in exc.message:  # settled once more on a fresh connection: say it once
        exc.message += suffix


def _after_failure(connection: Any, session: MigrationSession, exc: IUCoreError) -> IUCoreError:
    """Roll back, audit the revision that did not commit, and say where the database is.

    Returns the error to raise: `exc` itself when nothing of the run committed
    (or it was a rehearsal, or an interrupt), else StoppedPartWay (exit 5).
    """
    raw = session.raw
    settled: tuple[list[str], list[ScriptRun], ScriptRun | None] | None
    try:
        assert raw is not None
        with _own_txn(connection, discard=True):
            heads = current_heads(raw)
        settled = (heads, *session.settle(heads))
        _describe(exc, settled[1], settled[2])
        with _own_txn(connection):
            session.record_failure(exc, settled[2])
    except Exception:
        settled = _settle_on_fresh_connection(session, exc)
    if settled is None:
        exc.message += ". Where the database now is could not be read: run `iucore db current`"
        return exc
    heads, committed, lost = settled
    at = ", ".join(heads) or "base"
    exc.data["now_at"] = heads
    if session.options.rehearse:
        exc.message += f". Rehearsal: everything was rolled back; the database is at {at}"
        return exc
    if not committed:
        exc.message += f". Nothing of this run committed; the database is at {at}"
        return exc
    names = ", ".join(f"{r.revision} {r.direction}" for r in committed)
    exc.message += f". Committed before it: {names}; the database is now at {at}"
    exc.data["committed"] = [r.revision for r in committed]
    if isinstance(exc, Interrupted):
        return exc
    return StoppedPartWay(exc.message, exc, committed=[r.revision for r in committed], now_at=heads,
                          revision=lost.revision if lost else None)


def _audit_stamp(session: MigrationSession) -> Any:
    """Alembic's on_version_apply hook: a stamp (`alembic stamp`, `iucore db stamp`)
    leaves an audit row, in the same transaction as Alembic's own version write."""
    def hook(*, ctx: Any, step: Any, heads: set[str], run_args: Any) -> None:
        if step.is_stamp:
            record_stamp(session, step, sorted(heads))

    return hook
