"""What a revision file calls: `upgrade, downgrade = sql_revision(revision)`.

The revision's SQL lives in migrations/sql/<rev>.sql (preflight → body →
post-check) and rollbacks/<rev>.sql (guard → body → assert); this module only
finds the running MigrationSession and hands it the revision.
"""

from __future__ import annotations

from collections.abc import Callable

from .session import SESSION_KEY, MigrationSession, RevisionFiles


def sql_revision(revision: str) -> tuple[Callable[[], None], Callable[[], None]]:
    def upgrade() -> None:
        _run(revision, "upgrade")

    def downgrade() -> None:
        _run(revision, "downgrade")

    upgrade.__doc__ = f"Apply {revision}: migrations/sql/{revision}.sql"
    downgrade.__doc__ = f"Roll back {revision}: rollbacks/{revision}.sql"
    return upgrade, downgrade


def _run(revision: str, direction: str) -> None:
    from alembic import context, op

    session: MigrationSession | None = context.config.attributes.get(SESSION_KEY)
    if session is None:
        raise RuntimeError(
            f"{revision}: run through iucore's env.py (migrations/env.py calls iu_core.alembic_env.run_env)"
        )
    if context.is_offline_mode():
        # `alembic upgrade --sql`: emit the file as psql runs it (includes
        # expanded), for a DBA to read or run.
        from .sqlfiles import expand

        files = RevisionFiles(session.project, revision)
        path = files.forward if direction == "upgrade" else files.rollback
        op.execute(expand(path, session.project).text)
        return
    session.run_revision(revision, direction)
