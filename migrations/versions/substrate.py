"""substrate: the IU Core surface before macro 016.

dot_config + gates, the DOT command catalog and run ledger, information units
with the fn_iu_create birth gate, collections and the composer functions, the
event registry and outbox, routes and the dry-run route worker, governed
piece split/merge, the observability views. fn_iu_piece_emit_event and the
event type iu.structure_child_added are corrections (docs/seeds.md).

SQL: migrations/sql/substrate.sql, rollbacks/substrate.sql, selftests/substrate.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "substrate"
down_revision = None
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# What this revision adds to the DOT inventory (iu_core.inventory); the
# expected inventory at any revision is the fold of these along the chain.
inventory = {
    "adds": {
        "table": [
            "cutter_governance.manifest_envelope",
            "cutter_governance.manifest_unit_block",
            "cutter_governance.review_decision",
            "public.dot_config",
            "public.dot_iu_command_catalog",
            "public.dot_iu_command_run",
            "public.event_outbox",
            "public.event_type_registry",
            "public.information_unit",
            "public.iu_collection",
            "public.iu_collection_member",
            "public.iu_outbound_route",
            "public.iu_route_attempt",
            "public.iu_route_dead_letter",
        ],
        "view": [
            "public.v_dot_iu_command_registry",
            "public.v_dot_iu_command_run_health",
            "public.v_iu_collection_health",
            "public.v_iu_collection_manifest",
            "public.v_iu_composer_event_backlog",
            "public.v_iu_route_attempt_summary",
            "public.v_iu_route_dead_letter_open",
        ],
        "function": [
            "public.fn_dot_config_touch()",
            "public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text)",
            "public.fn_event_outbox_type_validate()",
            "public.fn_iu_collection_add_piece(uuid, uuid, text, integer, text)",
            "public.fn_iu_collection_remove_piece(uuid, uuid, text)",
            "public.fn_iu_collection_render(uuid)",
            "public.fn_iu_collection_reorder_piece(uuid, uuid, integer, text)",
            "public.fn_iu_collection_validate(uuid)",
            "public.fn_iu_compose(text, text, text, uuid[], text, text[])",
            "public.fn_iu_core_routes_enabled()",
            "public.fn_iu_create(text, text, text, text, text)",
            "public.fn_iu_delivery_enabled()",
            "public.fn_iu_emit_event(text, text, text, jsonb, text)",
            "public.fn_iu_gate_is_open(text)",
            "public.fn_iu_healthcheck()",
            "public.fn_iu_observe(text, integer)",
            "public.fn_iu_piece_emit_event(text, uuid, jsonb, text)",  # a correction: docs/seeds.md
            "public.fn_iu_piece_merge(uuid[], text, uuid, text, boolean)",
            "public.fn_iu_piece_split(uuid, jsonb, uuid, text, boolean)",
            "public.fn_iu_refresh_metadata_axes(uuid, text)",
            "public.fn_iu_retire(uuid, text, text)",
            "public.fn_iu_route_deliver(text, uuid)",
            "public.fn_iu_route_worker_run(text, integer)",
            "public.fn_iu_structure_consumer(uuid)",
            "public.fn_iu_workflow_from_steps(text, text, jsonb, text)",
        ],
        "trigger": [
            "public.dot_config.trg_dot_config_touch",
            "public.event_outbox.trg_event_outbox_type_validate",
        ],
        "config": [
            "iu_core.composer_enabled",
            "iu_core.delivery_enabled",
            "iu_core.delivery_live_routes",
            "iu_core.operator_runtime_enabled",
            "iu_core.route_worker_enabled",
            "iu_core.routes_master_enabled",
            "iu_core.structure_ops_enabled",
            "iu_core.three_axis_auto_refresh_enabled",
            "iu_core.vector_sync_enabled",
            "iu_enact.allow_no_review_decision",
            "iu_sql_link.enabled",
            "piece_event_runtime.emit_enabled",
            "queue.dlq.replay_enabled",
            "queue.job_substrate.enabled",
        ],
        "event_type": [
            "iu.iu_created",
            "iu.iu_metadata_axes_refreshed",
            "iu.iu_retired",
            "iu.structure_child_added",  # a correction: docs/seeds.md
            "iu.structure_op_applied",
            "iu.structure_piece_split",
            "iu.structure_pieces_merged",
            "system.route_worker_run",
        ],
        "route": [
            "iu_outbound_default",
            "iu_structure_consumer",
        ],
    },
}
