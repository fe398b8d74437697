"""Revisions 016, 260 and 017 against a real server: composer events, the
composer event family on the delayed lane, the soft-delete / restore pair, and
each revision's guards.

Seeds: 001 §1-§3 (composer events, worker dry-run, no dedupe), 003 §6-§8
(016, the lane defect, 017's three distinct piece-disposal verbs).
"""

from __future__ import annotations

import uuid

import pytest
from psycopg.types.json import Jsonb

from iu_core.config import RunOptions
from iu_core.framework import migrate
from iu_core.framework.fingerprint import diff
from iu_core.release import inventory

from .conftest import ROOT, connect, count, create_iu, one, refused, set_config, set_version, snap

COMPOSER = "iu_core.composer_enabled"
STRUCTURE_OPS = "iu_core.structure_ops_enabled"
DELIVERY = "iu_core.delivery_enabled"

COMPOSER_TYPES = (
    "collection_created",
    "piece_added_to_collection",
    "piece_removed_from_collection",
    "piece_reordered",
    "collection_rendered",
    "collection_validated",
    "piece_soft_deleted",
    "piece_restored",
)
REWIRED = (
    "public.fn_iu_compose(text,text,text,uuid[],text,text[])",
    "public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)",
    "public.fn_iu_collection_remove_piece(uuid,uuid,text)",
    "public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)",
)


# --------------------------------------------------------------------------- helpers


def pieces(conn, prefix, n=3):
    set_config(conn, COMPOSER, "true")
    return [create_iu(conn, f"{prefix}/{i}") for i in range(n)]


def compose(conn, key, ids):
    answer = one(
        conn,
        "SELECT public.fn_iu_compose(%s, 'file', 'A file', %s, 'pytest', NULL)",
        (key, ids),
    )
    assert answer["status"] == "composed", answer
    return answer


def composer_events(conn, subject=None):
    """(event_type, subject, lane, payload, event_id) of composer-stream events, in emission order."""
    sql = """SELECT event_type, event_subject_ref, delivery_lane, payload, event_id
               FROM public.event_outbox WHERE event_stream = 'composer'"""
    params: tuple = ()
    if subject is not None:
        sql += " AND event_subject_ref = %s"
        params = (str(subject),)
    return conn.execute(sql + " ORDER BY created_at, event_id", params).fetchall()


def order_of(conn, cid):
    return [
        r[0]
        for r in conn.execute(
            "SELECT iu_id FROM public.iu_collection_member WHERE collection_id=%s ORDER BY piece_order",
            (cid,),
        )
    ]


def unit(conn, iu_id):
    return conn.execute(
        "SELECT lifecycle_status, deleted_at IS NOT NULL, deleted_by, delete_reason"
        " FROM public.information_unit WHERE iu_id=%s",
        (iu_id,),
    ).fetchone()


def fn_defs(conn, sigs=REWIRED):
    return {
        s: conn.execute(
            "SELECT pg_get_functiondef(%s::regprocedure) || coalesce((SELECT proacl::text FROM pg_proc"
            " WHERE oid = %s::regprocedure), '')",
            (s, s),
        ).fetchone()[0]
        for s in sigs
    }


# --------------------------------------------------------------------------- 016 alone


def test_at_016_the_composer_works_and_emits_nothing(conn_at):
    """Before 260 registers the family, the re-wired functions answer as before and emit nothing."""
    conn = conn_at("016")
    ids = pieces(conn, "docs/at016")
    answer = compose(conn, "docs/at016", ids)
    assert answer["member_count"] == 3
    assert answer["event_id"] is None and answer["event_ids"] == []
    cid = uuid.UUID(answer["collection_id"])

    moved = one(
        conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 0, 'pytest')", (cid, ids[2])
    )
    assert (moved["status"], moved["old_order"], moved["new_order"], moved["event_id"]) == (
        "reordered",
        2,
        0,
        None,
    )
    removed = one(
        conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[0])
    )
    assert (removed["status"], removed["member_count"], removed["event_id"]) == ("removed", 2, None)
    added = one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, ids[0]))
    assert (added["status"], added["piece_order"], added["event_id"]) == ("added", 2, None)
    assert order_of(conn, cid) == [ids[2], ids[1], ids[0]]

    cp = one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (cid,))
    assert cp["status"] == "checkpointed" and cp["event_id"] is None and cp["member_count"] == 3
    assert cp["digest"] == one(conn, "SELECT public.fn_iu_collection_render(%s)->>'digest'", (cid,))

    assert composer_events(conn) == []
    # Nothing is in the outbox: the three births emit no event either.
    assert conn.execute("SELECT count(*) FROM public.event_outbox").fetchone() == (0,)
    row = conn.execute(
        "SELECT last_render_digest, member_count, rendered_events FROM public.v_iu_collection_checkpoint"
    ).fetchone()
    assert row == (cp["digest"], 3, 0)


