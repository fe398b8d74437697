"""What a revision file calls: `upgrade, downgrade = sql_revision(revision)`.

The revision's SQL lives in migrations/sql/<rev>.sql (preflight → body →
post-check) and rollbacks/<rev>.sql (guard → body → assert); this module only
finds the running MigrationSession and hands it the revision.
"""

from __future__ import annotations

from collections.abc import Callable

from .session import SESSION_KEY, MigrationSession

SQL_REVISION_MARK = "iucore_sql_revision"


def sql_revision(revision: str) -> tuple[Callable[[], None], Callable[[], None]]:
    def upgrade() -> None:
        _run(revision, "upgrade")

    def downgrade() -> None:
        _run(revision, "downgrade")

    upgrade.__doc__ = f"Apply {revision}: migrations/sql/{revision}.sql"
    downgrade.__doc__ = f"Roll back {revision}: rollbacks/{revision}.sql"
    # The offline script (iu_core.framework.offline) emits the files itself; this mark is
    # how it knows the revision is nothing but its files.
    for fn in (upgrade, downgrade):
        setattr(fn, SQL_REVISION_MARK, revision)
    return upgrade, downgrade


def _run(revision: str, direction: str) -> None:
    from alembic import context

    session: MigrationSession | None = context.config.attributes.get(SESSION_KEY)
    if session is None:
        raise RuntimeError(
            f"{revision}: run through iucore's env.py (migrations/env.py calls iu_core.framework.alembic_env.run_env)"
        )
    if context.is_offline_mode():
        # iu_core.framework.alembic_env writes the whole offline script (iu_core.framework.offline)
        # and never runs the revisions through Alembic's op.execute, which
        # would double every % of the SQL files.
        raise RuntimeError(f"{revision}: offline mode is written by iu_core.framework.alembic_env, not per revision")
    session.run_revision(revision, direction)
