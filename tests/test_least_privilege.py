"""Revision least_privilege against a real server: the one gate classification, the TTL
enforced by every check, the dispatcher (gates before the call, bound arguments, undo,
one ledger row), the hardened logger, the safe-path key CHECK, session_user in the ledger."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from iu_core.commands import db as db_verbs
from iu_core.domain.registry import AUTO_INSTANTIATE, COMMANDS, COMPOSER, OPERATOR_RUNTIME, Command
from iu_core.domain.runtime import DotCommandPlan, OperatorRuntime, gates_for
from iu_core.errors import RevisionRefused
from iu_core.framework import migrate
from iu_core.release.preflight import LEGACY_GOVERNABLE, LEGACY_LATER_GOVERNABLE, LEGACY_NEVER_FLIP

from .conftest import connect, head, open_gates, run_preflight, snap

LP = "least_privilege"


def execute(conn: psycopg.Connection[Any], command: str, mode: str, args: Any, actor: str = "pytest") -> dict:
    row = conn.execute("SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s)",
                       (command, mode, json.dumps(args), actor)).fetchone()
    return row[0]


def ledger_count(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone()[0]


# ---------------------------------------------------------------- one classification
def test_every_gate_any_function_reads_is_classified(conn) -> None:
    """Scan every function body at head for a gate key (a whole literal, dotted, ending in
    enabled/routes): each is in iu_gate_class; and every dot_config key is classified."""
    reads = {r[0] for r in conn.execute(
        r"""SELECT DISTINCT m[1] FROM pg_proc p, regexp_matches(p.prosrc, '''([a-z_]+(?:[.][a-z_]+)+)''', 'g') m
             WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)
               AND m[1] ~ '(enabled|routes)$'""")}
    classified = dict(conn.execute("SELECT gate_key, class FROM public.iu_gate_class").fetchall())
    # every key a function names as a gate (the 9 protocol gates, 033's, the runtime switches)
    assert reads >= {"iu_core.composer_enabled", "iu_core.auto_instantiate_enabled", "iu_core.routes_master_enabled",
                     "piece_event_runtime.emit_enabled", "iu_core.route_worker_enabled", "iu_core.delivery_live_routes"}
    assert reads - set(classified) == set()
    config = {r[0] for r in conn.execute("SELECT key FROM public.dot_config")}
    assert config == set(classified)
    assert classified[AUTO_INSTANTIATE] == "governable"
    assert conn.execute("SELECT count(*) FROM public.iu_gate_class WHERE btrim(reason) = ''").fetchone() == (0,)


def test_the_legacy_preflight_lists_equal_the_classification(conn) -> None:
    """Before least_privilege, preflight falls back to the chain's lists; they are not a second truth."""
    rows = conn.execute("SELECT class, array_agg(gate_key ORDER BY gate_key) FROM public.iu_gate_class"
                        " GROUP BY class").fetchall()
    by = {k: set(v) for k, v in rows}
    assert by["governable"] == set(LEGACY_GOVERNABLE) | set(LEGACY_LATER_GOVERNABLE)
    assert by["never_flip"] == set(LEGACY_NEVER_FLIP)


@pytest.mark.parametrize("revision", ["034", "gate_protocol"])
def test_preflight_below_least_privilege_sees_auto_instantiate_open(new_db, revision: str) -> None:
    """Issue 9 point 5: set to true by hand, it was ignored (all_safe, PASS); now it fails preflight."""
    target = new_db(revision)
    with connect(target) as c:
        c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = %s", (AUTO_INSTANTIATE,))
    rep = db_verbs.preflight(target)
    gates = next(ch for ch in rep.checks if ch.name.startswith("gates closed"))
    assert not gates.ok and f"open: {AUTO_INSTANTIATE}" in gates.evidence


def test_an_unclassified_key_reads_shut_even_when_true(conn) -> None:
    conn.execute("INSERT INTO public.dot_config (key, value) VALUES ('iu_core.surprise_enabled', 'true')")
    assert conn.execute("SELECT public.fn_iu_gate_state('iu_core.surprise_enabled'),"
                        " public.fn_iu_gate_is_open('iu_core.surprise_enabled')").fetchone() == ("unclassified", False)
    # an outside-the-protocol key keeps its plain reading
    assert conn.execute("SELECT public.fn_iu_gate_is_open('iu_core.routes_master_enabled')").fetchone() == (True,)


