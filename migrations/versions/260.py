"""260: the composer event family (seeds 001, 003 §7).

8 event types (domain iu, stream composer, lane 'delayed' — never deduplicated,
unlike the 'immediate' lane whose partial unique index dropped every composer
delta after the first) and 8 dry-run webhook routes, one per type.

SQL: migrations/sql/260.sql, rollbacks/260.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "260"
down_revision = "016"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# What this revision adds to / removes from the DOT inventory (iu_core.inventory).
inventory = {
    "adds": {
        "event_type": [
            "iu.collection_created",
            "iu.collection_rendered",
            "iu.collection_validated",
            "iu.piece_added_to_collection",
            "iu.piece_removed_from_collection",
            "iu.piece_reordered",
            "iu.piece_restored",
            "iu.piece_soft_deleted",
        ],
        "route": [
            "iu_composer_collection_created",
            "iu_composer_collection_rendered",
            "iu_composer_collection_validated",
            "iu_composer_piece_added_to_collection",
            "iu_composer_piece_removed_from_collection",
            "iu_composer_piece_reordered",
            "iu_composer_piece_restored",
            "iu_composer_piece_soft_deleted",
        ],
    },
    "removes": {},
}
