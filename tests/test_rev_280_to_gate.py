"""Revisions 280, 033, 034 and gate_protocol against a real server.

280: the SSOT catalog seed (idempotent INSERT, ledger-guarded rollback).
033: the auto-instantiate orchestrator and its two gates (seed 004).
034: the DOT registration of 033 — preflight, 26 → 24 → 26 (seed 004).
gate_protocol: the bounded gate protocol, its self-test T0-T9 and the
rollback guard (seed 002).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest

from iu_core.domain.registry import catalog_row, governed
from iu_core.framework import migrate
from iu_core.framework.sqlfiles import MIGRATION_SECTIONS, parse_script

from .conftest import ROOT, connect, count, create_iu, one, refused, set_config, set_version

COMPOSER = "iu_core.composer_enabled"
AUTO = "iu_core.auto_instantiate_enabled"
DELIVERY = "iu_core.delivery_enabled"
STRUCTURE_OPS = "iu_core.structure_ops_enabled"
NEVER_FLIP = ("iu_enact.allow_no_review_decision", "iu_core.vector_sync_enabled")
GOVERNABLE = (
    "iu_core.composer_enabled", "iu_core.structure_ops_enabled", "iu_core.delivery_enabled",
    "iu_core.three_axis_auto_refresh_enabled", "iu_core.operator_runtime_enabled",
    "queue.job_substrate.enabled", "queue.dlq.replay_enabled",
)
AUTO_COMMANDS = ("dot_iu_auto_instantiate_from_event", "dot_iu_auto_instantiate_rollback_by_actor")
GATE_COMMANDS = ("dot_iu_gate_open", "dot_iu_gate_close", "dot_iu_gate_watchdog", "dot_iu_gate_verify_closed")
REVS_AT = {
    "280": ("280",),
    "033": ("280",),
    "034": ("280", "034"),
    "gate_protocol": ("280", "034", "gate_protocol"),
}


# --------------------------------------------------------------------------- helpers


def gate(conn, key):
    """The gate's value, None when it has no row."""
    row = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def catalog(conn):
    return {
        (r[0], r[1], r[2], r[3], tuple(r[4]))
        for r in conn.execute(
            "SELECT command_name, category, mutating, reversible, target_functions FROM public.dot_iu_command_catalog"
        )
    }


def body_statements(rev):
    script = parse_script(ROOT / "migrations" / "sql" / f"{rev}.sql", MIGRATION_SECTIONS)
    return [s.sql for s in script.section("body")]


def log_run(conn, command, category="collection"):
    return one(
        conn,
        "SELECT public.fn_dot_iu_command_log(%s, %s, 'plan', 'planned', true, md5('x'), '{}', '{}', 'pytest')",
        (command, category),
    )


def template(conn, key="tpl/onboarding", n=3):
    """A template collection whose member order differs from creation order."""
    set_config(conn, COMPOSER, "true")
    ids = [create_iu(conn, f"{key}/p{i}") for i in range(n)]
    ordered = list(reversed(ids))
    labels = ["first"] + [None] * (n - 1)
    answer = one(
        conn,
        "SELECT public.fn_iu_compose(%s, 'design_doc', 'Onboarding', %s, 'pytest', %s)",
        (key, ordered, labels),
    )
    assert answer["status"] == "composed", answer
    set_config(conn, COMPOSER, "false")
    return uuid.UUID(answer["collection_id"]), ordered


def members(conn, collection_id):
    return conn.execute(
        "SELECT iu_id, piece_order, label FROM public.iu_collection_member WHERE collection_id = %s ORDER BY piece_order",
        (collection_id,),
    ).fetchall()


def instantiate(conn, tpl, suffix, mode="live", actor="orchestrator", event_id=None, event_type="crm.deal_won"):
    return one(
        conn,
        "SELECT public.fn_iu_auto_instantiate_from_event(%s, %s, %s, %s, %s, %s, %s)",
        (event_id or uuid.uuid4(), event_type, tpl, suffix, mode, actor, "pytest note"),
    )


def rollback_by_actor(conn, actor, dry_run):
    return one(conn, "SELECT public.fn_iu_auto_instantiate_rollback_by_actor(%s, %s)", (actor, dry_run))


def data_counts(conn):
    return {
        t: count(conn, t)
        for t in ("public.iu_collection", "public.iu_collection_member", "public.information_unit",
                  "public.event_outbox", "public.iu_auto_instance", "public.dot_iu_command_run")
    }