def test_016_composer_emit_only_emits_registered_composer_types(conn_at):
    conn = conn_at("260")
    cid = uuid.uuid4()
    emit = "SELECT public.fn_iu_composer_emit(%s, %s, %s, 'pytest')"
    # A lifecycle type is registered but not on the composer stream: never with a collection subject.
    assert one(conn, emit, ("iu_created", cid, Jsonb({}))) is None
    assert one(conn, emit, ("no_such_type", cid, Jsonb({}))) is None
    event = one(conn, emit, ("collection_validated", cid, Jsonb({"k": 1})))
    assert isinstance(event, uuid.UUID)
    assert conn.execute(
        "SELECT event_subject_ref, payload, delivery_lane FROM public.event_outbox WHERE event_id=%s",
        (event,),
    ).fetchone() == (str(cid), {"k": 1, "collection_id": str(cid)}, "delayed")
    # Emission gating is fn_iu_emit_event's.
    set_config(conn, "iu_core.routes_master_enabled", "false")
    assert one(conn, emit, ("collection_validated", cid, Jsonb({}))) is None
    assert count(conn, "public.event_outbox") == 1


def test_016_downgrade_restores_byte_identical_composer_functions(new_db):
    target = new_db("substrate")
    with connect(target) as c:
        before = fn_defs(c)
    migrate.upgrade(target, "016")
    with connect(target) as c:
        rewired = fn_defs(c)
        assert all(rewired[s] != before[s] for s in REWIRED)
        assert all("fn_iu_composer_emit" in rewired[s] for s in REWIRED)
    migrate.downgrade(target, "substrate")
    with connect(target) as c:
        assert fn_defs(c) == before


# --------------------------------------------------------------------------- 260: events on the delayed lane


def test_compose_emits_created_plus_one_piece_added_per_piece_on_the_delayed_lane(conn_at):
    conn = conn_at("260")
    ids = pieces(conn, "docs/file-1")
    answer = compose(conn, "docs/file-1", ids)
    cid = uuid.UUID(answer["collection_id"])

    events = composer_events(conn)
    assert [e[0] for e in events] == ["collection_created"] + ["piece_added_to_collection"] * 3
    assert {e[1] for e in events} == {str(cid)}  # subject = the collection id
    assert {e[2] for e in events} == {"delayed"}
    assert len({e[4] for e in events}) == 4  # 4 distinct ids: nothing deduplicated
    assert [uuid.UUID(x) for x in answer["event_ids"]] == [e[4] for e in events]
    assert uuid.UUID(answer["event_id"]) == events[0][4]
    assert events[0][3] == {
        "collection_id": str(cid),
        "collection_key": "docs/file-1",
        "collection_kind": "file",
        "title": "A file",
        "member_count": 3,
    }
    assert [(e[3]["iu_id"], e[3]["piece_order"]) for e in events[1:]] == [
        (str(i), n) for n, i in enumerate(ids)
    ]
    assert all(e[3]["collection_id"] == str(cid) for e in events)

    log = conn.execute(
        "SELECT event_type, collection_id, delivery_lane, actor, attempts FROM public.v_iu_composer_event_log"
        " ORDER BY created_at"
    ).fetchall()
    assert log == [(e[0], str(cid), "delayed", "pytest", 0) for e in events]


