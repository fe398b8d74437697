"""The two substrate objects seed 002 A3 names that the reconstruction lacked
(docs/seeds.md, "Corrections to the substrate"), against a real server:

- fn_iu_piece_emit_event: the piece path of the emit gating, master routes
  gate → runtime piece_event_runtime.emit_enabled → registry lookup
  (unknown/inactive → NULL) → the outbox trigger;
- the iu event type structure_child_added.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from .conftest import one, set_config

EMIT = "SELECT public.fn_iu_piece_emit_event(%s, %s, %s, 'pytest')"


@pytest.fixture
def conn(conn_at):
    c = conn_at("substrate")
    # The substrate registers no piece-domain type (the seeds name none): each
    # test registers the ones it needs, for real.
    c.execute(
        """INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane)
           VALUES ('piece', 'piece_touched', 'piece', 'immediate'),
                  ('piece', 'piece_noted', 'piece_notes', 'delayed')"""
    )
    return c


def outbox(conn):
    return conn.execute(
        "SELECT event_domain, event_type, event_stream, delivery_lane, event_subject_ref, payload"
        " FROM public.event_outbox ORDER BY created_at"
    ).fetchall()


def test_each_gate_layer_shut_answers_null_and_writes_no_row(conn):
    piece = uuid.uuid4()
    set_config(conn, "iu_core.routes_master_enabled", "false")
    assert one(conn, EMIT, ("piece_touched", piece, Jsonb({}))) is None
    set_config(conn, "iu_core.routes_master_enabled", "true")
    set_config(conn, "piece_event_runtime.emit_enabled", "false")
    assert one(conn, EMIT, ("piece_touched", piece, Jsonb({}))) is None
    # fail closed: anything but exactly 'true' is shut
    set_config(conn, "piece_event_runtime.emit_enabled", "TRUE")
    assert one(conn, EMIT, ("piece_touched", piece, Jsonb({}))) is None
    conn.execute("DELETE FROM public.dot_config WHERE key = 'piece_event_runtime.emit_enabled'")
    assert one(conn, EMIT, ("piece_touched", piece, Jsonb({}))) is None
    assert outbox(conn) == []


def test_unknown_and_inactive_types_answer_null(conn):
    piece = uuid.uuid4()
    assert one(conn, EMIT, ("no_such_piece_type", piece, Jsonb({}))) is None
    # an iu-domain type is not a piece type: the piece path never emits it
    assert one(conn, EMIT, ("iu_created", piece, Jsonb({}))) is None
    conn.execute("UPDATE public.event_type_registry SET active = false WHERE event_type = 'piece_touched'")
    assert one(conn, EMIT, ("piece_touched", piece, Jsonb({}))) is None
    assert outbox(conn) == []


def test_a_valid_emit_lands_on_the_registry_stream_and_lane_with_the_piece_as_subject(conn):
    piece = uuid.uuid4()
    first = one(conn, EMIT, ("piece_touched", piece, Jsonb({"n": 1})))
    noted = [one(conn, EMIT, ("piece_noted", piece, Jsonb({"n": i}))) for i in (2, 3)]
    assert isinstance(first, uuid.UUID) and all(isinstance(e, uuid.UUID) for e in noted)
    assert outbox(conn) == [
        ("piece", "piece_touched", "piece", "immediate", str(piece), {"n": 1, "iu_id": str(piece)}),
        ("piece", "piece_noted", "piece_notes", "delayed", str(piece), {"n": 2, "iu_id": str(piece)}),
        ("piece", "piece_noted", "piece_notes", "delayed", str(piece), {"n": 3, "iu_id": str(piece)}),
    ]
    # the immediate lane deduplicates a repeat for the same piece; delayed never does
    assert one(conn, EMIT, ("piece_touched", piece, Jsonb({"n": 4}))) is None
    assert len(outbox(conn)) == 3


def test_the_outbox_trigger_is_the_last_layer_for_piece_events(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="delivery_lane='immediate'"):
        conn.execute(
            """INSERT INTO public.event_outbox (event_domain, event_type, event_stream, delivery_lane,
                                                event_subject_ref, actor)
               VALUES ('piece', 'piece_touched', 'piece', 'delayed', 'x', 'pytest')"""
        )
    assert outbox(conn) == []


def test_required_arguments(conn):
    for args in (("piece_touched", None, Jsonb({})), (None, uuid.uuid4(), Jsonb({}))):
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="required"):
            conn.execute(EMIT, args)
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("SELECT public.fn_iu_piece_emit_event('piece_touched', %s, '{}', NULL)", (uuid.uuid4(),))


def test_piece_emit_is_not_executable_by_public(conn):
    sig = "public.fn_iu_piece_emit_event(text,uuid,jsonb,text)"
    assert one(conn, "SELECT has_function_privilege('public', %s, 'EXECUTE')", (sig,)) is False
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        assert one(conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, sig)) is False
    finally:
        conn.execute(f'DROP ROLE "{role}"')


def test_structure_child_added_is_an_iu_structure_type_on_the_immediate_lane(conn):
    row = conn.execute(
        """SELECT event_stream, delivery_lane, active FROM public.event_type_registry
            WHERE event_domain = 'iu' AND event_type = 'structure_child_added'"""
    ).fetchone()
    assert row == ("structure", "immediate", True)
    emit = "SELECT public.fn_iu_emit_event('iu', 'structure_child_added', %s, %s, 'pytest')"
    parent = str(uuid.uuid4())
    first = one(conn, emit, (parent, Jsonb({"child": "c1"})))
    assert isinstance(first, uuid.UUID)
    assert one(conn, emit, (parent, Jsonb({"child": "c2"}))) is None  # immediate lane: deduplicated
    assert outbox(conn) == [("iu", "structure_child_added", "structure", "immediate", parent, {"child": "c1"})]
    # the iu-domain structure consumer route picks it up (dry run)
    run = one(conn, "SELECT public.fn_iu_route_worker_run('iu_structure_consumer', 10)")
    assert (run["seen"], run["attempts_written"], run["dry_run"]) == (1, 1, True)
