"""The framework's own bookkeeping: schema `iucore`, outside the IU Core schemas.

`iucore.alembic_version` is Alembic's version table; `iucore.migration_log` has
one row per revision run, real or rehearsal, whatever its outcome. Keeping
both out of `public` means the IU Core schemas hold only IU Core objects, and a
rehearsal's audit row does not move the catalog fingerprint.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import IUCoreError, MissingPrivilege

if TYPE_CHECKING:
    import psycopg

SCHEMA = "iucore"
VERSION_TABLE = "alembic_version"

# Every outcome a run can record. Widening this set is all a newer iucore
# needs to do: the bootstrap re-creates the CHECK of an older log to match.
OUTCOMES = (
    "applied", "refused", "failed", "rehearsed", "interrupted",
    "adopted", "stamped",  # db adopt / db stamp (and plain `alembic stamp`)
    "passed",  # a check that found nothing wrong (db preflight, selftest)
)
# Revisions go up and down; the runtime data scripts (iu_core.release.datascripts) are
# audited here too, as revision 'runtime/<N>' with direction apply or rollback;
# the checks a report cites (db preflight before a run, selftest after it) as
# revision 'preflight' / 'selftest' with direction 'check'.
DIRECTIONS = ("upgrade", "downgrade", "apply", "rollback", "check")
CHECK_KINDS = ("preflight", "selftest")
assert all(w.isidentifier() and w.islower() for w in OUTCOMES + DIRECTIONS)  # fixed words: safe to inline
_OUTCOME_MARK = "iucore outcomes: " + ",".join(OUTCOMES) + "; directions: " + ",".join(DIRECTIONS)
_OUTCOME_CHECK = "CHECK (outcome IN (" + ", ".join(f"'{o}'" for o in OUTCOMES) + "))"
_DIRECTION_CHECK = "CHECK (direction IN (" + ", ".join(f"'{d}'" for d in DIRECTIONS) + "))"

# One idempotent DO block, run under the migration advisory lock before every
# run that writes (and at the top of every offline script). It reads the
# catalog first and issues only the DDL that is missing, so a role without
# CREATE on the database can run once schema iucore exists; when a privilege
# is missing it says which, in a message a DBA can act on (SQLSTATE 42501).
# The catalog is read through pg_namespace/pg_class, never to_regclass(),
# which raises instead of answering when the role has no USAGE on the schema.
BOOTSTRAP = f"""DO $iucore_bootstrap$
DECLARE
  who text := format('role %I in database %I', current_user, current_database());
  nsp oid := (SELECT oid FROM pg_namespace WHERE nspname = 'iucore');
  log_rel oid;
  ver_rel oid;
  con oid;