def test_auto_instantiate_goes_through_the_protocol_now(conn) -> None:
    """Issue 9 point 5: the gate can be opened by the protocol, the watchdog closes it, the verify sees it."""
    conn.execute("UPDATE public.dot_config SET value = 'true' WHERE key = %s", (AUTO_INSTANTIATE,))
    v = conn.execute("SELECT public.fn_iu_gate_verify_closed(NULL)").fetchone()[0]
    assert v["stale_open"] == [AUTO_INSTANTIATE] and v["all_governed_closed"] is True
    w = conn.execute("SELECT public.fn_iu_gate_watchdog('pytest')").fetchone()[0]
    assert [c["gate_key"] for c in w["closed"]] == [AUTO_INSTANTIATE]
    opened = conn.execute("SELECT public.fn_iu_gate_open(%s, gen_random_uuid(), 'r', 'pytest', 60)",
                          (AUTO_INSTANTIATE,)).fetchone()[0]
    assert opened["status"] == "opened"
    v = conn.execute("SELECT public.fn_iu_gate_verify_closed(%s)", (AUTO_INSTANTIATE,)).fetchone()[0]
    assert v["open"] == [AUTO_INSTANTIATE] and v["all_safe"] is False


# ---------------------------------------------------------------- an expired open is shut everywhere
def test_an_expired_open_is_shut_for_every_check_without_the_watchdog(new_db, run_cli) -> None:
    target = new_db(head())
    for gate in (OPERATOR_RUNTIME, COMPOSER):
        res = run_cli(target, "gate", "open", gate, "--approval-id", str(uuid.uuid4()), "--ttl", "600",
                      "--reason", "ttl test")
        assert res.exit_code == 0, res.output
    ok = run_cli(target, "dot", "apply", "dot_iu_clone_piece", "canonical_address=ttl/a", "unit_kind=piece",
                 "title=A")
    assert ok.exit_code == 0, ok.output
    with connect(target) as c:  # both opens expire (committed): nobody runs the watchdog
        c.execute("UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 second'")
    res = run_cli(target, "--json", "dot", "apply", "dot_iu_clone_piece", "canonical_address=ttl/b",
                  "unit_kind=piece", "title=B")
    assert res.exit_code == 3, res.output
    assert json.loads(res.stdout)["closed_gates"] == [OPERATOR_RUNTIME, COMPOSER]
    with connect(target) as c:
        # the function's own check too, called straight by the owner
        own = c.execute("SELECT public.fn_iu_create('ttl/c', 'piece', 'C', 'owner')").fetchone()[0]
        assert (own["status"], own["gate"]) == ("refused", COMPOSER)
        assert c.execute("SELECT count(*) FROM public.information_unit").fetchone() == (1,)
        assert c.execute("SELECT value FROM public.dot_config WHERE key = %s", (COMPOSER,)).fetchone() == ("true",)
    text = run_cli(target, "gate", "status")
    assert text.exit_code == 0 and "expired" in text.stdout and "iucore gate watchdog" in text.stdout
    status = run_cli(target, "--json", "gate", "status")
    assert status.exit_code == 0, status.output  # all shut
    answer = json.loads(status.stdout)["answer"]
    assert answer["all_safe"] is True and answer["open"] == []
    assert answer["stale_open"] == [COMPOSER, OPERATOR_RUNTIME] and "watchdog" in answer["guidance"]
    _, pre, _ = run_preflight(run_cli, target)
    gates = next(c for c in pre["checks"] if c["check"].startswith("gates closed"))
    assert gates["status"] == "PASS" and "iucore gate watchdog" in gates["evidence"]
    with connect(target) as c:
        assert c.execute("SELECT count(*) FROM public.iu_gate_transition WHERE action = 'watchdog_close'").fetchone() == (0,)
    assert run_cli(target, "gate", "watchdog").exit_code == 0
    with connect(target) as c:
        assert c.execute("SELECT count(*) FROM public.dot_config WHERE value = 'true' AND key IN"
                         " (SELECT gate_key FROM public.iu_gate_class WHERE class = 'governable')").fetchone() == (0,)


def test_a_hand_set_true_does_not_open_a_governable_gate(conn) -> None:
    conn.execute("UPDATE public.dot_config SET value = 'true' WHERE key IN (%s, %s)", (OPERATOR_RUNTIME, COMPOSER))
    ans = execute(conn, "dot_iu_clone_piece", "apply", ["h/a", "piece", "A", "x"])
    assert ans["status"] == "refused" and ans["gate_snapshot"] == {OPERATOR_RUNTIME: "unprotocolled",
                                                                   COMPOSER: "unprotocolled"}
    # re-opened by hand after a protocol close: still shut
    open_gates(conn, COMPOSER)
    conn.execute("SELECT public.fn_iu_gate_close(%s, 'r', 'pytest')", (COMPOSER,))
    conn.execute("UPDATE public.dot_config SET value = 'true' WHERE key = %s", (COMPOSER,))
    assert conn.execute("SELECT public.fn_iu_gate_state(%s)", (COMPOSER,)).fetchone() == ("unprotocolled",)


