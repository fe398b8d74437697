"""017: the governed piece-disposal pair — soft-delete with restore (seed 003 §8).

fn_iu_piece_soft_delete and fn_iu_piece_restore, behind
iu_core.structure_ops_enabled. Remove-from-collection, retire (final) and
soft-delete (restorable) stay three distinct verbs.

SQL: migrations/sql/017.sql, rollbacks/017.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "017"
down_revision = "260"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# What this revision adds to / removes from the DOT inventory (iu_core.inventory).
inventory = {
    "adds": {
        "function": [
            "public.fn_iu_piece_restore(uuid, text)",
            "public.fn_iu_piece_soft_delete(uuid, text, text)",
        ],
    },
    "removes": {},
}