# --------------------------------------------------------------------------- SSOT: catalog == registry


@pytest.mark.parametrize("rev", ["280", "033", "034", "gate_protocol"])
def test_catalog_equals_the_registry_row_for_row(conn_at, rev):
    conn = conn_at(rev)
    expected = {catalog_row(c) for c in governed() if c.revision in REVS_AT[rev]}
    assert catalog(conn) == expected
    assert len(expected) == {"280": 24, "033": 24, "034": 26, "gate_protocol": 30}[rev]
    # every target function resolves
    unresolved = conn.execute(
        """SELECT DISTINCT t FROM public.dot_iu_command_catalog c, unnest(c.target_functions) t
            WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t)"""
    ).fetchall()
    assert unresolved == []


# --------------------------------------------------------------------------- 280


def test_280_reapplying_the_seed_insert_inserts_0_rows(conn_at):
    conn = conn_at("034")  # seed 004: R280 re-applied after 034 answers INSERT 0 0
    (insert,) = body_statements("280")
    assert "ON CONFLICT (command_name) DO NOTHING" in insert
    before = catalog(conn)
    cur = conn.execute(insert.encode())
    assert cur.statusmessage == "INSERT 0 0"
    assert catalog(conn) == before
    # 034's own INSERT is idempotent too
    (insert_034,) = body_statements("034")
    assert conn.execute(insert_034.encode()).statusmessage == "INSERT 0 0"
    assert count(conn, "public.dot_iu_command_catalog") == 26


def test_280_evidence_has_the_seed_shape(new_db):
    target = new_db("017")
    result = migrate.upgrade(target, "280")
    (rev,) = result.revisions
    rows = rev["evidence"]["postcheck"]["rows"]
    assert {"check": "280_catalog", "catalog_rows": 24, "expected_24": True} in rows
    assert {"check": "280_targets", "distinct_target_functions": 18, "all_resolvable": True} in rows
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 24


def test_280_rollback_refused_while_the_ledger_references_a_command(new_db):
    target = new_db("280")
    with connect(target) as c:
        log_run(c, "dot_iu_healthcheck", "health")
    msg = refused(migrate.downgrade, target, "017")
    assert "280 rollback REFUSED" in msg
    assert "dot_iu_healthcheck" in msg
    with connect(target) as c:
        c.execute("DELETE FROM public.dot_iu_command_run")
    migrate.downgrade(target, "017")
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 0


@pytest.mark.parametrize("rev,parent,needle", [
    ("280", "017", "280 preflight"),
    ("033", "280", "033 preflight"),
    ("gate_protocol", "034", "gate_protocol preflight"),
])
def test_preflight_refuses_to_reapply_over_itself(new_db, rev, parent, needle):
    # 034 is idempotent (seed 004): re-applied over itself it is a no-op, see test_ssot.py
    target = new_db(rev)
    set_version(target, parent)  # pretend the bookkeeping was lost
    msg = refused(migrate.upgrade, target, rev)
    assert needle in msg
    assert "already applied?" in msg


def test_280_preflight_refuses_when_a_target_function_is_missing(new_db):
    target = new_db("017")
    with connect(target) as c:
        c.execute("ALTER FUNCTION public.fn_iu_piece_restore(uuid, text) RENAME TO fn_iu_piece_restore_gone")
    msg = refused(migrate.upgrade, target, "280")
    assert "280 preflight: target function(s) not resolvable: fn_iu_piece_restore" in msg


# --------------------------------------------------------------------------- 033: two gates


def test_033_dry_run_is_refused_while_composer_is_shut(conn_at):
    conn = conn_at("033")
    tpl, _ = template(conn)
    before = data_counts(conn)
    answer = instantiate(conn, tpl, "a1", mode="dry_run")
    assert answer["status"] == "refused" and answer["reason"] == "gate_closed"
    assert answer["gate"] == COMPOSER and answer["gates"] == [COMPOSER]
    # live with both shut names both gates
    answer = instantiate(conn, tpl, "a1", mode="live")
    assert answer["status"] == "refused"
    assert answer["gates"] == [COMPOSER, AUTO]
    assert data_counts(conn) == before


