"""least_privilege: the database side of least privilege (issue 9).

One gate classification (iu_gate_class: governable / never_flip /
outside_protocol, auto_instantiate_enabled governable), one gate reading with
the TTL enforced for every check (fn_iu_gate_state, fn_iu_gate_is_open), the
gates of every command (dot_iu_command_gate), the one governed entry point
fn_dot_iu_execute (SECURITY DEFINER: gates, the call with bound parameters,
one ledger row), a hardened ledger logger that records session_user and
refuses NULL digests and raw parameters, a safe-path CHECK on collection keys,
and every write privilege of a role other than the owner revoked. The
rollback restores the replaced functions from the very files their revisions
ran (\\ir), refused while a governable gate reads 'true'.

SQL: migrations/sql/least_privilege.sql (+ functions/least_privilege/*.sql),
rollbacks/least_privilege.sql, selftests/least_privilege.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "least_privilege"
down_revision = "gate_protocol"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# Replaced in place (CREATE OR REPLACE): fn_iu_gate_is_open, fn_dot_iu_command_log,
# fn_iu_healthcheck, fn_iu_gate_open / close / verify_closed / watchdog — not in
# the inventory delta (same names and signatures).
inventory = {
    "adds": {
        "table": [
            "public.dot_iu_command_gate",
            "public.iu_gate_class",
        ],
        "function": [
            "public.fn_dot_iu_execute(text, text, jsonb, text)",
            "public.fn_iu_gate_state(text)",
        ],
    },
    "removes": {},
}

# `db adopt least_privilege` also runs the post-check on the hand-migrated
# database: the seven functions it replaces keep their names and signatures, so
# only the post-check's assertions (every function's search_path pinned, the
# dispatcher and the logger SECURITY DEFINER, no write executable by another
# role, the gate classes and command gates) tell whether it was applied. It
# does not compare the replaced bodies: no file of this revision holds their digests.
adopt_runs_postcheck = True