def test_reorder_to_zero_and_back_emits_two_piece_reordered_and_restores_the_order(conn_at):
    conn = conn_at("260")
    ids = pieces(conn, "docs/reorder")
    cid = uuid.UUID(compose(conn, "docs/reorder", ids)["collection_id"])
    digest_before = one(conn, "SELECT public.fn_iu_collection_render(%s)->>'digest'", (cid,))
    before = order_of(conn, cid)

    out = one(
        conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 0, 'pytest')", (cid, ids[2])
    )
    assert order_of(conn, cid) == [ids[2], ids[0], ids[1]]
    back = one(
        conn,
        "SELECT public.fn_iu_collection_reorder_piece(%s, %s, %s, 'pytest')",
        (cid, ids[2], out["old_order"]),
    )
    assert order_of(conn, cid) == before
    assert (
        one(conn, "SELECT public.fn_iu_collection_render(%s)->>'digest'", (cid,)) == digest_before
    )

    # A move to the same slot changes nothing and emits nothing.
    same = one(
        conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 1, 'pytest')", (cid, ids[1])
    )
    assert same["status"] == "reordered" and same["event_id"] is None

    reordered = [e for e in composer_events(conn, cid) if e[0] == "piece_reordered"]
    assert [e[4] for e in reordered] == [uuid.UUID(out["event_id"]), uuid.UUID(back["event_id"])]
    assert [e[3] for e in reordered] == [
        {"collection_id": str(cid), "iu_id": str(ids[2]), "old_order": 2, "new_order": 0},
        {"collection_id": str(cid), "iu_id": str(ids[2]), "old_order": 0, "new_order": 2},
    ]


def test_add_and_remove_emit_and_refused_or_invalid_calls_emit_nothing(conn_at):
    conn = conn_at("260")
    ids = pieces(conn, "docs/addrm", 4)
    cid = uuid.UUID(compose(conn, "docs/addrm", ids[:3])["collection_id"])
    n0 = len(composer_events(conn))

    added = one(
        conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest', 1, 'lbl')", (cid, ids[3])
    )
    removed = one(
        conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[0])
    )
    new = composer_events(conn)[n0:]
    assert [(e[0], e[4]) for e in new] == [
        ("piece_added_to_collection", uuid.UUID(added["event_id"])),
        ("piece_removed_from_collection", uuid.UUID(removed["event_id"])),
    ]
    assert new[0][3] == {
        "collection_id": str(cid),
        "iu_id": str(ids[3]),
        "piece_order": 1,
        "label": "lbl",
    }
    assert new[1][3] == {"collection_id": str(cid), "iu_id": str(ids[0]), "old_order": 0}

    n1 = len(composer_events(conn))
    # duplicate / invalid answers emit nothing
    assert (
        one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, ids[3]))[
            "status"
        ]
        == "duplicate"
    )
    assert (
        one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[0]))[
            "status"
        ]
        == "invalid_input"
    )
    assert (
        one(
            conn, "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 9, 'pytest')", (cid, ids[1])
        )["status"]
        == "invalid_input"
    )
    assert (
        one(conn, "SELECT public.fn_iu_compose('docs/addrm', 'file', 'x', %s, 'pytest')", (ids,))[
            "status"
        ]
        == "duplicate"
    )
    # the shut gate refuses everything, and nothing is emitted
    set_config(conn, COMPOSER, "false")
    for sql, params in (
        ("SELECT public.fn_iu_compose('docs/other', 'file', 'x', %s, 'pytest')", (ids,)),
        ("SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, ids[0])),
        ("SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[1])),
        ("SELECT public.fn_iu_collection_reorder_piece(%s, %s, 0, 'pytest')", (cid, ids[2])),
        ("SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (cid,)),
    ):
        answer = one(conn, sql, params)
        assert (answer["status"], answer["reason"], answer["gate"]) == (
            "refused",
            "gate_closed",
            COMPOSER,
        ), sql
    assert len(composer_events(conn)) == n1


def test_checkpoint_records_the_digest_and_emits_collection_rendered(conn_at):
    conn = conn_at("260")
    ids = pieces(conn, "docs/cp")
    cid = uuid.UUID(compose(conn, "docs/cp", ids)["collection_id"])
    render = one(conn, "SELECT public.fn_iu_collection_render(%s)", (cid,))

    cp = one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (cid,))
    assert cp["status"] == "checkpointed"
    assert (cp["collection_id"], cp["digest"], cp["member_count"]) == (
        str(cid),
        render["digest"],
        3,
    )
    stored = conn.execute(
        "SELECT last_render_digest, last_rendered_at IS NOT NULL FROM public.iu_collection WHERE collection_id=%s",
        (cid,),
    ).fetchone()
    assert stored == (render["digest"], True)
    ev = conn.execute(
        "SELECT event_type, event_subject_ref, delivery_lane, payload FROM public.event_outbox WHERE event_id=%s",
        (cp["event_id"],),
    ).fetchone()
    assert ev == (
        "collection_rendered",
        str(cid),
        "delayed",
        {
            "collection_id": str(cid),
            "collection_key": "docs/cp",
            "digest": render["digest"],
            "member_count": 3,
        },
    )

    # A second checkpoint of the same content is a second event (delayed lane: never deduplicated).
    cp2 = one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (cid,))
    assert cp2["digest"] == cp["digest"] and cp2["event_id"] != cp["event_id"]
    assert conn.execute(
        "SELECT collection_key, last_render_digest, member_count, rendered_events FROM public.v_iu_collection_checkpoint"
    ).fetchall() == [("docs/cp", render["digest"], 3, 2)]

    # Fail closed: an invalid collection is refused with its validation, nothing recorded or emitted.
    conn.execute(
        "UPDATE public.information_unit SET lifecycle_status='retired' WHERE iu_id=%s", (ids[1],)
    )
    n = count(conn, "public.event_outbox")
    bad = one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (cid,))
    assert (bad["status"], bad["reason"]) == ("refused", "validation_failed")
    assert (
        bad["validation"]["ok"] is False and bad["validation"]["checks"]["members_active"] is False
    )
    assert count(conn, "public.event_outbox") == n
    unknown = one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (uuid.uuid4(),))
    assert (unknown["status"], unknown["field"]) == ("invalid_input", "collection_id")
    blank = one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, ' ')", (cid,))
    assert (blank["status"], blank["field"]) == ("invalid_input", "actor")