def test_033_live_is_refused_with_only_composer_open(conn_at):
    conn = conn_at("033")
    tpl, _ = template(conn)
    set_config(conn, COMPOSER, "true")
    before = data_counts(conn)
    answer = instantiate(conn, tpl, "a1", mode="live")
    assert answer["status"] == "refused"
    assert answer["gate"] == AUTO and answer["gates"] == [AUTO]
    assert AUTO in answer["guidance"]
    assert data_counts(conn) == before
    # auto_instantiate alone is not enough either: composer is the first gate
    set_config(conn, COMPOSER, "false")
    set_config(conn, AUTO, "true")
    answer = instantiate(conn, tpl, "a1", mode="live")
    assert answer["status"] == "refused" and answer["gates"] == [COMPOSER]
    assert data_counts(conn) == before


def test_033_dry_run_writes_nothing_and_answers_what_it_would_create(conn_at):
    conn = conn_at("033")
    tpl, ordered = template(conn)
    set_config(conn, COMPOSER, "true")
    before = data_counts(conn)
    event_id = uuid.uuid4()
    answer = instantiate(conn, tpl, "demo-001", mode="dry_run", event_id=event_id)
    assert answer["status"] == "dry_run"
    would = answer["would_create"]
    assert would["collection_key"] == "tpl/onboarding.demo-001"
    assert would["collection_kind"] == "design_doc"
    assert str(event_id) in would["title"] and "crm.deal_won" in would["title"]
    assert [uuid.UUID(m["iu_id"]) for m in would["members"]] == ordered
    assert would["member_count"] == 3
    assert data_counts(conn) == before
    assert count(conn, "public.iu_collection", "collection_key = 'tpl/onboarding.demo-001'") == 0


def test_033_live_creates_the_instance_in_template_order_with_provenance_and_events(conn_at):
    conn = conn_at("033")
    tpl, ordered = template(conn)
    set_config(conn, COMPOSER, "true")
    set_config(conn, AUTO, "true")
    event_id = uuid.uuid4()
    answer = instantiate(conn, tpl, "demo-001", event_id=event_id, actor="orchestrator")
    assert answer["status"] == "instantiated", answer
    inst = uuid.UUID(answer["instance_collection_id"])

    row = conn.execute(
        "SELECT collection_key, collection_kind, title, created_by FROM public.iu_collection WHERE collection_id = %s",
        (inst,),
    ).fetchone()
    assert row[0] == "tpl/onboarding.demo-001" and row[1] == "design_doc"
    assert str(event_id) in row[2] and row[3] == "orchestrator"
    # the template's members, same order, same labels; the template is untouched
    assert [(m[0], m[1], m[2]) for m in members(conn, inst)] == [
        (m[0], m[1], m[2]) for m in members(conn, tpl)
    ]
    assert [m[0] for m in members(conn, inst)] == ordered

    prov = conn.execute(
        "SELECT template_collection_id, event_id, event_type, actor, note FROM public.iu_auto_instance"
        " WHERE instance_collection_id = %s",
        (inst,),
    ).fetchone()
    assert prov == (tpl, event_id, "crm.deal_won", "orchestrator", "pytest note")

    events = dict(conn.execute(
        """SELECT event_domain || '.' || event_type, count(*) FROM public.event_outbox
            WHERE event_subject_ref = %s GROUP BY 1""",
        (str(inst),),
    ).fetchall())
    assert events == {
        "iu.collection_created": 1,
        "iu.piece_added_to_collection": 3,
        "template.instance_auto_composed": 1,
    }
    ev = conn.execute(
        """SELECT event_id, event_stream, delivery_lane, payload, actor FROM public.event_outbox
            WHERE event_domain = 'template' AND event_type = 'instance_auto_composed'"""
    ).fetchall()
    assert len(ev) == 1
    assert ev[0][0] == uuid.UUID(answer["instance_event_id"])
    assert ev[0][1:3] == ("template", "delayed")
    assert ev[0][3]["source_event_id"] == str(event_id) and ev[0][3]["template_collection_id"] == str(tpl)
    assert ev[0][4] == "orchestrator"

    # a second instance of the same template: another event, never deduplicated
    second = instantiate(conn, tpl, "demo-002")
    assert second["status"] == "instantiated"
    assert count(conn, "public.event_outbox",
                 "event_domain = 'template' AND event_type = 'instance_auto_composed'") == 2