# ---------------------------------------------------------------- gates: the table equals the registry
def _arg_names(conn: psycopg.Connection[Any], fn: str) -> list[str]:
    row = conn.execute("SELECT proargnames FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
                       " AND proname = %s", (fn,)).fetchone()
    return list(row[0] or [])


def test_the_command_gate_table_equals_the_registry_row_for_row(conn) -> None:
    got = sorted(conn.execute("SELECT command_name, gate_key, ord, when_arg, when_value"
                              " FROM public.dot_iu_command_gate").fetchall())
    want = []
    for c in COMMANDS:
        for ord_, g in enumerate(gates_for(DotCommandPlan(c, {}, [])), start=1):
            want.append((c.name, g, ord_, None, None))
        names = _arg_names(conn, c.targets[0])
        for param, value, extra in c.gates_when:
            pos = [p.name for p in c.params].index(param)
            for g in extra:
                want.append((c.name, g, len(gates_for(DotCommandPlan(c, {}, [])))  + 1, names[pos],
                             json.dumps(value) if isinstance(value, bool) else str(value)))
    assert got == sorted(want)
    logs = {r[0] for r in conn.execute("SELECT command_name FROM public.dot_iu_command_catalog WHERE logs_itself")}
    assert logs == {c.name for c in COMMANDS if c.logs_itself}


def _sample(p_type: str) -> Any:
    return {"text": "x", "uuid": str(uuid.uuid4()), "integer": 1, "boolean": True, "jsonb": {},
            "uuid[]": [str(uuid.uuid4())], "text[]": ["a"]}[p_type]


def _variants(c: Command) -> list[dict[str, Any]]:
    base = {p.name: _sample(p.type) for p in c.params if p.fixed is None}
    out = [base]
    for param, value, _ in c.gates_when:
        out.append({**base, param: value})
        out.append({**base, param: "dry_run" if isinstance(value, str) else (not value)})
    return out


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.name)
def test_the_dispatcher_asks_for_exactly_the_gates_the_registry_names(conn, cmd: Command) -> None:
    """End to end, value by value: plan through the dispatcher with every gate shut; the gates it
    reports are Python's gates_for for the same parameters, in the same order."""
    rt = OperatorRuntime(conn, "pytest")
    for params in _variants(cmd):
        ans = rt.plan(cmd.name, params)
        assert ans.status == "planned", ans
        assert ans.closed_gates == gates_for(DotCommandPlan(cmd, params, [])), params


# ---------------------------------------------------------------- the dispatcher
TEST_FUNCTIONS = [
    "CREATE TABLE public.iu_test_effect (n int)",
    """CREATE FUNCTION public.fn_iu_test_effect(p_mode text) RETURNS jsonb LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.iu_test_effect VALUES (1);
        IF p_mode = 'refuse' THEN RETURN '{"status": "refused", "guidance": "no"}'; END IF;
        IF p_mode = 'not_ok' THEN RETURN '{"ok": false, "status": "invalid"}'; END IF;
        IF p_mode = 'raise' THEN RAISE EXCEPTION 'refusing by raising'; END IF;
        IF p_mode = 'privilege' THEN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'no privilege'; END IF;
        IF p_mode = 'crash' THEN PERFORM 1 / 0; END IF;
        IF p_mode = 'own_undo' THEN RAISE EXCEPTION USING ERRCODE = 'IUDX1', MESSAGE = 'looks like the undo'; END IF;
        RETURN jsonb_build_object('status', 'done', 'mode', p_mode);
    END $$""",
    "INSERT INTO public.dot_iu_command_catalog (command_name, category, mutating, reversible, target_functions)"
    " VALUES ('dot_iu_test_effect', 'health', true, true, ARRAY['fn_iu_test_effect'])",
    "INSERT INTO public.dot_iu_command_gate (command_name, gate_key, ord)"
    " VALUES ('dot_iu_test_effect', 'iu_core.composer_enabled', 1)",
    "CREATE FUNCTION public.fn_iu_test_types(p_j jsonb, p_a text[], p_i integer DEFAULT 7) RETURNS jsonb"
    " LANGUAGE sql AS $$ SELECT jsonb_build_object('status', 'seen', 'j_is_null', p_j IS NULL, 'j', p_j,"
    " 'a', to_jsonb(p_a), 'a_is_null', p_a IS NULL, 'i', p_i) $$",
    "INSERT INTO public.dot_iu_command_catalog (command_name, category, mutating, reversible, target_functions)"
    " VALUES ('dot_iu_test_types', 'read', false, true, ARRAY['fn_iu_test_types'])",
]