BEGIN
  IF nsp IS NULL THEN
    IF NOT has_database_privilege(current_database(), 'CREATE') THEN
      RAISE EXCEPTION 'iucore cannot bootstrap: % has no CREATE on the database, so it cannot create schema iucore', who
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'GRANT CREATE ON DATABASE to this role, or let the database owner run iucore db upgrade once';
    END IF;
    CREATE SCHEMA iucore;
    nsp := (SELECT oid FROM pg_namespace WHERE nspname = 'iucore');
  END IF;
  IF NOT has_schema_privilege(nsp, 'USAGE') THEN
    RAISE EXCEPTION 'iucore cannot run: % has no USAGE on schema iucore', who
      USING ERRCODE = 'insufficient_privilege', HINT = 'GRANT USAGE ON SCHEMA iucore to this role';
  END IF;
  log_rel := (SELECT oid FROM pg_class WHERE relnamespace = nsp AND relname = 'migration_log');
  ver_rel := (SELECT oid FROM pg_class WHERE relnamespace = nsp AND relname = 'alembic_version');
  IF (log_rel IS NULL OR ver_rel IS NULL) AND NOT has_schema_privilege(nsp, 'CREATE') THEN
    RAISE EXCEPTION 'iucore cannot bootstrap: % has no CREATE on schema iucore, so it cannot create its tables', who
      USING ERRCODE = 'insufficient_privilege', HINT = 'GRANT CREATE ON SCHEMA iucore to this role';
  END IF;
  IF log_rel IS NULL THEN
    CREATE TABLE iucore.migration_log (
      log_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      run_id       uuid        NOT NULL,
      revision     text        NOT NULL,
      direction    text        NOT NULL CONSTRAINT migration_log_direction_check {_DIRECTION_CHECK},
      mode         text        NOT NULL CHECK (mode IN ('real', 'rehearsal')),
      outcome      text        NOT NULL CONSTRAINT migration_log_outcome_check {_OUTCOME_CHECK},
      checksums    jsonb       NOT NULL DEFAULT '{{}}',
      actor        text        NOT NULL,
      started_at   timestamptz NOT NULL,
      duration_ms  numeric(12,3) NOT NULL,
      message      text,
      evidence     jsonb       NOT NULL DEFAULT '{{}}',
      db_user      text        NOT NULL DEFAULT current_user,
      client       text        NOT NULL DEFAULT current_setting('application_name'),
      backup       jsonb,
      override     jsonb
    );
    CREATE INDEX migration_log_revision_idx ON iucore.migration_log (revision, log_id DESC);
    COMMENT ON TABLE iucore.migration_log IS 'iucore: one row per revision run (real or rehearsal), whatever its outcome';
    COMMENT ON CONSTRAINT migration_log_outcome_check ON iucore.migration_log IS '{_OUTCOME_MARK}';
    log_rel := (SELECT oid FROM pg_class WHERE relnamespace = nsp AND relname = 'migration_log');
  ELSE
    con := (SELECT oid FROM pg_constraint WHERE conrelid = log_rel AND conname = 'migration_log_outcome_check');
    IF obj_description(con, 'pg_constraint') IS DISTINCT FROM '{_OUTCOME_MARK}'
       OR NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = log_rel AND attname = 'backup' AND NOT attisdropped)
       OR NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = log_rel AND attname = 'override' AND NOT attisdropped)
       OR NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = nsp AND relname = 'migration_log_revision_idx')
    THEN
      -- an older iucore made the log: bring it up to date (only its owner can)
      IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = log_rel), 'USAGE') THEN
        RAISE EXCEPTION 'iucore cannot run: iucore.migration_log predates this iucore and % does not own it', who
          USING ERRCODE = 'insufficient_privilege',
                HINT = format('let its owner, role %I, run iucore db upgrade once', pg_get_userbyid(
                  (SELECT relowner FROM pg_class WHERE oid = log_rel)));
      END IF;
      ALTER TABLE iucore.migration_log ADD COLUMN IF NOT EXISTS backup jsonb,
                                      ADD COLUMN IF NOT EXISTS override jsonb;
      -- every old outcome and direction is in the new sets: the re-added CHECKs hold for old rows
      ALTER TABLE iucore.migration_log DROP CONSTRAINT IF EXISTS migration_log_outcome_check,
        ADD CONSTRAINT migration_log_outcome_check {_OUTCOME_CHECK},
        DROP CONSTRAINT IF EXISTS migration_log_direction_check,
        ADD CONSTRAINT migration_log_direction_check {_DIRECTION_CHECK};
      COMMENT ON CONSTRAINT migration_log_outcome_check ON iucore.migration_log IS '{_OUTCOME_MARK}';
      CREATE INDEX IF NOT EXISTS migration_log_revision_idx ON iucore.migration_log (revision, log_id DESC);
    END IF;
  END IF;
  IF ver_rel IS NULL THEN  -- exactly the table Alembic would create
    CREATE TABLE iucore.alembic_version (
      version_num varchar(32) NOT NULL,
      CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
    );
    ver_rel := (SELECT oid FROM pg_class WHERE relnamespace = nsp AND relname = 'alembic_version');
  END IF;
  IF NOT (has_table_privilege(log_rel, 'SELECT') AND has_table_privilege(log_rel, 'INSERT')
          AND has_table_privilege(ver_rel, 'SELECT') AND has_table_privilege(ver_rel, 'INSERT')
          AND has_table_privilege(ver_rel, 'UPDATE') AND has_table_privilege(ver_rel, 'DELETE')) THEN
    RAISE EXCEPTION 'iucore cannot run: % may not write iucore.migration_log (SELECT, INSERT) and iucore.alembic_version (SELECT, INSERT, UPDATE, DELETE)', who
      USING ERRCODE = 'insufficient_privilege', HINT = 'grant those privileges to this role, or run as the owner of schema iucore';
  END IF;