def test_033_invalid_input_answers(conn_at):
    conn = conn_at("033")
    tpl, _ = template(conn)
    set_config(conn, COMPOSER, "true")
    set_config(conn, AUTO, "true")
    before = data_counts(conn)
    bad_mode = instantiate(conn, tpl, "x", mode="maybe")
    assert (bad_mode["status"], bad_mode["field"]) == ("invalid_input", "emit_mode")
    for mode in ("dry_run", "live"):
        unknown = instantiate(conn, uuid.uuid4(), "x", mode=mode)
        assert (unknown["status"], unknown["field"]) == ("invalid_input", "template_collection_id")
        for suffix in ("", "   ", None):
            empty = instantiate(conn, tpl, suffix, mode=mode)
            assert (empty["status"], empty["field"]) == ("invalid_input", "instance_key_suffix")
        for actor in ("", None):
            no_actor = instantiate(conn, tpl, "x", mode=mode, actor=actor)
            assert (no_actor["status"], no_actor["field"]) == ("invalid_input", "actor")
    assert data_counts(conn) == before

    assert instantiate(conn, tpl, "dup")["status"] == "instantiated"
    after_first = data_counts(conn)
    for mode in ("dry_run", "live"):
        dup = instantiate(conn, tpl, "dup", mode=mode)
        assert dup["status"] == "duplicate"
        assert dup["collection_key"] == "tpl/onboarding.dup"
    assert data_counts(conn) == after_first


def test_033_rollback_by_actor_dry_run_then_real_leaves_other_actors(conn_at):
    conn = conn_at("033")
    tpl, ordered = template(conn)
    set_config(conn, COMPOSER, "true")
    set_config(conn, AUTO, "true")
    mine = [uuid.UUID(instantiate(conn, tpl, f"mine-{i}", actor="alice")["instance_collection_id"]) for i in range(2)]
    theirs = uuid.UUID(instantiate(conn, tpl, "theirs", actor="bob")["instance_collection_id"])

    # the live rollback is gated like live mode; the dry run like dry_run
    set_config(conn, AUTO, "false")
    gated = rollback_by_actor(conn, "alice", False)
    assert gated["status"] == "refused" and gated["gates"] == [AUTO]
    before = data_counts(conn)
    dry = rollback_by_actor(conn, "alice", True)
    assert dry["status"] == "dry_run"
    assert dry["instance_count"] == 2
    assert dry["would_remove"] == {"collections": 2, "memberships": 6, "provenance_rows": 2}
    assert sorted(uuid.UUID(i["instance_collection_id"]) for i in dry["instances"]) == sorted(mine)
    assert data_counts(conn) == before
    set_config(conn, COMPOSER, "false")
    assert rollback_by_actor(conn, "alice", True)["gates"] == [COMPOSER]

    set_config(conn, COMPOSER, "true")
    set_config(conn, AUTO, "true")
    real = rollback_by_actor(conn, "alice", False)
    assert real["status"] == "rolled_back"
    assert (real["collections_removed"], real["memberships_removed"], real["provenance_rows_removed"]) == (2, 6, 2)
    assert count(conn, "public.iu_collection", "collection_id = ANY(%s)", (mine,)) == 0
    assert count(conn, "public.iu_auto_instance", "actor = 'alice'") == 0
    # bob's instance, the template and every piece stay
    assert count(conn, "public.iu_auto_instance", "actor = 'bob'") == 1
    assert [m[0] for m in members(conn, theirs)] == ordered
    assert [m[0] for m in members(conn, tpl)] == ordered
    assert count(conn, "public.information_unit", "iu_id = ANY(%s) AND lifecycle_status = 'active'", (ordered,)) == 3
    # nothing left for alice
    again = rollback_by_actor(conn, "alice", False)
    assert (again["status"], again["collections_removed"]) == ("rolled_back", 0)