@pytest.fixture
def effect(conn) -> psycopg.Connection[Any]:
    for stmt in TEST_FUNCTIONS:
        conn.execute(stmt)
    return conn


def effects(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) FROM public.iu_test_effect").fetchone()[0]


def test_the_gate_is_checked_before_anything_is_called(effect) -> None:
    before = ledger_count(effect)
    ans = execute(effect, "dot_iu_test_effect", "apply", ["ok"])
    assert (ans["status"], ans["closed_gates"], ans["answer"]) == ("refused", [COMPOSER], None)
    assert effects(effect) == 0 and ledger_count(effect) == before + 1


@pytest.mark.parametrize(("mode", "status", "why"), [
    ("ok", "applied", None),
    ("refuse", "refused", "function_answer"),
    ("not_ok", "failed", "function_answer"),
    ("raise", "refused", "sql_error"),      # P0001: the function said no
    ("privilege", "refused", "sql_error"),  # 42501
    ("crash", "failed", "sql_error"),       # 22012: something broke
    ("own_undo", "failed", "sql_error"),    # the function cannot pass for the dispatcher's own undo
])
def test_a_refused_or_failed_call_is_undone_and_logged_once(effect, mode: str, status: str, why: str | None) -> None:
    open_gates(effect, COMPOSER)
    before = ledger_count(effect)
    ans = execute(effect, "dot_iu_test_effect", "apply", [mode])
    assert ans["status"] == status, ans
    assert effects(effect) == (1 if status == "applied" else 0)
    assert ledger_count(effect) == before + 1
    ev = effect.execute("SELECT evidence, run_status FROM public.dot_iu_command_run WHERE run_id = %s",
                        (ans["run_id"],)).fetchone()
    assert ev[1] == status and ev[0].get("reason") == why


@pytest.mark.parametrize(("args", "seen"), [
    ([None, None], {"j_is_null": True, "a_is_null": True, "i": 7}),               # JSON null is SQL NULL
    ([{"k": [1, None]}, ["x", None, "y"], 3], {"j": {"k": [1, None]}, "a": ["x", None, "y"], "i": 3}),
    (["just a string", [], None], {"j": "just a string", "a": [], "i": None}),    # a passed NULL is not the default
    ([[], ["1"]], {"j": [], "a": ["1"], "i": 7}),                                 # omitted: the default
])
def test_arguments_arrive_typed_by_position(effect, args: list, seen: dict) -> None:
    ans = execute(effect, "dot_iu_test_types", "verify", args)
    assert ans["status"] == "verified", ans
    assert {k: ans["answer"][k] for k in seen} == seen


def test_the_dispatcher_refuses_a_target_it_cannot_resolve_exactly(effect) -> None:
    open_gates(effect, COMPOSER)
    effect.execute("CREATE FUNCTION public.fn_iu_test_effect(p_mode text, p_extra int) RETURNS jsonb"
                   " LANGUAGE sql AS $$ SELECT '{}'::jsonb $$")
    ans = execute(effect, "dot_iu_test_effect", "apply", ["ok"])
    assert (ans["status"], ans["reason"]) == ("failed", "target_unresolvable")
    assert effects(effect) == 0


@pytest.mark.parametrize(("args", "status", "reason"), [
    ({"a": 1}, "refused", "invalid_args"),                         # not an array
    (["too", "many", "x", "y", "z", "w"], "refused", "invalid_args"),
    (["x/y"], "refused", "invalid_args"),                          # too few (no default)
    ([{"o": 1}, "piece", "T", "a"], "refused", "invalid_args"),    # an object for text
    ([["x"], "piece", "T", "a"], "refused", "invalid_args"),       # an array for text
])
def test_arguments_of_the_wrong_shape_are_refused_before_the_call(conn, args: Any, status: str,
                                                                  reason: str) -> None:
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    ans = execute(conn, "dot_iu_clone_piece", "apply", args)
    assert (ans["status"], ans["reason"]) == (status, reason)
    assert conn.execute("SELECT count(*) FROM public.information_unit").fetchone() == (0,)


