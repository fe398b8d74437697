"""Behaviour tests of the `substrate` revision's SQL functions, against a real server.

Every test gets a fresh database at revision `substrate` from the `conn_at`
fixture (tests/conftest.py): a psycopg 3 connection, autocommit, tuple rows.
Gates start shut exactly as the revision leaves them; a test opens only what
it needs, with `open_gate`.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from .conftest import count, create_iu, one, set_config

COMPOSER = "iu_core.composer_enabled"
STRUCTURE_OPS = "iu_core.structure_ops_enabled"
DELIVERY = "iu_core.delivery_enabled"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def conn(conn_at):
    return conn_at("substrate")


def open_gate(conn, key):
    conn.execute("UPDATE public.dot_config SET value='true' WHERE key=%s", (key,))


def close_gate(conn, key):
    conn.execute("UPDATE public.dot_config SET value='false' WHERE key=%s", (key,))


def compose(conn, key, piece_ids, kind="file", title="A file", labels=None):
    answer = one(
        conn,
        "SELECT public.fn_iu_compose(%s, %s, %s, %s, %s, %s)",
        (key, kind, title, piece_ids, "pytest", labels),
    )
    assert answer["status"] == "composed", answer
    return uuid.UUID(answer["collection_id"])


def member_addresses(conn, collection_id):
    rows = conn.execute(
        """SELECT m.piece_order, iu.canonical_address
             FROM public.iu_collection_member m
             JOIN public.information_unit iu ON iu.iu_id = m.iu_id
            WHERE m.collection_id = %s
            ORDER BY m.piece_order""",
        (collection_id,),
    ).fetchall()
    assert [r[0] for r in rows] == list(range(len(rows))), rows  # contiguous 0..n-1
    return [r[1] for r in rows]


def abc_collection(conn, key="docs/file-abc"):
    open_gate(conn, COMPOSER)
    ids = [create_iu(conn, f"{key}/{x}") for x in ("a", "b", "c")]
    return compose(conn, key, ids), ids


def review_decision(conn):
    """A real cutter_governance.review_decision row (with its manifest envelope)."""
    envelope = one(
        conn,
        "INSERT INTO cutter_governance.manifest_envelope (manifest_key) VALUES ('m-1') RETURNING envelope_id",
    )
    return one(
        conn,
        """INSERT INTO cutter_governance.review_decision
               (governance_event_kind, manifest_id, manifest_version, review_scope, status, verdict,
                findings, reviewer_class, reviewer_identity, risk_class_assessment, decided_by)
           VALUES ('structure_op', %s, 1, 'piece', 'final', 'approve',
                   '[]', 'human', '{"name": "reviewer"}', 'low', 'pytest')
           RETURNING review_decision_id""",
        (envelope,),
    )


def insert_event(conn, event_type, stream, lane, *, domain="iu", subject="s"):
    """An outbox row written directly, past the emit functions: what the outbox trigger checks."""
    conn.execute(
        """INSERT INTO public.event_outbox (event_domain, event_type, event_stream, delivery_lane,
                                            event_subject_ref, actor)
           VALUES (%s, %s, %s, %s, %s, 'pytest')""",
        (domain, event_type, stream, lane, subject),
    )


# --------------------------------------------------------------------------- compose / reorder / validate / render


def test_reorder_move_to_zero_and_back_restores_exact_order(conn):
    cid, _ = abc_collection(conn)
    a, b, c = ("docs/file-abc/a", "docs/file-abc/b", "docs/file-abc/c")
    before = one(conn, "SELECT public.fn_iu_collection_render(%s)", (cid,))
    assert member_addresses(conn, cid) == [a, b, c]

    c_id = one(conn, "SELECT iu_id FROM public.information_unit WHERE canonical_address=%s", (c,))
    moved = one(conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 0, 'pytest')", (cid, c_id))
    assert moved["status"] == "reordered"
    assert (moved["old_order"], moved["new_order"]) == (2, 0)
    assert member_addresses(conn, cid) == [c, a, b]  # move, not swap
    assert one(conn, "SELECT public.fn_iu_collection_render(%s)", (cid,))["digest"] != before["digest"]

    back = one(conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 2, 'pytest')", (cid, c_id))
    assert (back["old_order"], back["new_order"]) == (0, 2)
    assert member_addresses(conn, cid) == [a, b, c]

    after = one(conn, "SELECT public.fn_iu_collection_render(%s)", (cid,))
    assert after["digest"] == before["digest"]
    assert after["manifest"] == before["manifest"]

    valid = one(conn, "SELECT public.fn_iu_collection_validate(%s)", (cid,))
    assert valid["ok"] is True
    assert valid["member_count"] == 3
    assert valid["checks"]["orders_contiguous"] is True
    assert valid["checks"]["members_active"] is True
    assert valid["checks"]["collection_active"] is True


def test_reorder_out_of_range_is_invalid_input(conn):
    cid, ids = abc_collection(conn)
    for bad in (3, -1, None):
        answer = one(
            conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, %s, 'pytest')", (cid, ids[0], bad)
        )
        assert answer["status"] == "invalid_input"
        assert answer["field"] == "new_order"
    assert member_addresses(conn, cid)[0].endswith("/a")


def test_render_is_deterministic_and_matches_members(conn):
    open_gate(conn, COMPOSER)
    ids = [create_iu(conn, "r/one", "One"), create_iu(conn, "r/two", "Two\tTabbed")]
    cid = compose(conn, "r/file", ids, labels=["intro"])
    first = one(conn, "SELECT public.fn_iu_collection_render(%s)", (cid,))
    second = one(conn, "SELECT public.fn_iu_collection_render(%s)", (cid,))
    assert first == second
    assert first["member_count"] == 2
    assert first["collection_key"] == "r/file"
    assert first["collection_kind"] == "file"
    assert first["manifest"] == "0\tr/one\tOne\tintro\n1\tr/two\tTwo\\tTabbed\n"
    assert first["digest"] == one(conn, "SELECT md5(%s)", (first["manifest"],))
    assert [m["canonical_address"] for m in first["members"]] == ["r/one", "r/two"]
    assert [m["label"] for m in first["members"]] == ["intro", None]
    assert str(cid) not in first["manifest"]
    # The manifest view agrees with the render.
    rows = conn.execute(
        "SELECT piece_order, canonical_address, label FROM public.v_iu_collection_manifest WHERE collection_key='r/file'"
    ).fetchall()
    assert rows == [(0, "r/one", "intro"), (1, "r/two", None)]


def test_validate_unknown_collection(conn):
    answer = one(conn, "SELECT public.fn_iu_collection_validate(%s)", (uuid.uuid4(),))
    assert answer["ok"] is False
    assert answer["status"] == "not_found"


def test_compose_refusals(conn):
    open_gate(conn, COMPOSER)
    a = create_iu(conn, "p/a")
    b = create_iu(conn, "p/b")
    cid = compose(conn, "p/file", [a, b])

    dup_key = one(conn, "SELECT public.fn_iu_compose('p/file', 'file', 'T', %s, 'pytest')", ([a],))
    assert dup_key["status"] == "duplicate"
    assert dup_key["collection_id"] == str(cid)

    dup_ids = one(conn, "SELECT public.fn_iu_compose('p/other', 'file', 'T', %s, 'pytest')", ([a, a],))
    assert dup_ids["status"] == "invalid_input"
    assert dup_ids["field"] == "piece_ids"
    assert dup_ids["duplicate_ids"] == [str(a)]

    ghost = uuid.uuid4()
    unknown = one(conn, "SELECT public.fn_iu_compose('p/other', 'file', 'T', %s, 'pytest')", ([a, ghost],))
    assert unknown["status"] == "invalid_input"
    assert unknown["unknown_ids"] == [str(ghost)]

    conn.execute("UPDATE public.information_unit SET lifecycle_status='retired' WHERE iu_id=%s", (b,))
    retired = one(conn, "SELECT public.fn_iu_compose('p/other', 'file', 'T', %s, 'pytest')", ([b],))
    assert retired["status"] == "invalid_input"
    assert retired["inactive_ids"] == [str(b)]

    kind = one(conn, "SELECT public.fn_iu_compose('p/other', 'folder', 'T', %s, 'pytest')", ([a],))
    assert (kind["status"], kind["field"]) == ("invalid_input", "collection_kind")
    assert count(conn, "public.iu_collection") == 1


# --------------------------------------------------------------------------- add / remove


def test_add_and_remove_keep_orders_compact(conn):
    cid, _ids = abc_collection(conn, "k")
    d = create_iu(conn, "k/d")
    e = create_iu(conn, "k/e")

    added = one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest', 1, 'inserted')", (cid, d))
    assert added["status"] == "added"
    assert added["piece_order"] == 1
    assert member_addresses(conn, cid) == ["k/a", "k/d", "k/b", "k/c"]

    appended = one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, e))
    assert appended["piece_order"] == 4
    assert member_addresses(conn, cid) == ["k/a", "k/d", "k/b", "k/c", "k/e"]

    again = one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, e))
    assert again["status"] == "duplicate"
    too_far = one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest', 9)", (cid, create_iu(conn, "k/f")))
    assert (too_far["status"], too_far["field"]) == ("invalid_input", "position")

    removed = one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, d))
    assert removed["status"] == "removed"
    assert removed["old_order"] == 1
    assert member_addresses(conn, cid) == ["k/a", "k/b", "k/c", "k/e"]
    # Removing the membership leaves the piece itself alive.
    assert one(conn, "SELECT lifecycle_status FROM public.information_unit WHERE iu_id=%s", (d,)) == "active"

    not_member = one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, d))
    assert (not_member["status"], not_member["field"]) == ("invalid_input", "iu_id")

    health = conn.execute(
        "SELECT member_count, orders_contiguous, all_members_active, ok FROM public.v_iu_collection_health WHERE collection_key='k'"
    ).fetchone()
    assert health == (4, True, True, True)


# --------------------------------------------------------------------------- the composer gate


def test_every_composer_mutator_refuses_while_gate_shut(conn):
    cid, ids = abc_collection(conn, "g")
    spare = create_iu(conn, "g/spare")
    close_gate(conn, COMPOSER)
    units_before = count(conn, "public.information_unit")
    orders_before = member_addresses(conn, cid)

    calls = {
        "fn_iu_create": ("SELECT public.fn_iu_create('g/new', 'piece', 'New', 'pytest')", ()),
        "fn_iu_compose": ("SELECT public.fn_iu_compose('g/other', 'file', 'T', %s, 'pytest')", ([spare],)),
        "fn_iu_collection_add_piece": (
            "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, spare)),
        "fn_iu_collection_remove_piece": (
            "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[0])),
        "fn_iu_collection_reorder_piece": (
            "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 0, 'pytest')", (cid, ids[2])),
        "fn_iu_workflow_from_steps": (
            "SELECT public.fn_iu_workflow_from_steps('g/wf', 'WF', %s, 'pytest')",
            (Jsonb([{"address": "g/wf/1", "title": "one"}]),)),
    }
    for name, (sql, params) in calls.items():
        answer = one(conn, sql, params)
        assert answer["status"] == "refused", name
        assert answer["reason"] == "gate_closed", name
        assert answer["gate"] == COMPOSER, name
        assert answer["next_action"], name

    assert count(conn, "public.information_unit") == units_before
    assert count(conn, "public.iu_collection") == 1
    assert member_addresses(conn, cid) == orders_before
    # Read-only functions need no gate.
    assert one(conn, "SELECT public.fn_iu_collection_validate(%s)", (cid,))["ok"] is True


# --------------------------------------------------------------------------- the birth gate


@pytest.mark.parametrize(
    "args, field",
    [
        (("", "piece", "T", "pytest"), "canonical_address"),
        ((None, "piece", "T", "pytest"), "canonical_address"),
        (("Upper/Case", "piece", "T", "pytest"), "canonical_address"),
        (("-leading", "piece", "T", "pytest"), "canonical_address"),
        (("has space", "piece", "T", "pytest"), "canonical_address"),
        (("ok/addr", "chapter", "T", "pytest"), "unit_kind"),
        (("ok/addr", "piece", "   ", "pytest"), "title"),
        (("ok/addr", "piece", "T", ""), "actor"),
    ],
)
def test_fn_iu_create_invalid_input(conn, args, field):
    open_gate(conn, COMPOSER)
    answer = one(conn, "SELECT public.fn_iu_create(%s, %s, %s, %s)", args)
    assert answer["status"] == "invalid_input"
    assert answer["field"] == field
    assert answer["guidance"]
    assert count(conn, "public.information_unit") == 0


def test_fn_iu_create_duplicate_and_no_event(conn):
    open_gate(conn, COMPOSER)
    first = one(conn, "SELECT public.fn_iu_create('dup/a', 'section', 'A', 'pytest', 'body text')")
    assert first["status"] == "created"
    assert first["canonical_address"] == "dup/a"
    second = one(conn, "SELECT public.fn_iu_create('dup/a', 'piece', 'Other', 'someone')")
    assert second["status"] == "duplicate"
    assert second["iu_id"] == first["iu_id"]
    assert count(conn, "public.information_unit") == 1
    row = conn.execute(
        "SELECT unit_kind, title, body, created_by FROM public.information_unit WHERE canonical_address='dup/a'"
    ).fetchone()
    assert row == ("section", "A", "body text", "pytest")
    # The birth gate emits nothing (seed 003 §2: 270's two births add no event).
    assert "event_id" not in first
    assert count(conn, "public.event_outbox") == 0


# --------------------------------------------------------------------------- outbox / emission


def test_outbox_trigger_rejects_unknown_type(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="not registered"):
        insert_event(conn, "no_such_type", "lifecycle", "immediate")
    assert count(conn, "public.event_outbox") == 0


def test_outbox_trigger_rejects_lane_and_stream_mismatch(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="delivery_lane='immediate'"):
        insert_event(conn, "iu_created", "lifecycle", "delayed")
    with pytest.raises(psycopg.errors.CheckViolation, match="event_stream='lifecycle'"):
        insert_event(conn, "iu_created", "composer", "immediate")
    conn.execute("UPDATE public.event_type_registry SET active=false WHERE event_type='iu_created'")
    with pytest.raises(psycopg.errors.CheckViolation, match="not active"):
        insert_event(conn, "iu_created", "lifecycle", "immediate")
    assert count(conn, "public.event_outbox") == 0


def test_immediate_lane_dedupes_but_delayed_lane_does_not(conn):
    emit = "SELECT public.fn_iu_emit_event(%s, %s, %s, %s, 'pytest')"
    first = one(conn, emit, ("iu", "structure_op_applied", "subject-1", Jsonb({"n": 1})))
    assert isinstance(first, uuid.UUID)
    second = one(conn, emit, ("iu", "structure_op_applied", "subject-1", Jsonb({"n": 2})))
    assert second is None
    assert count(conn, "public.event_outbox", "event_subject_ref='subject-1'") == 1
    assert one(conn, "SELECT payload FROM public.event_outbox WHERE event_id=%s", (first,)) == {"n": 1}
    other_subject = one(conn, emit, ("iu", "structure_op_applied", "subject-2", Jsonb({})))
    assert isinstance(other_subject, uuid.UUID)

    # A delayed-lane type (like the composer family of revision 260) is never deduplicated.
    conn.execute(
        """INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane)
           VALUES ('test', 'delayed_thing', 'composer', 'delayed')"""
    )
    for _ in range(2):
        insert_event(conn, "delayed_thing", "composer", "delayed", domain="test", subject="same-subject")
    via_emit = [one(conn, emit, ("test", "delayed_thing", "same-subject", Jsonb({}))) for _ in range(2)]
    assert all(isinstance(e, uuid.UUID) for e in via_emit) and via_emit[0] != via_emit[1]
    assert count(conn, "public.event_outbox", "event_subject_ref='same-subject'") == 4
    backlog = conn.execute(
        "SELECT event_type, lane, pending, total FROM public.v_iu_composer_event_backlog"
    ).fetchall()
    assert backlog == [("delayed_thing", "delayed", 4, 4)]


def test_emit_gating_returns_null(conn):
    emit = "SELECT public.fn_iu_emit_event('iu', 'structure_op_applied', %s, '{}', 'pytest')"
    set_config(conn, "iu_core.routes_master_enabled", "false")
    assert one(conn, emit, ("a",)) is None
    set_config(conn, "iu_core.routes_master_enabled", "true")
    set_config(conn, "piece_event_runtime.emit_enabled", "false")
    assert one(conn, emit, ("b",)) is None
    set_config(conn, "piece_event_runtime.emit_enabled", "true")
    assert one(conn, "SELECT public.fn_iu_emit_event('iu', 'nope', 'c', '{}', 'pytest')") is None
    conn.execute("UPDATE public.event_type_registry SET active=false WHERE event_type='structure_op_applied'")
    assert one(conn, emit, ("d",)) is None
    assert count(conn, "public.event_outbox") == 0


def test_gate_is_open_fails_closed(conn):
    assert one(conn, "SELECT public.fn_iu_gate_is_open('no.such.key')") is False
    assert one(conn, "SELECT public.fn_iu_gate_is_open(%s)", (COMPOSER,)) is False
    set_config(conn, COMPOSER, "TRUE")
    assert one(conn, "SELECT public.fn_iu_gate_is_open(%s)", (COMPOSER,)) is False
    set_config(conn, COMPOSER, "true")
    assert one(conn, "SELECT public.fn_iu_gate_is_open(%s)", (COMPOSER,)) is True
    assert one(conn, "SELECT public.fn_iu_core_routes_enabled()") is True
    assert one(conn, "SELECT public.fn_iu_delivery_enabled()") is False


# --------------------------------------------------------------------------- route worker / delivery


def emit_n(conn, n, prefix="ev", domain="iu", etype="structure_op_applied", payload=None):
    ids = []
    for i in range(n):
        ids.append(
            one(
                conn,
                "SELECT public.fn_iu_emit_event(%s, %s, %s, %s, 'pytest')",
                (domain, etype, f"{prefix}-{i}", Jsonb(payload or {})),
            )
        )
    assert all(ids)
    return ids


def test_worker_dry_run_counts_and_second_run_sees_nothing(conn):
    emit_n(conn, 3)
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 200)")
    assert run["route_code"] == "iu_outbound_default"
    assert (run["seen"], run["attempts_written"], run["skipped"], run["dead_lettered"]) == (3, 3, 0, 0)
    assert run["dry_run"] is True
    statuses = conn.execute(
        "SELECT attempt_status, detail->>'reason', count(*) FROM public.iu_route_attempt GROUP BY 1, 2"
    ).fetchall()
    assert statuses == [("dry_run", "delivery_disabled", 3)]

    again = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 200)")
    assert (again["seen"], again["attempts_written"], again["skipped"], again["dead_lettered"]) == (0, 0, 0, 0)
    assert count(conn, "public.iu_route_attempt") == 3
    # The first run left one run record; no worker ever picks it up.
    assert count(conn, "public.event_outbox", "event_type='route_worker_run'") == 1
    summary = conn.execute(
        "SELECT route_code, attempt_status, attempts FROM public.v_iu_route_attempt_summary"
    ).fetchall()
    assert summary == [("iu_outbound_default", "dry_run", 3)]


def test_concurrent_workers_never_take_the_same_event(conn):
    emit_n(conn, 4)
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    with psycopg.connect(**params) as other:  # a second worker, transaction left open
        held = other.execute("SELECT public.fn_iu_route_worker_run('iu_outbound_default', 2)").fetchone()[0]
        assert (held["seen"], held["attempts_written"]) == (2, 2)
        # Without SKIP LOCKED this run would wait on the open transaction.
        conn.execute("SET lock_timeout = '3s'")
        mine = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 10)")
        assert (mine["seen"], mine["attempts_written"], mine["skipped"]) == (2, 2, 0)
        other.commit()
    assert count(conn, "public.iu_route_attempt", "route_code='iu_outbound_default'") == 4
    assert one(conn, "SELECT count(DISTINCT event_id) FROM public.iu_route_attempt") == 4
    assert one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 10)")["seen"] == 0


def test_worker_respects_limit_and_routes_filter(conn):
    emit_n(conn, 3)
    emit_n(conn, 2, prefix="sys", domain="system", etype="route_worker_run")  # never picked up
    attempted = """SELECT e.event_subject_ref FROM public.iu_route_attempt a
                     JOIN public.event_outbox e USING (event_id)
                    WHERE a.route_code='iu_structure_consumer' ORDER BY e.created_at"""
    first = one(conn, "SELECT public.fn_iu_route_worker_run('iu_structure_consumer', 2)")
    assert (first["seen"], first["attempts_written"]) == (2, 2)
    # The oldest events went first: after the first run, exactly those two are attempted.
    assert conn.execute(attempted).fetchall() == [("ev-0",), ("ev-1",)]
    rest = one(conn, "SELECT public.fn_iu_route_worker_run('iu_structure_consumer', 2)")
    assert (rest["seen"], rest["attempts_written"]) == (1, 1)
    assert conn.execute(attempted).fetchall() == [("ev-0",), ("ev-1",), ("ev-2",)]


def test_worker_dead_letters_payload_contract_violations(conn):
    conn.execute(
        """UPDATE public.iu_outbound_route SET payload_contract='{"required": ["collection_id"]}'
            WHERE route_code='iu_structure_consumer'"""
    )
    emit_n(conn, 2, prefix="good", payload={"collection_id": "x"})
    bad = emit_n(conn, 1, prefix="bad", payload={"other": 1})[0]
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_structure_consumer', 10)")
    assert (run["seen"], run["attempts_written"], run["skipped"], run["dead_lettered"]) == (3, 3, 0, 1)
    dead = conn.execute(
        "SELECT event_id, reason, detail->'missing_keys' FROM public.v_iu_route_dead_letter_open"
    ).fetchall()
    assert dead == [(bad, "payload_contract_violation", ["collection_id"])]
    assert one(
        conn, "SELECT attempt_status FROM public.iu_route_attempt WHERE event_id=%s", (bad,)
    ) == "failed"
    assert count(conn, "public.iu_route_attempt", "attempt_status='dry_run'") == 2


def test_worker_disabled_route_or_worker_writes_nothing(conn):
    emit_n(conn, 2)
    conn.execute("UPDATE public.iu_outbound_route SET enabled=false WHERE route_code='iu_outbound_default'")
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 50)")
    assert (run["seen"], run["attempts_written"], run["skipped"], run["dead_lettered"]) == (2, 0, 2, 0)
    conn.execute("UPDATE public.iu_outbound_route SET enabled=true WHERE route_code='iu_outbound_default'")
    set_config(conn, "iu_core.route_worker_enabled", "false")
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 1)")
    assert (run["seen"], run["attempts_written"], run["skipped"]) == (1, 0, 1)
    assert count(conn, "public.iu_route_attempt") == 0


def test_worker_unknown_route_and_bad_limit(conn):
    answer = one(conn, "SELECT public.fn_iu_route_worker_run('no_such_route', 10)")
    assert answer["status"] == "refused"
    assert answer["reason"] == "route_not_registered"
    for bad in (0, 10001, None):
        answer = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', %s)", (bad,))
        assert answer["status"] == "invalid_input"
        assert answer["field"] == "p_limit"
    # Named-argument call: the parameter is literally route_code.
    named = one(conn, "SELECT public.fn_iu_route_worker_run(route_code => 'iu_outbound_default', p_limit => 5)")
    assert named["seen"] == 0


def test_route_deliver_gating_order(conn):
    event = emit_n(conn, 1)[0]
    deliver = "SELECT public.fn_iu_route_deliver(%s, %s)"
    shut = one(conn, deliver, ("iu_structure_consumer", event))
    assert (shut["status"], shut["reason"]) == ("dry_run", "delivery_disabled")

    open_gate(conn, DELIVERY)
    assert one(conn, deliver, ("nope", event))["reason"] == "route_not_registered"
    not_listed = one(conn, deliver, ("iu_structure_consumer", event))
    assert (not_listed["status"], not_listed["reason"]) == ("refused", "route_not_allowlisted")

    set_config(conn, "iu_core.delivery_live_routes", "iu_outbound_default, iu_structure_consumer")
    route_dry = one(conn, deliver, ("iu_structure_consumer", event))
    assert (route_dry["status"], route_dry["reason"]) == ("dry_run", "route_dry_run")

    conn.execute("UPDATE public.iu_outbound_route SET dry_run=false")
    webhook = one(conn, deliver, ("iu_outbound_default", event))
    assert (webhook["status"], webhook["reason"]) == ("refused", "feature_not_supported")
    sent = one(conn, deliver, ("iu_structure_consumer", event))
    assert sent["status"] == "sent"
    assert sent["result"] == {"status": "consumed", "event_id": str(event)}

    # The worker follows the same rules: live only for the allowlisted consumer.
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_structure_consumer', 10)")
    assert (run["attempts_written"], run["dry_run"]) == (1, False)
    assert one(conn, "SELECT attempt_status FROM public.iu_route_attempt WHERE route_code='iu_structure_consumer'") == "sent"
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 10)")
    assert run["dry_run"] is True
    assert one(conn, "SELECT attempt_status FROM public.iu_route_attempt WHERE route_code='iu_outbound_default'") == "refused"


# --------------------------------------------------------------------------- split / merge


SPLIT = "SELECT public.fn_iu_piece_split(%s, %s, %s, 'pytest', %s)"
MERGE = "SELECT public.fn_iu_piece_merge(%s, %s, %s, 'pytest', %s)"
PARTS = Jsonb([{"address": "s/part-1", "title": "Part 1"}, {"address": "s/part-2", "title": "Part 2"}])


def test_split_review_decision_answers(conn):
    open_gate(conn, COMPOSER)
    piece = create_iu(conn, "s/whole")
    missing = one(conn, SPLIT, (piece, PARTS, None, True))
    assert missing == {
        "status": "invalid_input",
        "field": "review_decision_id",
        "guidance": "Required. Split must reference a cutter_governance.review_decision row.",
        "next_action": "record_review_decision_first",
    }
    ghost = uuid.uuid4()
    not_found = one(conn, SPLIT, (piece, PARTS, ghost, True))
    assert not_found["status"] == "review_decision_not_found"
    assert not_found["review_decision_id"] == str(ghost)
    assert not_found["next_action"] == "record_review_decision_first"


def test_split_dry_run_then_live(conn):
    open_gate(conn, COMPOSER)
    piece = create_iu(conn, "s/whole")
    close_gate(conn, COMPOSER)
    rd = review_decision(conn)
    units = count(conn, "public.information_unit")

    dry = one(conn, SPLIT, (piece, PARTS, rd, True))
    assert dry["status"] == "dry_run"
    assert dry["would_retire"] == str(piece)
    assert [p["address"] for p in dry["would_create"]] == ["s/part-1", "s/part-2"]
    assert count(conn, "public.information_unit") == units  # no writes

    one_part = one(conn, SPLIT, (piece, Jsonb([{"address": "s/only", "title": "x"}]), rd, True))
    assert (one_part["status"], one_part["field"]) == ("invalid_input", "parts")

    refused = one(conn, SPLIT, (piece, PARTS, rd, False))
    assert refused["status"] == "refused"
    assert refused["gate"] == STRUCTURE_OPS
    assert count(conn, "public.information_unit") == units

    open_gate(conn, STRUCTURE_OPS)
    live = one(conn, SPLIT, (piece, PARTS, rd, False))
    assert live["status"] == "split"
    assert len(live["new_iu_ids"]) == 2
    row = conn.execute(
        "SELECT lifecycle_status, superseded_by FROM public.information_unit WHERE iu_id=%s", (piece,)
    ).fetchone()
    assert row == ("retired", [uuid.UUID(x) for x in live["new_iu_ids"]])
    kinds = conn.execute(
        "SELECT canonical_address, unit_kind FROM public.information_unit WHERE iu_id = ANY(%s::uuid[]) ORDER BY 1",
        (live["new_iu_ids"],),
    ).fetchall()
    assert kinds == [("s/part-1", "piece"), ("s/part-2", "piece")]
    assert count(conn, "public.event_outbox", "event_type='structure_piece_split' AND event_subject_ref=%s", (str(piece),)) == 1


def test_merge_answers(conn):
    open_gate(conn, COMPOSER)
    a = create_iu(conn, "m/a", "A")
    b = create_iu(conn, "m/b", "B")
    close_gate(conn, COMPOSER)

    missing = one(conn, MERGE, ([a, b], "m/ab", None, True))
    assert missing["status"] == "invalid_input"
    assert missing["field"] == "review_decision_id"
    assert missing["guidance"] == "Required. Merge must reference a cutter_governance.review_decision row."
    assert one(conn, MERGE, ([a, b], "m/ab", uuid.uuid4(), True))["status"] == "review_decision_not_found"

    rd = review_decision(conn)
    single = one(conn, MERGE, ([a], "m/ab", rd, True))
    assert (single["status"], single["field"]) == ("invalid_input", "iu_ids")
    dry = one(conn, MERGE, ([a, b], "m/ab", rd, True))
    assert dry["status"] == "dry_run"
    assert dry["would_create"] == {"address": "m/ab", "title": "A + B", "unit_kind": "piece"}
    assert dry["would_retire"] == [str(a), str(b)]
    assert one(conn, MERGE, ([a, b], "m/ab", rd, False))["gate"] == STRUCTURE_OPS
    assert count(conn, "public.information_unit") == 2

    open_gate(conn, STRUCTURE_OPS)
    live = one(conn, MERGE, ([a, b], "m/ab", rd, False))
    assert live["status"] == "merged"
    merged = uuid.UUID(live["merged_iu_id"])
    assert conn.execute(
        "SELECT count(*) FROM public.information_unit WHERE lifecycle_status='retired' AND superseded_by = ARRAY[%s::uuid]",
        (merged,),
    ).fetchone()[0] == 2
    assert count(conn, "public.event_outbox", "event_type='structure_pieces_merged'") == 1


# --------------------------------------------------------------------------- lifecycle / axes / workflow


def test_retire_refuses_while_member_then_retires(conn):
    cid, ids = abc_collection(conn, "ret")
    shut = one(conn, "SELECT public.fn_iu_retire(%s, 'obsolete', 'pytest')", (ids[0],))
    assert (shut["status"], shut["gate"]) == ("refused", STRUCTURE_OPS)
    open_gate(conn, STRUCTURE_OPS)
    member = one(conn, "SELECT public.fn_iu_retire(%s, 'obsolete', 'pytest')", (ids[0],))
    assert member["status"] == "refused"
    assert member["collections"] == ["ret"]
    assert member["next_action"] == "remove_from_collections_first"
    one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[0]))
    done = one(conn, "SELECT public.fn_iu_retire(%s, 'obsolete', 'pytest')", (ids[0],))
    assert done["status"] == "retired"
    assert conn.execute(
        "SELECT lifecycle_status, retired_reason FROM public.information_unit WHERE iu_id=%s", (ids[0],)
    ).fetchone() == ("retired", "obsolete")
    assert count(conn, "public.event_outbox", "event_type='iu_retired'") == 1


def test_refresh_metadata_axes(conn):
    _cid, ids = abc_collection(conn, "ax")
    shut = one(conn, "SELECT public.fn_iu_refresh_metadata_axes(%s, 'pytest')", (ids[1],))
    assert (shut["status"], shut["gate"]) == ("refused", "iu_core.three_axis_auto_refresh_enabled")
    open_gate(conn, "iu_core.three_axis_auto_refresh_enabled")
    answer = one(conn, "SELECT public.fn_iu_refresh_metadata_axes(%s, 'pytest')", (ids[1],))
    assert answer["status"] == "refreshed"
    expected = {"kind": "piece", "lifecycle": "active", "collections": 1}
    assert answer["metadata_axes"] == expected
    assert one(conn, "SELECT metadata_axes FROM public.information_unit WHERE iu_id=%s", (ids[1],)) == expected
    assert count(conn, "public.event_outbox", "event_type='iu_metadata_axes_refreshed'") == 1


def test_workflow_from_steps_all_or_nothing(conn):
    open_gate(conn, COMPOSER)
    create_iu(conn, "wf/taken")
    units = count(conn, "public.information_unit")
    steps = Jsonb([{"address": "wf/one", "title": "One"}, {"address": "wf/taken", "title": "Taken"}])
    failed = one(conn, "SELECT public.fn_iu_workflow_from_steps('wf/flow', 'Flow', %s, 'pytest')", (steps,))
    assert failed["status"] == "invalid_input"
    assert failed["step"] == 1
    assert failed["step_answer"]["status"] == "duplicate"
    assert count(conn, "public.information_unit") == units  # wf/one was undone too
    assert count(conn, "public.iu_collection") == 0
    assert count(conn, "public.event_outbox", "event_subject_ref NOT IN (SELECT iu_id::text FROM public.information_unit)") == 0

    steps = Jsonb([{"address": "wf/one", "title": "One"}, {"address": "wf/two", "title": "Two"}])
    ok = one(conn, "SELECT public.fn_iu_workflow_from_steps('wf/flow', 'Flow', %s, 'pytest')", (steps,))
    assert ok["status"] == "composed"
    assert ok["member_count"] == 2
    cid = uuid.UUID(ok["collection_id"])
    assert member_addresses(conn, cid) == ["wf/one", "wf/two"]
    assert one(conn, "SELECT collection_kind FROM public.iu_collection WHERE collection_id=%s", (cid,)) == "workflow"
    assert count(conn, "public.information_unit", "unit_kind='workflow_step'") == 2


# --------------------------------------------------------------------------- ledger


def test_command_log_refuses_unknown_command(conn):
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="dot_iu_not_registered"):
        conn.execute(
            """SELECT public.fn_dot_iu_command_log('dot_iu_not_registered', 'read', 'verify', 'verified',
                                                   false, NULL, '{}', '{}', 'pytest')"""
        )
    assert count(conn, "public.dot_iu_command_run") == 0


def test_command_log_params_digest_check(conn):
    conn.execute(
        """INSERT INTO public.dot_iu_command_catalog (command_name, category, mutating, reversible, target_functions)
           VALUES ('dot_iu_healthcheck', 'health', false, true, ARRAY['fn_iu_healthcheck'])"""
    )
    log = """SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified',
                                                 false, %s, %s, '{}', 'pytest')"""
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(log, ("collection_id=1234", Jsonb({})))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(log, ("D41D8CD98F00B204E9800998ECF8427E", Jsonb({})))  # upper-case is not md5 hex
    run_id = one(conn, log, ("d41d8cd98f00b204e9800998ecf8427e", Jsonb({COMPOSER: False})))
    assert isinstance(run_id, uuid.UUID)
    row = conn.execute(
        "SELECT command_name, run_mode, run_status, params_digest, gate_snapshot FROM public.dot_iu_command_run"
    ).fetchone()
    assert row == ("dot_iu_healthcheck", "verify", "verified", "d41d8cd98f00b204e9800998ecf8427e", {COMPOSER: False})
    health = conn.execute(
        "SELECT total_runs, apply_runs, applied, refused, failed, distinct_commands, catalog_size FROM public.v_dot_iu_command_run_health"
    ).fetchone()
    assert health == (1, 0, 0, 0, 0, 1, 1)
    registry = conn.execute(
        "SELECT command_name, runs, last_status FROM public.v_dot_iu_command_registry"
    ).fetchone()
    assert registry == ("dot_iu_healthcheck", 1, "verified")


# --------------------------------------------------------------------------- surface facts


def test_initial_state_and_healthcheck(conn):
    health = one(conn, "SELECT public.fn_iu_healthcheck()")
    assert health["counts"]["catalog_rows"] == 0
    assert health["counts"]["information_units"] == 0
    assert health["all_governed_closed"] is True
    assert health["gates"][COMPOSER] is False
    assert health["gates"]["iu_core.routes_master_enabled"] is True
    assert health["gates"]["iu_core.delivery_live_routes"] == ""
    assert len(health["gates"]) == 14


def test_mutating_functions_not_executable_by_public(conn):
    for signature in (
        "public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)",
        "public.fn_iu_create(text,text,text,text,text)",
        "public.fn_iu_compose(text,text,text,uuid[],text,text[])",
        "public.fn_iu_route_worker_run(text,integer)",
        "public.fn_iu_piece_split(uuid,jsonb,uuid,text,boolean)",
    ):
        assert one(conn, "SELECT has_function_privilege('public', %s, 'EXECUTE')", (signature,)) is False
    assert one(
        conn, "SELECT has_function_privilege('public', 'public.fn_iu_collection_validate(uuid)', 'EXECUTE')"
    ) is True