def test_033_rollback_refuses_while_instances_events_or_the_gate_remain(new_db):
    target = new_db("033")
    with connect(target) as c:
        tpl, _ = template(c)
        set_config(c, COMPOSER, "true")
        set_config(c, AUTO, "true")
        assert instantiate(c, tpl, "r1", actor="carol")["status"] == "instantiated"
    msg = refused(migrate.downgrade, target, "280")
    assert "iu_core.auto_instantiate_enabled is currently OPEN" in msg
    with connect(target) as c:
        set_config(c, AUTO, "false")
    msg = refused(migrate.downgrade, target, "280")
    assert "auto-instance(s) still recorded in public.iu_auto_instance" in msg
    with connect(target) as c:
        set_config(c, AUTO, "true")
        assert rollback_by_actor(c, "carol", False)["collections_removed"] == 1
        set_config(c, AUTO, "false")
        set_config(c, COMPOSER, "false")
    msg = refused(migrate.downgrade, target, "280")
    assert "template.instance_auto_composed event(s) in public.event_outbox" in msg
    with connect(target) as c:
        c.execute("DELETE FROM public.event_outbox WHERE event_domain = 'template'")
    migrate.downgrade(target, "280")
    with connect(target) as c:
        assert c.execute("SELECT to_regclass('public.iu_auto_instance')").fetchone() == (None,)
        assert gate(c, AUTO) is None
        assert count(c, "public.event_type_registry", "event_domain = 'template'") == 0


# --------------------------------------------------------------------------- 034


def test_034_preflight_refuses_when_033_functions_are_missing(new_db):
    target = new_db("033")
    with connect(target) as c:
        c.execute("DROP FUNCTION public.fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text)")
    msg = refused(migrate.upgrade, target, "034")
    assert "034 preflight: migration 033 substrate missing" in msg
    assert "fn_iu_auto_instantiate_from_event" in msg and "apply 033 first" in msg
    assert "rollback_by_actor" not in msg
    with connect(target) as c:
        c.execute("DROP FUNCTION public.fn_iu_auto_instantiate_rollback_by_actor(text, boolean)")
    msg = refused(migrate.upgrade, target, "034")
    assert "fn_iu_auto_instantiate_rollback_by_actor" in msg
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 24


def test_034_cycle_26_24_26_with_the_ledger_guard(new_db):
    target = new_db("034")
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 26
        log_run(c, "dot_iu_auto_instantiate_rollback_by_actor", "lifecycle")
    msg = refused(migrate.downgrade, target, "033")
    assert "034 rollback REFUSED" in msg
    assert "dot_iu_auto_instantiate_rollback_by_actor" in msg
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 26
        c.execute("DELETE FROM public.dot_iu_command_run WHERE command_name = ANY(%s)", (list(AUTO_COMMANDS),))
    migrate.downgrade(target, "033")
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 24
        assert count(c, "public.dot_iu_command_catalog", "command_name = ANY(%s)", (list(AUTO_COMMANDS),)) == 0
    migrate.upgrade(target, "034")
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 26
        rows = catalog(c)
    assert ("dot_iu_auto_instantiate_from_event", "collection", True, True,
            ("fn_iu_auto_instantiate_from_event",)) in rows
    assert ("dot_iu_auto_instantiate_rollback_by_actor", "lifecycle", True, True,
            ("fn_iu_auto_instantiate_rollback_by_actor",)) in rows


def test_034_verification_output_matches_the_seed(new_db):
    target = new_db("033")
    lines: list[str] = []
    migrate.upgrade(target, "034", sink=lines.append)
    text = "\n".join(lines)
    assert "INSERT 0 2" in text
    assert "034_catalog" in text and "034_targets" in text and "034_new_rows" in text
    with connect(target) as c:
        row = c.execute(
            """SELECT '034_targets', count(DISTINCT t),
                      bool_and(EXISTS (SELECT 1 FROM pg_proc p WHERE p.proname = t))
                 FROM public.dot_iu_command_catalog c, unnest(c.target_functions) t"""
        ).fetchone()
    assert row == ("034_targets", 20, True)


# --------------------------------------------------------------------------- gate protocol


@pytest.fixture
def gp(conn_at):
    return conn_at("gate_protocol")


def gate_open(conn, key, ttl=600, approval="default", reason="pytest", actor="pytest"):
    approval_id = uuid.uuid4() if approval == "default" else approval
    return one(conn, "SELECT public.fn_iu_gate_open(%s, %s, %s, %s, %s)", (key, approval_id, reason, actor, ttl))


def gate_close(conn, key, reason="pytest", actor="pytest"):
    return one(conn, "SELECT public.fn_iu_gate_close(%s, %s, %s)", (key, reason, actor))


def verify(conn, key=None):
    return one(conn, "SELECT public.fn_iu_gate_verify_closed(%s)", (key,))


def transitions(conn):
    return conn.execute(
        "SELECT gate_key, action, prev_value, new_value FROM public.iu_gate_transition ORDER BY created_at"
    ).fetchall()