def test_every_argument_type_arrives_as_itself(conn) -> None:
    """uuid[], text[] (with a hole), jsonb, boolean, integer, text: bound, cast, stored."""
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER, "iu_core.structure_ops_enabled")
    rt = OperatorRuntime(conn, "pytest")
    ids = [rt.apply("dot_iu_clone_piece", {"canonical_address": f"t/{i}", "unit_kind": "piece",
                                           "title": f"T{i}"}).answer["iu_id"] for i in range(4)]
    comp = rt.apply("dot_iu_create_file_from_pieces", {
        "collection_key": "types.k", "collection_kind": "file", "title": "K", "piece_ids": ids[:2],
        "labels": ["l0", ""]})
    assert comp.status == "applied", comp
    cid = comp.answer["collection_id"]
    add = rt.apply("dot_iu_add_piece", {"collection_id": cid, "iu_id": ids[2], "label": "mid"})  # position omitted
    assert add.status == "applied" and add.answer["piece_order"] == 2
    add0 = rt.apply("dot_iu_add_piece", {"collection_id": cid, "iu_id": ids[3], "position": 0})
    assert add0.answer["piece_order"] == 0
    assert conn.execute("SELECT array_agg(label ORDER BY piece_order) FROM public.iu_collection_member"
                        " WHERE collection_id = %s", (cid,)).fetchone()[0] == [None, "l0", "", "mid"]
    wf = rt.apply("dot_iu_workflow_from_steps", {"collection_key": "types.wf", "title": "W",
                                                 "steps": [{"address": "wf/a", "title": "Ä \"1\""}]})
    assert wf.status == "applied", wf
    assert conn.execute("SELECT title FROM public.information_unit WHERE canonical_address = 'wf/a'"
                        ).fetchone() == ('Ä "1"',)
    dry = rt.apply("dot_iu_split_piece", {"iu_id": ids[0], "parts": [{"address": "s/a", "title": "A"},
                                                                     {"address": "s/b", "title": "B"}],
                                          "review_decision_id": str(uuid.uuid4()), "dry_run": True})
    assert dry.answer["status"] == "review_decision_not_found"
    worker = rt.apply("dot_iu_route_worker_run", {"route_code": "iu_outbound_default", "limit": 3})
    assert worker.status == "applied" and worker.answer["seen"] <= 3


def test_a_value_that_does_not_cast_fails_and_changes_nothing(conn) -> None:
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    before = ledger_count(conn)
    ans = execute(conn, "dot_iu_add_piece", "apply", ["not-a-uuid", str(uuid.uuid4()), "a"])
    assert (ans["status"], ans["answer"]["sqlstate"]) == ("failed", "22P02")
    assert ledger_count(conn) == before + 1


def test_a_conditional_gate_compares_the_typed_value_not_its_spelling(conn) -> None:
    """dry_run passed as the string "false" casts to boolean false: the live gate is required."""
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    for spelling in (False, "false", "f", "0", "no", "off"):
        ans = execute(conn, "dot_iu_auto_instantiate_rollback_by_actor", "apply", ["someone", spelling])
        assert ans["closed_gates"] == [AUTO_INSTANTIATE], spelling
    for spelling in (True, "true", None):
        ans = execute(conn, "dot_iu_auto_instantiate_rollback_by_actor", "apply", ["someone", spelling])
        assert ans["closed_gates"] == [] and ans["status"] == "applied", spelling
    # an argument that does not cast cannot decide the rule: the gate is required (fail closed)
    ans = execute(conn, "dot_iu_auto_instantiate_rollback_by_actor", "apply", ["someone", "maybe"])
    assert ans["closed_gates"] == [AUTO_INSTANTIATE]
    for mode in ("live", "LIVE "):
        ans = execute(conn, "dot_iu_auto_instantiate_from_event", "apply",
                      [str(uuid.uuid4()), "e", str(uuid.uuid4()), "s", mode, "a", "n"])
        assert ans["closed_gates"] == ([AUTO_INSTANTIATE] if mode == "live" else []), mode