def test_immediate_lane_dedupes_but_the_composer_family_does_not(conn_at):
    """Seed 003 §7: every composer delta shares the collection as subject; the immediate
    lane's partial unique index kept only the first. The delayed lane keeps them all."""
    conn = conn_at("260")
    emit = "SELECT public.fn_iu_emit_event('iu', %s, %s, '{}', 'pytest')"
    first = one(conn, emit, ("structure_op_applied", "subject-x"))
    assert isinstance(first, uuid.UUID)
    assert one(conn, emit, ("structure_op_applied", "subject-x")) is None  # immediate: deduplicated
    assert count(conn, "public.event_outbox", "event_subject_ref='subject-x'") == 1

    ids = pieces(conn, "docs/lane", 4)
    cid = uuid.UUID(compose(conn, "docs/lane", ids[:1])["collection_id"])
    for i in ids[1:]:
        one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, i))
    added = [e for e in composer_events(conn, cid) if e[0] == "piece_added_to_collection"]
    assert (
        len(added) == 4 and len({e[4] for e in added}) == 4 and {e[2] for e in added} == {"delayed"}
    )

    # The defect, reproduced: registered on the immediate lane, the next deltas vanish.
    conn.execute(
        "UPDATE public.event_type_registry SET delivery_lane='immediate' WHERE event_type='piece_removed_from_collection'"
    )
    r1 = one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[3]))
    r2 = one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, ids[2]))
    assert r1["status"] == r2["status"] == "removed"
    assert r1["event_id"] is not None and r2["event_id"] is None
    assert count(conn, "public.event_outbox", "event_type='piece_removed_from_collection'") == 1