END $iucore_bootstrap$"""


def bootstrap(conn: psycopg.Connection[Any]) -> None:
    """Create or bring up to date schema iucore and its two tables (only what is missing).

    Raises MissingPrivilege, naming the privilege, when the role cannot.
    """
    import psycopg

    try:
        conn.execute(BOOTSTRAP.encode())  # bytes: no %-placeholder parsing
    except psycopg.errors.InsufficientPrivilege as exc:
        diag = exc.diag
        hint = f" ({diag.message_hint})" if diag.message_hint else ""
        raise MissingPrivilege(f"{diag.message_primary or exc}{hint}; nothing was changed",
                               sqlstate=exc.sqlstate) from None


def record(
    conn: psycopg.Connection[Any],
    *,
    run_id: str,
    revision: str,
    direction: str,
    mode: str,
    outcome: str,
    checksums: dict[str, str],
    actor: str,
    started_at: float,
    duration_ms: float,
    message: str | None,
    evidence: dict[str, Any],
    backup: dict[str, Any] | None = None,
    override: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        """INSERT INTO iucore.migration_log
             (run_id, revision, direction, mode, outcome, checksums, actor, started_at,
              duration_ms, message, evidence, backup, override)
           VALUES (%s, %s, %s, %s, %s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, %s)""",
        (
            run_id, revision, direction, mode, outcome, json.dumps(checksums), actor,
            started_at, round(duration_ms, 3), message, json.dumps(evidence, default=str),
            json.dumps(backup) if backup else None, json.dumps(override) if override else None,
        ),
    )


def record_check(
    conn: psycopg.Connection[Any],
    *,
    kind: str,
    outcome: str,
    actor: str,
    started_at: float,
    duration_ms: float,
    message: str,
    evidence: dict[str, Any],
) -> tuple[str | None, str | None]:
    """One row for a check run (db preflight, selftest), in its own transaction on an
    autocommit connection: (run id, None), or (None, why it could not be written).

    Schema iucore is bootstrapped if missing, as any run that writes does.
    """
    import psycopg

    assert kind in CHECK_KINDS, kind
    run_id = str(uuid.uuid4())
    try:
        with conn.transaction():
            bootstrap(conn)
            record(conn, run_id=run_id, revision=kind, direction="check", mode="real", outcome=outcome,
                   checksums={}, actor=actor, started_at=started_at, duration_ms=duration_ms,
                   message=message, evidence=evidence)
    except IUCoreError as exc:
        return None, exc.message
    except psycopg.Error as exc:
        text = str(exc).strip()
        return None, text.splitlines()[0] if text else type(exc).__name__
    return run_id, None


def insert_sql(
    *,
    run_id: str,
    revision: str,
    direction: str,
    mode: str,
    outcome: str,
    checksums: dict[str, str],
    actor: str,
    message: str,
    evidence: dict[str, Any],
) -> str:
    """The audit row as SQL text, for the offline script (iu_core.framework.offline).

    Every value is a quoted literal; start and duration are the executing
    transaction's own (now(), clock_timestamp()), db_user and client the
    executing session's.
    """
    from psycopg import sql

    def lit(v: str) -> str:
        return sql.Literal(v).as_string(None)

    return (
        "INSERT INTO iucore.migration_log\n"
        "  (run_id, revision, direction, mode, outcome, checksums, actor, started_at, duration_ms, message, evidence)\n"
        f"VALUES ({lit(run_id)}, {lit(revision)}, {lit(direction)}, {lit(mode)}, {lit(outcome)},\n"
        f"  {lit(json.dumps(checksums, sort_keys=True))}::jsonb, {lit(actor)}, now(),\n"
        "  round((extract(epoch FROM clock_timestamp() - now()) * 1000)::numeric, 3),\n"
        f"  {lit(message)}, {lit(json.dumps(evidence, sort_keys=True, default=str))}::jsonb)"
    )


def history(conn: psycopg.Connection[Any], limit: int = 50, revision: str | None = None) -> list[dict[str, Any]]:
    if not _exists(conn):
        return []
    where, params = "", []
    if revision:
        where, params = "WHERE revision = %s", [revision]
    cur = conn.execute(
        f"""SELECT log_id, run_id::text, revision, direction, mode, outcome, actor,
                  started_at, duration_ms::float8, message, checksums, evidence, backup, override
             FROM iucore.migration_log {where} ORDER BY log_id DESC LIMIT %s""",
        [*params, limit],
    )
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('iucore.migration_log')").fetchone()
    return bool(row and row[0])
