"""gate_protocol: the bounded gate protocol (seed 002, A4 and A6).

iu_gate_transition (+ ix_iu_gate_transition_gate), fn_iu_gate_open /
fn_iu_gate_close / fn_iu_gate_verify_closed / fn_iu_gate_watchdog, and the 4
catalog rows dot_iu_gate_open | close | watchdog | verify_closed. Opening is
fail-closed (never-flip and non-governable gates refused with 42501, a
missing approval id or a TTL outside (0, 3600] s with 23514); every
transition is in iu_gate_transition and in the run ledger. The rollback
refuses while any governable gate is open.

SQL: migrations/sql/gate_protocol.sql, rollbacks/gate_protocol.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "gate_protocol"
down_revision = "034"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

inventory = {
    "adds": {
        "table": [
            "public.iu_gate_transition",
        ],
        "function": [
            "public.fn_iu_gate_close(text, text, text)",
            "public.fn_iu_gate_open(text, uuid, text, text, integer)",
            "public.fn_iu_gate_verify_closed(text)",
            "public.fn_iu_gate_watchdog(text)",
        ],
    },
    "removes": {},
}