def test_seed_001_story_eight_composer_events_and_a_dry_run_worker(conn_at):
    """Seed 001 §1-§3: compose (1 created + 3 piece_added), checkpoint, reorder to 0,
    checkpoint, reorder back = 8 composer events, 8 distinct ids, all delayed; one worker
    run on iu_outbound_default: seen=8, attempts_written=8, skipped=0, dead_lettered=0."""
    conn = conn_at("260")
    ids = pieces(conn, "docs/seed001")
    assert conn.execute("SELECT count(*) FROM public.event_outbox").fetchone() == (0,)  # births emit nothing

    cid = uuid.UUID(compose(conn, "docs/seed001", ids)["collection_id"])
    one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'pytest')", (cid,))
    one(
        conn,
        "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 0, 'runtime_500x_op_proof')",
        (cid, ids[2]),
    )
    one(conn, "SELECT public.fn_iu_collection_checkpoint(%s, 'runtime_500x_op_proof')", (cid,))
    one(
        conn,
        "SELECT public.fn_iu_collection_reorder_piece(%s, %s, 2, 'runtime_500x_op_proof')",
        (cid, ids[2]),
    )
    assert order_of(conn, cid) == ids

    per_type = dict(
        conn.execute(
            "SELECT event_type, count(*) FROM public.event_outbox WHERE event_subject_ref=%s GROUP BY 1",
            (str(cid),),
        ).fetchall()
    )
    assert per_type == {
        "collection_created": 1,
        "piece_added_to_collection": 3,
        "collection_rendered": 2,
        "piece_reordered": 2,
    }
    assert conn.execute(
        "SELECT count(*), count(DISTINCT event_id), array_agg(DISTINCT delivery_lane) FROM public.event_outbox"
        " WHERE event_subject_ref=%s",
        (str(cid),),
    ).fetchone() == (8, 8, ["delayed"])

    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_outbound_default', 200)")
    assert (run["seen"], run["attempts_written"], run["skipped"], run["dead_lettered"]) == (
        8,
        8,
        0,
        0,
    )
    assert run["dry_run"] is True
    assert count(conn, "public.iu_route_attempt", "attempt_status='sent'") == 0
    assert conn.execute(
        "SELECT count(*), min(attempts), max(attempts) FROM public.v_iu_composer_event_log WHERE collection_id=%s",
        (str(cid),),
    ).fetchone() == (8, 1, 1)
    assert conn.execute(
        "SELECT sum(pending), sum(total) FROM public.v_iu_composer_event_backlog"
    ).fetchone() == (0, 8)

    # Per-type composer routes: even with the delivery gate open and every composer route
    # allowlisted, they only dry-run (route_dry_run); nothing is ever sent.
    set_config(conn, DELIVERY, "true")
    set_config(
        conn, "iu_core.delivery_live_routes", ",".join(f"iu_composer_{t}" for t in COMPOSER_TYPES)
    )
    per_route = one(
        conn, "SELECT public.fn_iu_route_worker_run('iu_composer_piece_added_to_collection', 50)"
    )
    assert (per_route["seen"], per_route["attempts_written"], per_route["dead_lettered"]) == (
        3,
        3,
        0,
    )
    assert (per_route["mode"], per_route["reason"]) == ("dry_run", "route_dry_run")
    # Flipped live by hand, a webhook target is still refused: external delivery does not exist.
    conn.execute(
        "UPDATE public.iu_outbound_route SET dry_run=false WHERE route_code='iu_composer_piece_reordered'"
    )
    live = one(conn, "SELECT public.fn_iu_route_worker_run('iu_composer_piece_reordered', 50)")
    assert (live["attempts_written"], live["mode"], live["reason"]) == (
        2,
        "refused",
        "feature_not_supported",
    )
    assert count(conn, "public.iu_route_attempt", "attempt_status='sent'") == 0


def test_260_registers_eight_delayed_types_and_eight_dry_run_routes(conn_at):
    conn = conn_at("260")
    types = conn.execute(
        "SELECT event_type, event_stream, delivery_lane, active FROM public.event_type_registry"
        " WHERE event_domain='iu' AND event_stream='composer' ORDER BY 1"
    ).fetchall()
    assert types == [(t, "composer", "delayed", True) for t in sorted(COMPOSER_TYPES)]
    routes = conn.execute(
        "SELECT route_code, event_domain, event_type, target_kind, target_ref, dry_run, enabled, fail_closed"
        " FROM public.iu_outbound_route WHERE route_code LIKE 'iu_composer_%' ORDER BY 1"
    ).fetchall()
    assert routes == [
        (f"iu_composer_{t}", "iu", t, "webhook", f"composer/{t}", True, True, True)
        for t in sorted(COMPOSER_TYPES)
    ]
    assert count(conn, "public.event_outbox") == 0  # the post-check's probe left nothing


# --------------------------------------------------------------------------- 017: soft-delete / restore


def test_soft_delete_and_restore_round_trip(conn_at):
    conn = conn_at("017")
    (piece,) = pieces(conn, "docs/sd", 1)
    set_config(conn, STRUCTURE_OPS, "true")

    sd = one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'obsolete', 'pytest')", (piece,))
    assert (sd["status"], sd["iu_id"], sd["restorable"]) == ("soft_deleted", str(piece), True)
    assert unit(conn, piece) == ("soft_deleted", True, "pytest", "obsolete")
    again = one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'obsolete', 'pytest')", (piece,))
    assert again["status"] == "already_soft_deleted"

    restored = one(conn, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (piece,))
    assert (restored["status"], restored["iu_id"]) == ("restored", str(piece))
    assert unit(conn, piece) == ("active", False, None, None)
    twice = one(conn, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (piece,))
    assert (twice["status"], twice["reason"], twice["lifecycle_status"]) == (
        "invalid_input",
        "not_soft_deleted",
        "active",
    )

    # A second cycle is not deduplicated (subject = the piece, delayed lane).
    sd2 = one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'again', 'pytest')", (piece,))
    assert sd2["status"] == "soft_deleted"
    events = composer_events(conn, piece)
    assert [e[0] for e in events] == ["piece_soft_deleted", "piece_restored", "piece_soft_deleted"]
    assert [e[4] for e in events] == [
        uuid.UUID(x) for x in (sd["event_id"], restored["event_id"], sd2["event_id"])
    ]
    assert {e[2] for e in events} == {"delayed"}
    assert events[0][3] == {
        "iu_id": str(piece),
        "canonical_address": "docs/sd/0",
        "reason": "obsolete",
    }
    assert events[1][3]["delete_reason"] == "obsolete" and events[1][3]["deleted_by"] == "pytest"
    # In the composer log the piece events carry no collection.
    assert conn.execute(
        "SELECT DISTINCT collection_id, event_subject_ref FROM public.v_iu_composer_event_log"
        " WHERE event_type IN ('piece_soft_deleted', 'piece_restored')"
    ).fetchall() == [(None, str(piece))]