# ---------------------------------------------------------------- the ledger
EVIDENCE_OK = [
    {}, {"reason": "gate_closed"}, {"answer_status": None}, {"answer_status": "created"}, {"sqlstate": "23514"},
    {"closed_gates": [COMPOSER, OPERATOR_RUNTIME]}, {"statements": 1}, {"closed_count": 0},
    {"transition_id": "7f3e0c9a-1b2c-4d5e-8f90-123456789abc"}, {"action": "watchdog_close"}, {"prev_value": "other", "new_value": None},
    {"expires_at": "2030-01-01T00:00:00.123456+05:30"}, {"expired_at": None},
]
EVIDENCE_REFUSED = [
    {"title": "x"}, {"reason": "Has Upper"}, {"reason": "with space"}, {"reason": "x" * 65}, {"reason": 1},
    {"answer_status": ["created"]}, {"sqlstate": "2351"}, {"sqlstate": "ab123"}, {"closed_gates": ["not.a_gate"]},
    {"closed_gates": "iu_core.composer_enabled"}, {"closed_gates": [{"k": 1}]}, {"statements": -1},
    {"statements": 1.5}, {"statements": "1"}, {"closed_count": 10**10}, {"transition_id": "nope"},
    {"action": "delete"}, {"prev_value": "TRUE"}, {"new_value": "secret"}, {"expires_at": "tomorrow"},
    {"expires_at": "2030-01-01 00:00:00"}, {"REASON": "gate_closed"},
]


@pytest.mark.parametrize("evidence", EVIDENCE_OK, ids=lambda e: json.dumps(e)[:40])
def test_the_logger_keeps_whitelisted_evidence(conn, evidence: dict) -> None:
    run = conn.execute("SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified',"
                       " false, md5('x'), '{}', %s::jsonb, 'pytest')", (json.dumps(evidence),)).fetchone()[0]
    row = conn.execute("SELECT evidence, session_user_name = session_user FROM public.dot_iu_command_run"
                       " WHERE run_id = %s", (run,)).fetchone()
    assert row == (evidence, True)


@pytest.mark.parametrize("evidence", EVIDENCE_REFUSED, ids=lambda e: json.dumps(e)[:40])
def test_the_logger_refuses_evidence_that_could_carry_a_raw_value(conn, evidence: dict) -> None:
    before = ledger_count(conn)
    with pytest.raises(psycopg.errors.CheckViolation) as exc:
        conn.execute("SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified',"
                     " false, md5('x'), '{}', %s::jsonb, 'pytest')", (json.dumps(evidence),))
    assert "evidence key" in str(exc.value)
    for value in (v for v in evidence.values() if isinstance(v, str) and len(v) > 3):
        assert value not in str(exc.value)  # the refusal names the key, never the value
    assert ledger_count(conn) == before


def test_ledger_rows_from_before_the_upgrade_say_so_and_a_rollback_keeps_who_ran(new_db) -> None:
    target = new_db("gate_protocol")
    with connect(target) as c:
        c.execute("SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,"
                  " NULL, '{}', '{\"free\": \"text\"}', 'old')")  # what the old logger let through
    migrate.upgrade(target, LP)
    with connect(target) as c:
        assert c.execute("SELECT actor, session_user_name FROM public.dot_iu_command_run").fetchall() == [
            ("old", "(unrecorded: before least_privilege)")]
        c.execute("SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,"
                  " md5('y'), '{}', '{}', 'new')")
        who = c.execute("SELECT session_user").fetchone()[0]
        assert c.execute("SELECT session_user_name FROM public.dot_iu_command_run WHERE actor = 'new'"
                         ).fetchone() == (who,)
    migrate.downgrade(target, "gate_protocol")
    with connect(target) as c:
        rows = dict(c.execute("SELECT actor, evidence FROM public.dot_iu_command_run").fetchall())
    assert rows == {"old": {"free": "text"}, "new": {"session_user": who}}


# ---------------------------------------------------------------- keys are safe paths
@pytest.mark.parametrize("key", ["a/../../escaped", "../up", "a/..", "./x", "a/./b", "a/.", ".", ".."])
def test_compose_refuses_a_key_that_leaves_its_root(conn, key: str) -> None:
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    rt = OperatorRuntime(conn, "pytest")
    iu = rt.apply("dot_iu_clone_piece", {"canonical_address": "k/p", "unit_kind": "piece", "title": "P"})
    ans = rt.apply("dot_iu_create_file_from_pieces", {"collection_key": key, "collection_kind": "file",
                                                      "title": "T", "piece_ids": [iu.answer["iu_id"]]})
    assert ans.status == "refused", ans
    wf = rt.apply("dot_iu_workflow_from_steps", {"collection_key": key, "title": "T",
                                                 "steps": [{"address": "k/wf", "title": "S"}]})
    assert wf.status == "refused", wf
    assert conn.execute("SELECT count(*) FROM public.iu_collection").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM public.information_unit WHERE canonical_address = 'k/wf'"
                        ).fetchone() == (0,)


@pytest.mark.parametrize("key", ["/abs", "a\\b", "a\x01b", "a\tb", ""])
def test_the_key_check_holds_for_direct_inserts_too(conn, key: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO public.iu_collection (collection_key, collection_kind, title, created_by)"
                     " VALUES (%s, 'file', 't', 'x')", (key,))


