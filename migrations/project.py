"""IU Core's facts for iucore's framework (iu_core.framework.facts): what is IU Core's in a
database beyond what the revisions declare.

Production is Directus's `directus` database: IU Core lives in `public` beside
Directus's own tables, sequences, triggers, views and functions (DESIGN §7a),
so `public` is shared: only declared or IU-Core-named objects in it are IU
Core's. Every other schema the declarations use is IU Core's as a whole (for
this chain, `cutter_governance`).

IU-Core-named: one of IU Core's stems (`iu_`, `dot_`), optionally after one
kind prefix (`fn_`, `v_`, `mv_`, `trg_`, `idx_`, `ix_`, `seq_`): `fn_iu_…`,
`fn_dot_…`, `iu_…`, `dot_iu_…`, `v_iu_…`, `v_dot_iu_…`. The stems and prefixes
are the ones the chain's own names use (a test holds the rule to the
declarations). The declared names outside the rule (`event_outbox`,
`event_type_registry`, `information_unit`, `fn_event_outbox_type_validate`) are
IU Core's by declaration only. The rows of IU Core's reference tables
(dot_config keys, event types, routes) are IU Core's by construction.
"""

from __future__ import annotations

from iu_core.framework.facts import ProjectFacts
from iu_core.release.observations import observe

FACTS = ProjectFacts(
    shared_schemas=("public",),
    name_stems=("iu", "dot"),
    kind_prefixes=("fn", "v", "mv", "trg", "idx", "ix", "seq"),
    # Reference tables whose rows are configuration, not data. Timestamps are
    # left out: a touch trigger moving updated_at is not a change of state.
    reference_tables={
        "public.dot_config": ("key", "value", "description"),
        "public.dot_iu_command_catalog": (
            "command_name", "category", "mutating", "reversible", "target_functions", "description",
        ),
        "public.event_type_registry": (
            "event_domain", "event_type", "event_stream", "delivery_lane", "default_severity", "active",
        ),
        "public.iu_outbound_route": (
            "route_code", "event_domain", "event_type", "target_kind", "target_ref",
            "payload_contract", "fail_closed", "dry_run", "enabled",
        ),
    },
    # dot_config, event types, routes, the command catalog and the gates, in every observation
    observe=observe,
)