def test_soft_delete_and_restore_refusals(conn_at):
    conn = conn_at("017")
    a, b, c = pieces(conn, "docs/refuse")
    compose(conn, "docs/refuse", [a])
    n_events = count(conn, "public.event_outbox")

    # gate shut: both refuse, naming the gate
    for sql, params in (
        ("SELECT public.fn_iu_piece_soft_delete(%s, 'r', 'pytest')", (b,)),
        ("SELECT public.fn_iu_piece_restore(%s, 'pytest')", (b,)),
    ):
        answer = one(conn, sql, params)
        assert (answer["status"], answer["reason"], answer["gate"]) == (
            "refused",
            "gate_closed",
            STRUCTURE_OPS,
        )
    assert unit(conn, b) == ("active", False, None, None)

    set_config(conn, STRUCTURE_OPS, "true")
    member = one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'r', 'pytest')", (a,))
    assert (member["status"], member["reason"], member["collections"]) == (
        "refused",
        "member_of_collection",
        ["docs/refuse"],
    )
    assert member["next_action"] == "remove_from_collections_first"
    assert unit(conn, a)[0] == "active"

    assert (
        one(conn, "SELECT public.fn_iu_retire(%s, 'done', 'pytest')", (c,))["status"] == "retired"
    )
    retired = one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'r', 'pytest')", (c,))
    assert (retired["status"], retired["reason"]) == ("refused", "piece_retired")
    not_sd = one(conn, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (b,))
    assert (not_sd["status"], not_sd["field"], not_sd["reason"]) == (
        "invalid_input",
        "iu_id",
        "not_soft_deleted",
    )
    retired_restore = one(conn, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (c,))
    assert (retired_restore["reason"], retired_restore["lifecycle_status"]) == (
        "not_soft_deleted",
        "retired",
    )
    assert unit(conn, c)[0] == "retired"

    for sql, params, field in (
        ("SELECT public.fn_iu_piece_soft_delete(%s, 'r', 'pytest')", (uuid.uuid4(),), "iu_id"),
        ("SELECT public.fn_iu_piece_soft_delete(%s, ' ', 'pytest')", (b,), "reason"),
        ("SELECT public.fn_iu_piece_soft_delete(%s, 'r', NULL)", (b,), "actor"),
        ("SELECT public.fn_iu_piece_restore(%s, 'pytest')", (uuid.uuid4(),), "iu_id"),
        ("SELECT public.fn_iu_piece_restore(%s, '')", (b,), "actor"),
    ):
        answer = one(conn, sql, params)
        assert (answer["status"], answer["field"]) == ("invalid_input", field), sql
    # Only fn_iu_retire's own event was written: no refusal emitted anything.
    assert count(conn, "public.event_outbox") == n_events + 1
    assert (
        count(conn, "public.event_outbox", "event_type IN ('piece_soft_deleted', 'piece_restored')")
        == 0
    )