def ledger(conn):
    return conn.execute(
        "SELECT command_name, run_status, run_id FROM public.dot_iu_command_run ORDER BY created_at"
    ).fetchall()


def test_gate_open_and_close_write_a_transition_and_a_ledger_row_each(gp):
    approval = uuid.uuid4()
    opened = gate_open(gp, COMPOSER, ttl=900, approval=approval, reason="secret-reason-xyz")
    assert opened["status"] == "opened" and opened["prev_value"] == "false"
    assert gate(gp, COMPOSER) == "true"
    t = gp.execute(
        "SELECT action, prev_value, new_value, approval_id, ttl_seconds, expires_at - created_at, actor, reason, run_id"
        " FROM public.iu_gate_transition"
    ).fetchall()
    assert len(t) == 1
    action, prev, new, appr, ttl, span, actor, reason, run_id = t[0]
    assert (action, prev, new, appr, ttl, actor, reason) == ("open", "false", "true", approval, 900, "pytest", "secret-reason-xyz")
    assert abs(span - timedelta(seconds=900)) < timedelta(seconds=5)
    run = gp.execute(
        "SELECT command_name, category, run_mode, run_status, mutating, params_digest, evidence::text, actor"
        " FROM public.dot_iu_command_run WHERE run_id = %s",
        (run_id,),
    ).fetchone()
    assert run[:5] == ("dot_iu_gate_open", "health", "apply", "applied", True)
    assert len(run[5]) == 32 and "secret-reason-xyz" not in run[6] and run[7] == "pytest"

    closed = gate_close(gp, COMPOSER)
    assert (closed["status"], closed["prev_value"], closed["new_value"]) == ("closed", "true", "false")
    assert gate(gp, COMPOSER) == "false"
    assert transitions(gp) == [(COMPOSER, "open", "false", "true"), (COMPOSER, "close", "true", "false")]
    assert [r[:2] for r in ledger(gp)] == [("dot_iu_gate_open", "applied"), ("dot_iu_gate_close", "applied")]
    # every transition points at its own ledger row
    assert count(gp, "public.iu_gate_transition t",
                 "NOT EXISTS (SELECT 1 FROM public.dot_iu_command_run r WHERE r.run_id = t.run_id)") == 0


@pytest.mark.parametrize("key", NEVER_FLIP)
def test_never_flip_gates_are_refused_with_42501(gp, key):
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as exc:
        gate_open(gp, key)
    assert exc.value.sqlstate == "42501"
    assert "NEVER-FLIP" in str(exc.value) and "supply a real review_decision_id" in str(exc.value)
    assert gate(gp, key) == "false"
    assert transitions(gp) == [] and ledger(gp) == []