def test_the_upgrade_refuses_while_a_key_would_break_the_check(new_db) -> None:
    target = new_db("gate_protocol")
    with connect(target) as c:
        for k in ("fine.key", "a/../../etc/escaped", "./dot"):
            c.execute("INSERT INTO public.iu_collection (collection_key, collection_kind, title, created_by)"
                      " VALUES (%s, 'file', 't', 'x')", (k,))
    before = snap(target)
    with pytest.raises(RevisionRefused) as exc:
        migrate.upgrade(target, LP)
    assert "2 collection key(s) are not safe paths" in exc.value.message
    assert "'./dot', 'a/../../etc/escaped'" in exc.value.message
    assert snap(target) == before


# ---------------------------------------------------------------- hostile values under hostile settings
_ATOMS = [
    "'", "''", "\\", "\\'", "\\\\", "$$", "$iu$", "$iu", "$1", "%s", "%(x)s", "%I", "{}", "{x}", ";", "--", "/*", "*/",
    "\\gexec", ":var", ":'var'", "E'", "U&'", "\\x00", "\\u0000", "\\ud800", "\"", "`", "\n", "\r\n", "\t", "\x0b",
    "\x7f", "\u00a0", "\u200b", "\u202e", "é", "日本", "🙂", "\U0001f600\u200d", "ß", "İ", "NULL", "null", "true",
    "DROP TABLE public.dot_config", "UPDATE public.dot_config SET value = 'true'", "); SELECT 1; --",
    "' OR '1'='1", "\\'; DELETE FROM public.dot_iu_command_run; --", "x" * 300,
]


def hostile_values() -> list[str]:
    """Distinct shapes: each atom alone, and each ordered pair of distinct atoms around text."""
    out = list(_ATOMS)
    for a in _ATOMS:
        for b in _ATOMS:
            if a != b and len(out) < 600:
                out.append(f"{a}t{b}")
    return list(dict.fromkeys(v for v in out if v.strip()))


def test_at_least_500_hostile_values_arrive_as_themselves_under_hostile_settings(conn) -> None:
    values = hostile_values()
    assert len(values) >= 500
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    config = conn.execute("SELECT key, value FROM public.dot_config ORDER BY key").fetchall()
    # a hostile session: literal escapes read differently, a look-alike schema first on the path
    conn.execute("CREATE SCHEMA evil")
    conn.execute("CREATE FUNCTION evil.fn_iu_create(text, text, text, text, text) RETURNS jsonb"
                 " LANGUAGE sql AS $$ SELECT '{\"status\": \"created\", \"evil\": true}'::jsonb $$")
    for setting in ("standard_conforming_strings = off", "backslash_quote = on", "escape_string_warning = off",
                    "search_path = evil, pg_temp, public", "DateStyle = 'SQL, DMY'", "extra_float_digits = -15"):
        conn.execute(f"SET {setting}")
    rt = OperatorRuntime(conn, "hostile")
    before = ledger_count(conn)
    for i, v in enumerate(values):
        ans = rt.apply("dot_iu_clone_piece", {"canonical_address": f"hostile/{i}", "unit_kind": "piece",
                                              "title": v, "actor": v})
        assert ans.status == "applied" and "evil" not in ans.answer, (v, ans)
    conn.execute("RESET ALL")
    stored = dict(conn.execute("SELECT canonical_address, title FROM public.information_unit").fetchall())
    assert stored == {f"hostile/{i}": v for i, v in enumerate(values)}
    creators = {r[0] for r in conn.execute("SELECT created_by FROM public.information_unit")}
    assert creators == set(values)
    assert ledger_count(conn) == before + len(values)  # one row per call, nothing else ran
    assert conn.execute("SELECT key, value FROM public.dot_config ORDER BY key").fetchall() == config


