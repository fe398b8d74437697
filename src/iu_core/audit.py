"""The framework's own bookkeeping: schema `iucore`, outside the IU Core schemas.

`iucore.alembic_version` is Alembic's version table; `iucore.migration_log` has
one row per revision run, real or rehearsal, whatever its outcome. Keeping
both out of `public` means the IU Core schemas hold only IU Core objects, and a
rehearsal's audit row does not move the catalog fingerprint.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

SCHEMA = "iucore"
VERSION_TABLE = "alembic_version"

# Idempotent: run under the migration advisory lock before every run, so a
# newer iucore can add columns to an older log without a revision of its own.
BOOTSTRAP = [
    "CREATE SCHEMA IF NOT EXISTS iucore",
    """CREATE TABLE IF NOT EXISTS iucore.migration_log (
        log_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id       uuid        NOT NULL,
        revision     text        NOT NULL,
        direction    text        NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
        mode         text        NOT NULL CHECK (mode IN ('real', 'rehearsal')),
        outcome      text        NOT NULL CHECK (outcome IN ('applied', 'refused', 'failed', 'rehearsed')),
        checksums    jsonb       NOT NULL DEFAULT '{}',
        actor        text        NOT NULL,
        started_at   timestamptz NOT NULL,
        duration_ms  numeric(12,3) NOT NULL,
        message      text,
        evidence     jsonb       NOT NULL DEFAULT '{}',
        db_user      text        NOT NULL DEFAULT current_user,
        client       text        NOT NULL DEFAULT current_setting('application_name')
    )""",
    "ALTER TABLE iucore.migration_log ADD COLUMN IF NOT EXISTS backup jsonb",
    "ALTER TABLE iucore.migration_log ADD COLUMN IF NOT EXISTS override jsonb",
    "CREATE INDEX IF NOT EXISTS migration_log_revision_idx ON iucore.migration_log (revision, log_id DESC)",
    "COMMENT ON TABLE iucore.migration_log IS 'iucore: one row per revision run (real or rehearsal), whatever its outcome'",
    # The runtime data scripts (iu_core.datascripts) are audited here too: revision
    # 'runtime/<N>', direction 'apply' or 'rollback'. Widens an older log's CHECK once.
    """DO $iucore$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                        WHERE conrelid = 'iucore.migration_log'::regclass
                          AND conname = 'migration_log_direction_check'
                          AND pg_get_constraintdef(oid) LIKE '%''rollback''%') THEN
            ALTER TABLE iucore.migration_log DROP CONSTRAINT IF EXISTS migration_log_direction_check;
            ALTER TABLE iucore.migration_log ADD CONSTRAINT migration_log_direction_check
                CHECK (direction IN ('upgrade', 'downgrade', 'apply', 'rollback'));
        END IF;
    END
    $iucore$""",
]

# Outcomes beyond the four the table was created with. A log created by an
# older iucore gets its CHECK widened once (the DO block below only rebuilds
# it when a value is missing, so a run does not take the table's ACCESS
# EXCLUSIVE lock every time). Add a value here, on its own line.
OUTCOMES = (
    "applied", "refused", "failed", "rehearsed",
    "adopted", "stamped",  # db adopt / db stamp (and plain `alembic stamp`)
)
assert all(o.isidentifier() and o.islower() for o in OUTCOMES)  # fixed words: safe to inline below
_OUTCOME_LIST = ", ".join(f"'{o}'" for o in OUTCOMES)
BOOTSTRAP.append(f"""DO $outcomes$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(ARRAY[{_OUTCOME_LIST}]) AS o
                WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                                   WHERE c.conrelid = 'iucore.migration_log'::regclass
                                     AND c.conname = 'migration_log_outcome_check'
                                     AND strpos(pg_get_constraintdef(c.oid), quote_literal(o)) > 0)) THEN
        ALTER TABLE iucore.migration_log DROP CONSTRAINT IF EXISTS migration_log_outcome_check;
        ALTER TABLE iucore.migration_log ADD CONSTRAINT migration_log_outcome_check
            CHECK (outcome IN ({_OUTCOME_LIST}));
    END IF;
END
$outcomes$""")


def bootstrap(conn: psycopg.Connection[Any]) -> None:
    for stmt in BOOTSTRAP:
        conn.execute(stmt)


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