def test_the_three_disposal_verbs_are_distinct(conn_at):
    """Remove from collection (piece stays active) / retire (final) / soft-delete (restorable)."""
    conn = conn_at("017")
    a, b = pieces(conn, "docs/verbs", 2)
    cid = uuid.UUID(compose(conn, "docs/verbs", [a, b])["collection_id"])
    set_config(conn, STRUCTURE_OPS, "true")

    # 1. remove from collection: the membership goes, the piece stays active
    assert (
        one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, a))[
            "status"
        ]
        == "removed"
    )
    assert unit(conn, a) == ("active", False, None, None)
    # 2. retire: global and final — restore cannot bring it back, soft-delete refuses it
    assert (
        one(conn, "SELECT public.fn_iu_retire(%s, 'superseded', 'pytest')", (a,))["status"]
        == "retired"
    )
    assert (
        one(conn, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (a,))["reason"]
        == "not_soft_deleted"
    )
    assert (
        one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'x', 'pytest')", (a,))["reason"]
        == "piece_retired"
    )
    assert unit(conn, a)[0] == "retired"
    # 3. soft-delete: only once out of every collection, then reversible
    assert (
        one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'x', 'pytest')", (b,))["reason"]
        == "member_of_collection"
    )
    one(conn, "SELECT public.fn_iu_collection_remove_piece(%s, %s, 'pytest')", (cid, b))
    assert (
        one(conn, "SELECT public.fn_iu_piece_soft_delete(%s, 'x', 'pytest')", (b,))["status"]
        == "soft_deleted"
    )
    blocked = one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, b))
    assert (blocked["status"], blocked["field"]) == (
        "invalid_input",
        "iu_id",
    )  # a soft-deleted piece cannot rejoin
    assert (
        one(conn, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (b,))["status"] == "restored"
    )
    assert (
        one(conn, "SELECT public.fn_iu_collection_add_piece(%s, %s, 'pytest')", (cid, b))["status"]
        == "added"
    )
    assert order_of(conn, cid) == [b]


def test_new_functions_are_invoker_pinned_and_not_for_public(conn_at):
    conn = conn_at("017")
    sigs = (
        "public.fn_iu_composer_emit(text,uuid,jsonb,text)",
        "public.fn_iu_collection_checkpoint(uuid,text)",
        "public.fn_iu_piece_soft_delete(uuid,text,text)",
        "public.fn_iu_piece_restore(uuid,text)",
        *REWIRED,
    )
    rows = conn.execute(
        """SELECT s, p.prosecdef, p.proconfig,
                  has_function_privilege('public', p.oid, 'EXECUTE')
             FROM unnest(%s::text[]) WITH ORDINALITY AS u (s, n)
             JOIN pg_proc p ON p.oid = s::regprocedure
            ORDER BY n""",
        (list(sigs),),
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (s, False, ["search_path=public, pg_temp"], False) for s in sigs
    ]


def test_inventory_declarations_match_the_live_database(new_db):
    """016 +4 objects, 260 +16, 017 +2 (seed 003: DOT 84 → 104 → 106)."""
    totals = {
        r: sum(len(v) for v in inventory.expected(ROOT, r).values())
        for r in ("substrate", "016", "260", "017")
    }
    assert (
        totals["016"] - totals["substrate"],
        totals["260"] - totals["016"],
        totals["017"] - totals["260"],
    ) == (4, 16, 2)
    for rev in ("016", "260", "017"):
        with connect(new_db(rev)) as c:
            rep = inventory.report(c, ROOT)
        assert rep.revision == rev and rep.drift == [], (rev, rep.drift)


# --------------------------------------------------------------------------- guards


def test_016_rollback_refuses_while_260_is_still_applied(new_db):
    target = new_db("260")
    set_version(target, "016")  # the chain's order is lost: 016's rollback runs next
    msg = refused(migrate.downgrade, target, "substrate")
    assert "016 rollback refused" in msg
    assert "260 is still applied" in msg


def test_016_rollback_refuses_when_a_rewired_function_was_changed_since(new_db):
    target = new_db("016")
    with connect(target) as c:
        definition = one(c, "SELECT pg_get_functiondef(%s::regprocedure)", (REWIRED[3],))
        c.execute(
            definition.replace("-- 016: a real move", "-- hot-fixed by hand; 016: a real move")
        )
    msg = refused(migrate.downgrade, target, "substrate")
    assert "no longer the 016 definition" in msg
    assert "fn_iu_collection_reorder_piece" in msg


def test_260_rollback_refuses_while_composer_events_exist(new_db):
    target = new_db("260")
    with connect(target) as c:
        ids = pieces(c, "docs/guard260", 2)
        compose(c, "docs/guard260", ids)
        set_config(c, COMPOSER, "false")
    msg = refused(migrate.downgrade, target, "016")
    assert "260 rollback refused" in msg
    assert "1 collection_created, 2 piece_added_to_collection" in msg

    # Once the events are deliberately deleted (no worker ran, so no attempt references
    # them), the same rollback proceeds.
    with connect(target) as c:
        c.execute("DELETE FROM public.event_outbox WHERE event_stream='composer'")
    migrate.downgrade(target, "016")
    with connect(target) as c:
        assert (
            count(c, "public.event_type_registry") == 8
            and count(c, "public.iu_outbound_route") == 2
        )