def test_hostile_values_reach_every_kind_of_argument_as_themselves(conn) -> None:
    """The same hostile shapes as text[] labels, a jsonb step title, a collection title and a
    gate reason: stored as given, under the hostile session."""
    values = hostile_values()[::9]
    assert len(values) >= 60
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    for setting in ("standard_conforming_strings = off", "backslash_quote = on", "escape_string_warning = off"):
        conn.execute(f"SET {setting}")
    rt = OperatorRuntime(conn, "hostile")
    piece = rt.apply("dot_iu_clone_piece", {"canonical_address": "h/p", "unit_kind": "piece",
                                            "title": "P"}).answer["iu_id"]
    for i, v in enumerate(values):
        comp = rt.apply("dot_iu_create_file_from_pieces", {
            "collection_key": f"h.c{i}", "collection_kind": "file", "title": v, "piece_ids": [piece],
            "labels": [v]})
        assert comp.status == "applied", (v, comp)
        wf = rt.apply("dot_iu_workflow_from_steps", {"collection_key": f"h.w{i}", "title": v,
                                                     "steps": [{"address": f"h/w{i}", "title": v}]})
        assert wf.status == "applied", (v, wf)
        gate = rt.apply("dot_iu_gate_close", {"gate_key": "iu_core.delivery_enabled", "reason": v})
        assert gate.status == "applied", (v, gate)
    conn.execute("RESET ALL")
    got = conn.execute(
        "SELECT c.collection_key, c.title, m.label FROM public.iu_collection c"
        " JOIN public.iu_collection_member m USING (collection_id) WHERE c.collection_key LIKE 'h.c%'").fetchall()
    assert {k: (t, lbl) for k, t, lbl in got} == {f"h.c{i}": (v, v) for i, v in enumerate(values)}
    steps = dict(conn.execute("SELECT canonical_address, title FROM public.information_unit"
                              " WHERE canonical_address LIKE 'h/w%'").fetchall())
    assert steps == {f"h/w{i}": v for i, v in enumerate(values)}
    reasons = [r[0] for r in conn.execute("SELECT reason FROM public.iu_gate_transition WHERE action = 'close'"
                                          " ORDER BY created_at")]
    assert reasons == values


def _params_for(cmd: Command, hostile: str, piece: str) -> dict[str, Any]:
    """Parameters that reach the command's function: the hostile value in every text-like
    parameter (text, text[], a jsonb string), real-looking values everywhere else."""
    out: dict[str, Any] = {}
    for p in cmd.params:
        if p.fixed is not None:
            continue
        if p.type == "text":
            out[p.name] = hostile
        elif p.type == "text[]":
            out[p.name] = [hostile]
        elif p.type == "jsonb":
            out[p.name] = [{"address": f"h/{uuid.uuid4().hex[:8]}", "title": hostile}]
        elif p.type == "uuid":
            out[p.name] = piece
        elif p.type == "uuid[]":
            out[p.name] = [piece]
        elif p.type == "integer":
            out[p.name] = 1
        elif p.type == "boolean":
            out[p.name] = True
    return out


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.governed], ids=lambda c: c.name)
def test_every_command_takes_hostile_text_as_text_under_hostile_settings(conn, cmd: Command) -> None:
    """Each governed command, every text-like parameter holding injection shapes, in a
    session where literals and the search path mean something else: the call is
    answered by its own function (applied, refused or failed, never a syntax error),
    one ledger row per call, and no gate, catalog or classification row moves."""
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    piece = OperatorRuntime(conn, "pytest").apply("dot_iu_clone_piece", {
        "canonical_address": "h/piece", "unit_kind": "piece", "title": "P"}).answer["iu_id"]
    watched = ("SELECT (SELECT json_agg(c ORDER BY key) FROM public.dot_config c),"
               " (SELECT json_agg(k ORDER BY command_name) FROM public.dot_iu_command_catalog k),"
               " (SELECT json_agg(g ORDER BY gate_key) FROM public.iu_gate_class g)")
    protected = conn.execute(watched).fetchone()
    conn.execute("CREATE SCHEMA evil")
    for setting in ("standard_conforming_strings = off", "backslash_quote = on", "escape_string_warning = off",
                    "search_path = evil, pg_temp, public"):
        conn.execute(f"SET {setting}")
    rt = OperatorRuntime(conn, "hostile")
    shapes = ["x'); UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.vector_sync_enabled'; --",
              "\\'; SELECT 1; --", "$$; DROP TABLE public.dot_config; $$", "$iu$ ) ; -- $iu$", "%s %I %L"]
    before = ledger_count(conn)
    for v in shapes:
        params = _params_for(cmd, v, piece)
        ans = rt.verify(cmd.name, params) if cmd.mode == "verify" and not cmd.mutating \
            else rt.apply(cmd.name, params)
        assert ans.status in ("applied", "verified", "refused", "failed"), (v, ans)
        error = str((ans.answer or {}).get("error", "")) if isinstance(ans.answer, dict) else ""
        assert "syntax error" not in error and (ans.answer or {}).get("sqlstate") != "42601", (v, ans)
    conn.execute("RESET ALL")
    assert conn.execute(watched).fetchone() == protected
    assert ledger_count(conn) == before + len(shapes)  # one row per call, nothing else ran