def test_non_governable_gate_is_refused_with_42501(gp):
    for fn in (lambda: gate_open(gp, "iu_core.routes_master_enabled"),
               lambda: gate_close(gp, "iu_core.routes_master_enabled"),
               lambda: gate_open(gp, "iu_core.auto_instantiate_enabled")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as exc:
            fn()
        assert exc.value.sqlstate == "42501"
        assert "not a governable runtime gate (fail-closed)" in str(exc.value)
    assert gate(gp, "iu_core.routes_master_enabled") == "true"
    assert transitions(gp) == [] and ledger(gp) == []


def test_null_approval_and_ttl_out_of_range_are_refused_with_23514(gp):
    with pytest.raises(psycopg.errors.CheckViolation) as exc:
        gate_open(gp, STRUCTURE_OPS, approval=None)
    assert exc.value.sqlstate == "23514" and "approval_id required (Điều 32)" in str(exc.value)
    for ttl in (0, 3601, -5, None):
        with pytest.raises(psycopg.errors.CheckViolation) as exc:
            gate_open(gp, STRUCTURE_OPS, ttl=ttl)
        assert exc.value.sqlstate == "23514" and "(0, 3600]" in str(exc.value)
    assert gate(gp, STRUCTURE_OPS) == "false"
    assert transitions(gp) == [] and ledger(gp) == []
    # the bounds themselves are inside
    assert gate_open(gp, STRUCTURE_OPS, ttl=3600)["status"] == "opened"
    assert gate_open(gp, STRUCTURE_OPS, ttl=1)["status"] == "opened"
    gate_close(gp, STRUCTURE_OPS)


def test_watchdog_closes_an_expired_gate_only(gp):
    gate_open(gp, DELIVERY, ttl=600)
    gate_open(gp, COMPOSER, ttl=600)
    idle = one(gp, "SELECT public.fn_iu_gate_watchdog('watchdog')")
    assert idle["closed_count"] == 0
    assert gate(gp, DELIVERY) == "true"
    # a sweep that closes nothing is still audited: one 'verified' ledger row
    assert gp.execute(
        "SELECT command_name, run_mode, run_status FROM public.dot_iu_command_run WHERE run_id = %s",
        (idle["run_id"],),
    ).fetchone() == ("dot_iu_gate_watchdog", "verify", "verified")
    gp.execute(
        "UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 second'"
        " WHERE gate_key = %s AND action = 'open'",
        (DELIVERY,),
    )
    answer = one(gp, "SELECT public.fn_iu_gate_watchdog('watchdog')")
    assert answer["closed_count"] == 1
    assert [c["gate_key"] for c in answer["closed"]] == [DELIVERY]
    assert gate(gp, DELIVERY) == "false" and gate(gp, COMPOSER) == "true"
    last = gp.execute(
        "SELECT action, prev_value, new_value, actor, run_id FROM public.iu_gate_transition"
        " WHERE gate_key = %s ORDER BY created_at DESC LIMIT 1",
        (DELIVERY,),
    ).fetchone()
    assert last[:4] == ("watchdog_close", "true", "false", "watchdog")
    assert one(gp, "SELECT command_name FROM public.dot_iu_command_run WHERE run_id = %s", (last[4],)) == "dot_iu_gate_watchdog"
    gate_close(gp, COMPOSER)


def test_watchdog_closes_a_gate_opened_outside_the_protocol(gp):
    set_config(gp, "queue.dlq.replay_enabled", "true")  # by hand: no transition, no TTL
    answer = one(gp, "SELECT public.fn_iu_gate_watchdog('watchdog')")
    assert answer["closed_count"] == 1
    assert gate(gp, "queue.dlq.replay_enabled") == "false"
    assert transitions(gp) == [("queue.dlq.replay_enabled", "watchdog_close", "true", "false")]


def test_verify_closed_reports_the_nine_gates_and_fails_closed(gp):
    v = verify(gp)
    assert (v["all_safe"], v["all_governed_closed"], v["never_flip_intact"]) == (True, True, True)
    assert [g["key"] for g in v["gates"]] == [*GOVERNABLE, *NEVER_FLIP]
    assert {g["class"] for g in v["gates"][:7]} == {"governable"}
    assert {g["class"] for g in v["gates"][7:]} == {"never_flip"}
    gate_open(gp, COMPOSER)
    v = verify(gp)
    assert (v["all_safe"], v["all_governed_closed"], v["never_flip_intact"]) == (False, False, True)
    gate_close(gp, COMPOSER)
    assert verify(gp)["all_safe"] is True
    # a never-flip gate flipped by hand: not intact; close forces it back
    set_config(gp, "iu_core.vector_sync_enabled", "true")
    v = verify(gp)
    assert (v["all_safe"], v["all_governed_closed"], v["never_flip_intact"]) == (False, True, False)
    assert gate_close(gp, "iu_core.vector_sync_enabled")["prev_value"] == "true"
    assert verify(gp)["never_flip_intact"] is True
    # a missing gate row is NOT safe
    gp.execute("DELETE FROM public.dot_config WHERE key = %s", (STRUCTURE_OPS,))
    v = verify(gp)
    assert (v["all_safe"], v["all_governed_closed"]) == (False, False)
    assert verify(gp, STRUCTURE_OPS)["gates"] == [{"key": STRUCTURE_OPS, "value": None, "class": "governable"}]
    assert verify(gp, "nope")["status"] == "invalid_input"
    vol = one(gp, "SELECT provolatile::text FROM pg_proc WHERE proname = 'fn_iu_gate_verify_closed'")
    assert vol == "s"


def test_t0_to_t9_self_test_ledger_sequence(gp):
    """Seed 002 A5, replayed: T0 … T9 and the ledger of transitions."""
    before_runs = count(gp, "public.dot_iu_command_run")
    assert verify(gp)["all_safe"] is True                                      # T0
    assert gate_open(gp, COMPOSER)["status"] == "opened"                       # T1
    v = verify(gp)                                                             # T2
    assert (v["all_governed_closed"], v["never_flip_intact"]) == (False, True)
    for key in NEVER_FLIP:                                                     # T3, T3b
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            gate_open(gp, key)
        assert gate(gp, key) == "false"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):                 # T4
        gate_open(gp, "iu_core.routes_master_enabled")
    with pytest.raises(psycopg.errors.CheckViolation):                         # T5
        gate_open(gp, STRUCTURE_OPS, approval=None)
    assert gate_close(gp, COMPOSER)["status"] == "closed"                      # T6
    gate_open(gp, DELIVERY)                                                    # T7
    assert gate(gp, DELIVERY) == "true"
    gp.execute("UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 minute'"
               " WHERE gate_key = %s AND action = 'open'", (DELIVERY,))
    assert one(gp, "SELECT public.fn_iu_gate_watchdog('t7')")["closed_count"] == 1
    assert gate(gp, DELIVERY) == "false"
    assert verify(gp)["all_safe"] is True                                      # T8
    assert transitions(gp) == [                                                # T9
        (COMPOSER, "open", "false", "true"),
        (COMPOSER, "close", "true", "false"),
        (DELIVERY, "open", "false", "true"),
        (DELIVERY, "watchdog_close", "true", "false"),
    ]
    assert [r[0] for r in ledger(gp)] == [
        "dot_iu_gate_open", "dot_iu_gate_close", "dot_iu_gate_open", "dot_iu_gate_watchdog",
    ]
    assert count(gp, "public.dot_iu_command_run") == before_runs + 4  # refusals write nothing


