"""016: composer events wired into the composer (seed 003 §6).

Adds fn_iu_composer_emit and the collection checkpoint (fn_iu_collection_checkpoint),
the views v_iu_collection_checkpoint and v_iu_composer_event_log, and re-wires
the four composer functions (fn_iu_compose, fn_iu_collection_add_piece /
remove_piece / reorder_piece) to emit composer events. Until revision 260
registers the composer family nothing is emitted.

SQL: migrations/sql/016.sql, rollbacks/016.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "016"
down_revision = "substrate"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# What this revision adds to / removes from the DOT inventory (iu_core.inventory).
# The four re-wired composer functions keep their signatures: neither added nor removed.
inventory = {
    "adds": {
        "view": [
            "public.v_iu_collection_checkpoint",
            "public.v_iu_composer_event_log",
        ],
        "function": [
            "public.fn_iu_collection_checkpoint(uuid, text)",
            "public.fn_iu_composer_emit(text, uuid, jsonb, text)",
        ],
    },
    "removes": {},
}