def test_260_rollback_refuses_while_017_is_still_applied(new_db):
    target = new_db("017")
    set_version(target, "260")
    msg = refused(migrate.downgrade, target, "016")
    assert "017 is still applied" in msg


def test_017_rollback_refuses_while_a_piece_is_soft_deleted(new_db):
    target = new_db("017")
    with connect(target) as c:
        (piece,) = pieces(c, "docs/guard017", 1)
        set_config(c, STRUCTURE_OPS, "true")
        assert (
            one(c, "SELECT public.fn_iu_piece_soft_delete(%s, 'r', 'pytest')", (piece,))["status"]
            == "soft_deleted"
        )
    msg = refused(migrate.downgrade, target, "260")
    assert "017 rollback refused: 1 piece(s) soft-deleted (docs/guard017/0)" in msg

    with connect(target) as c:
        assert (
            one(c, "SELECT public.fn_iu_piece_restore(%s, 'pytest')", (piece,))["status"]
            == "restored"
        )
    migrate.downgrade(target, "260")
    with connect(target) as c:
        assert one(c, "SELECT to_regproc('public.fn_iu_piece_soft_delete')") is None


@pytest.mark.parametrize(
    ("at", "pretend", "apply", "message"),
    [
        ("016", "substrate", "016", "016 preflight: 016 object(s) already present"),
        ("260", "016", "260", "260 preflight: 16 composer event type(s)/route(s) already present"),
        (
            "017",
            "260",
            "017",
            "017 preflight: function public.fn_iu_piece_restore, function public.fn_iu_piece_soft_delete already present",
        ),
    ],
)
def test_preflights_refuse_to_apply_over_themselves(new_db, at, pretend, apply, message):
    target = new_db(at)
    set_version(target, pretend)
    msg = refused(migrate.upgrade, target, apply)
    assert message in msg


def test_016_preflight_refuses_to_overwrite_a_changed_composer_function(new_db):
    target = new_db("substrate")
    with connect(target) as c:
        definition = one(c, "SELECT pg_get_functiondef(%s::regprocedure)", (REWIRED[0],))
        c.execute(
            definition.replace("-- Hold the pieces", "-- local change\n    -- Hold the pieces")
        )
    msg = refused(migrate.upgrade, target, "016")
    assert "differs from the substrate definition" in msg
    assert "fn_iu_compose" in msg


def test_260_and_017_preflights_refuse_without_their_parent(new_db):
    target = new_db("016")
    with connect(target) as c:
        c.execute("DROP VIEW public.v_iu_composer_event_log")
        c.execute("DROP FUNCTION public.fn_iu_collection_checkpoint(uuid, text)")
    msg = refused(migrate.upgrade, target, "260")
    assert "260 preflight: migration 016 substrate missing" in msg
    assert "apply 016 first" in msg

    target = new_db("260")
    with connect(target) as c:
        c.execute(
            "DELETE FROM public.iu_outbound_route WHERE route_code='iu_composer_piece_restored'"
        )
        c.execute("DELETE FROM public.event_type_registry WHERE event_type='piece_restored'")
    msg = refused(migrate.upgrade, target, "017")
    assert "017 preflight: migration 260 composer event family missing (iu.piece_restored" in msg


def test_260_postcheck_leaves_no_row_even_with_emission_gated_off(new_db):
    """The lane self-check falls back to direct inserts when emission is off, and is undone."""
    target = new_db("016")
    with connect(target) as c:
        set_config(c, "iu_core.routes_master_enabled", "false")
    result = migrate.upgrade(target, "260")
    assert [r["revision"] for r in result.revisions] == ["260"]
    with connect(target) as c:
        assert count(c, "public.event_outbox") == 0
        assert count(c, "public.event_type_registry", "event_stream='composer'") == 8


def test_rehearsal_of_016_260_017_leaves_nothing(new_db):
    target = new_db("substrate")
    before = snap(target)
    result = migrate.upgrade(target, "017", options=RunOptions(rehearse=True))
    assert [r["revision"] for r in result.revisions] == ["016", "260", "017"]
    assert result.fingerprint_before == result.fingerprint_after
    assert diff(before, snap(target)) == []