def test_gate_mutators_are_not_executable_by_public(gp):
    rows = gp.execute(
        """SELECT p.proname, p.prosecdef,
                  EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                           WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),
                  p.proconfig
             FROM pg_proc p WHERE p.proname LIKE 'fn_iu_gate\\_%%' AND p.proname <> 'fn_iu_gate_is_open'
            ORDER BY 1"""
    ).fetchall()
    assert [(r[0], r[2]) for r in rows] == [
        ("fn_iu_gate_close", False), ("fn_iu_gate_open", False),
        ("fn_iu_gate_verify_closed", True), ("fn_iu_gate_watchdog", False),
    ]
    for name, secdef, _, config in rows:
        if secdef:
            assert "search_path=public, pg_temp" in config, name


def test_gate_protocol_rollback_refused_while_a_governable_gate_is_open(new_db):
    target = new_db("gate_protocol")
    with connect(target) as c:
        gate_open(c, STRUCTURE_OPS)
    msg = refused(migrate.downgrade, target, "034")
    assert "rollback refused: 1 governable gate(s) currently OPEN" in msg
    assert STRUCTURE_OPS in msg
    with connect(target) as c:
        gate_close(c, STRUCTURE_OPS)
        assert count(c, "public.dot_iu_command_run") == 2
    migrate.downgrade(target, "034")
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 26
        assert count(c, "public.dot_iu_command_run") == 0  # seed 002 A6 deletes the gate commands' runs
        assert c.execute("SELECT to_regclass('public.iu_gate_transition')").fetchone() == (None,)
        assert count(c, "pg_proc", "proname = ANY(%s)",
                     (["fn_iu_gate_open", "fn_iu_gate_close", "fn_iu_gate_verify_closed", "fn_iu_gate_watchdog"],)) == 0
        assert gate(c, STRUCTURE_OPS) == "false"
    migrate.upgrade(target, "gate_protocol")
    with connect(target) as c:
        assert count(c, "public.dot_iu_command_catalog") == 30


def test_gate_protocol_preflight_refuses_off_the_034_catalog(new_db):
    target = new_db("034")
    with connect(target) as c:
        c.execute("DELETE FROM public.dot_iu_command_catalog WHERE command_name = 'dot_iu_healthcheck'")
    msg = refused(migrate.upgrade, target, "gate_protocol")
    assert "gate_protocol preflight: public.dot_iu_command_catalog has 25 row(s), expected 26" in msg


def test_gate_open_expiry_is_now_plus_ttl(gp):
    opened = gate_open(gp, "queue.job_substrate.enabled", ttl=120)
    expires = datetime.fromisoformat(opened["expires_at"])
    now = one(gp, "SELECT now()")
    assert timedelta(seconds=110) < expires - now <= timedelta(seconds=120)
    gate_close(gp, "queue.job_substrate.enabled")
