"""280: the operator-runtime catalog seed (seed 004, "R280").

The 24 governed dot_iu_* commands of the operator runtime, inserted into
public.dot_iu_command_catalog exactly as the Python registry declares them
(src/iu_core/registry.py, revision "280"), ON CONFLICT (command_name) DO
NOTHING: re-running the INSERT answers INSERT 0 0 when the live catalog
matches the registry row for row. Data-only: catalog rows are not an
inventory class, so the DOT inventory is unchanged.

SQL: migrations/sql/280.sql, rollbacks/280.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "280"
down_revision = "017"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# Data-only revision: adds nothing to the DOT inventory.
inventory = {
    "adds": {},
    "removes": {},
}
