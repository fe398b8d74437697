"""034: auto-instantiate orchestrator DOT registration (seed 004).

Two catalog rows registering 033's functions as governed DOT commands
(dot_iu_auto_instantiate_from_event, dot_iu_auto_instantiate_rollback_by_actor),
ON CONFLICT (command_name) DO NOTHING; a preflight that fails loudly when 033
is missing; verification (catalog 26, every target resolvable, the 2 new
rows); a rollback REFUSED while the ledger references either command.
Data-only: the DOT inventory is unchanged.

SQL: migrations/sql/034.sql, rollbacks/034.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "034"
down_revision = "033"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# Data-only revision (seed 004: "no new tables / views / fns / triggers /
# configs / event_types / routes").
inventory = {
    "adds": {},
    "removes": {},
}
