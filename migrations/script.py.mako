"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

SQL: migrations/sql/${up_revision}.sql, rollbacks/${up_revision}.sql, selftests/${up_revision}.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

upgrade, downgrade = sql_revision(revision)
