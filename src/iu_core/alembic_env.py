"""What migrations/env.py runs: connection, lock, timeouts, transactions, audit.

`iucore db upgrade` hands env.py a MigrationSession through the Alembic
config; plain `alembic upgrade head` gets one built here from alembic.ini,
the environment and `-x` arguments (`-x rehearse=true -x actor=NAME
-x lock_timeout=5s -x statement_timeout=60s -x lock_wait=30s`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audit import SCHEMA, VERSION_TABLE, bootstrap
from .config import Settings
from .db import connect
from .errors import Failed, IUCoreError, RehearsalLeak
from .fingerprint import current_heads, diff, fingerprint, snapshot
from .server import resolve_target
from .session import SESSION_KEY, MigrationSession
from .target import Target

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def run_env() -> None:
    from alembic import context

    config = context.config
    session: MigrationSession | None = config.attributes.get(SESSION_KEY)
    if session is None:
        session = _session_for_plain_alembic(config)
        config.attributes[SESSION_KEY] = session
    if context.is_offline_mode():
        context.configure(
            dialect_name="postgresql",  # an offline script needs the dialect, never a URL
            literal_binds=True,
            version_table_schema=SCHEMA,
            version_table=VERSION_TABLE,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    _run_online(context, session, config.attributes.get("connection"))


def _session_for_plain_alembic(config: Any) -> MigrationSession:
    """The settings `iucore` would resolve, with `-x` arguments as the flags."""
    x = context_x_args()
    ini = Path(config.config_file_name) if config.config_file_name else None
    project = Path(config.get_main_option("script_location")).resolve().parent
    settings = Settings.resolve(
        project=project, ini=ini, url=x.get("url"), actor=x.get("actor"),
        lock_timeout=x.get("lock_timeout"), statement_timeout=x.get("statement_timeout"),
        lock_wait=x.get("lock_wait"),
    )
    options = settings.run_options(rehearse=x.get("rehearse", "").lower() in ("1", "true", "yes"))
    cmd = getattr(getattr(config, "cmd_opts", None), "cmd", None)
    direction = "upgrade" if cmd and getattr(cmd[0], "__name__", "") == "upgrade" else "other"
    return MigrationSession(project=project, target=resolve_target(settings), options=options,
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


def _run_online(context: Any, session: MigrationSession, external: Any = None) -> None:
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
        with _own_txn(connection):
            session.acquire_lock()
        with _own_txn(connection):
            bootstrap(raw)
        if session.direction == "upgrade":
            try:
                with _own_txn(connection):
                    session.checksum_gate()
            except IUCoreError as exc:
                exc.data["now_at"] = current_heads(raw)
                raise
        with _own_txn(connection):
            session.heads_before = current_heads(raw)
            snap_before = snapshot(raw, project=session.project) if session.options.rehearse else None
        context.configure(
            connection=connection,
            target_metadata=None,
            version_table_schema=SCHEMA,
            version_table=VERSION_TABLE,
            transaction_per_migration=not session.options.rehearse,
            on_version_apply=_audit_stamp(session),
        )
        try:
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
        except IUCoreError as exc:
            _after_failure(connection, session, exc)
            raise
        except Exception as exc:
            # A lost connection makes Alembic's own rollback raise over our
            # error: report the root cause when there is one of ours.
            err = _root_cause(exc) or Failed(
                f"{session.current.revision if session.current else 'run'} failed: "
                f"{str(exc).strip().splitlines()[0]}; rolled back",
            )
            _after_failure(connection, session, err)
            raise err from exc
        with _own_txn(connection):
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
    finally:
        session.release_lock()
        if own is not None:
            connection.close()
            if external is None:
                own.dispose()


def _own_txn(connection: Any) -> Any:
    """A transaction of ours; Alembic may leave a read-only autobegun one open."""
    if connection.in_transaction():
        connection.commit()
    return connection.begin()


def _record_on_fresh_connection(session: MigrationSession, exc: IUCoreError) -> None:
    """The run's connection died (killed backend, network): audit on a new one."""
    try:
        with connect(session.target, autocommit=False, app=f"iucore:{session.run_id[:8]}") as conn:
            session.raw = conn
            session.record_failure(exc)
            session.heads_after = current_heads(conn)
            conn.commit()
    except Exception as audit_exc:  # never hide the real error behind an audit error
        exc.data["audit"] = f"not recorded: {audit_exc}"
        if session.sink:
            session.sink(f"WARNING: could not write the audit row: {audit_exc}")


def _root_cause(exc: BaseException) -> IUCoreError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, IUCoreError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _after_failure(connection: Any, session: MigrationSession, exc: IUCoreError) -> None:
    raw = session.raw
    try:
        assert raw is not None
        if connection.in_transaction():
            connection.rollback()
        raw.rollback()
        with _own_txn(connection):
            session.record_failure(exc)
            session.heads_after = current_heads(raw)
    except Exception:
        _record_on_fresh_connection(session, exc)
    # Each revision is its own transaction: say what did commit before this one.
    if session.done and not session.options.rehearse:
        committed = ", ".join(f"{r.revision} {r.direction}" for r in session.done)
        exc.message += (
            f". Committed before it: {committed}; the database is now at "
            f"{', '.join(session.heads_after) or 'base'}"
        )
        exc.data["committed"] = [r.revision for r in session.done]
    elif session.options.rehearse:
        exc.message += ". Rehearsal: everything was rolled back"
    exc.data["now_at"] = session.heads_after



def _audit_stamp(session: MigrationSession) -> Any:
    """Alembic's on_version_apply hook: a stamp (`alembic stamp`, `iucore db stamp`)
    leaves an audit row, in the same transaction as Alembic's own version write."""
    from .stamp import record_stamp

    def hook(*, ctx: Any, step: Any, heads: set[str], run_args: Any) -> None:
        if step.is_stamp:
            record_stamp(session, step, sorted(heads))

    return hook
