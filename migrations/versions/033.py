"""033: the auto-instantiate orchestrator (seed 004, "migration 033").

fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text)
→ jsonb instantiates a template collection for an event (dry_run | live,
two gates: composer_enabled, and auto_instantiate_enabled for live);
fn_iu_auto_instantiate_rollback_by_actor(text, boolean) → jsonb lists or
removes an actor's instances. Plus the provenance table iu_auto_instance,
the gate iu_core.auto_instantiate_enabled ('false') and the event type
template.instance_auto_composed (lane 'delayed').

SQL: migrations/sql/033.sql, rollbacks/033.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "033"
down_revision = "280"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

inventory = {
    "adds": {
        "table": [
            "public.iu_auto_instance",
        ],
        "function": [
            "public.fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text)",
            "public.fn_iu_auto_instantiate_rollback_by_actor(text, boolean)",
        ],
        "config": [
            "iu_core.auto_instantiate_enabled",
        ],
        "event_type": [
            "template.instance_auto_composed",
        ],
    },
    "removes": {},
}
