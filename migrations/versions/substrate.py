"""substrate: the IU Core surface before macro 016.

dot_config + gates, the DOT command catalog and run ledger, information units
with the fn_iu_create birth gate, collections and the composer functions, the
event registry and outbox, routes and the dry-run route worker, governed
piece split/merge, the observability views.

SQL: migrations/sql/substrate.sql, rollbacks/substrate.sql, selftests/substrate.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "substrate"
down_revision = None
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)
