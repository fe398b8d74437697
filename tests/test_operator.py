"""The operator layer: registry, governed plans, OperatorRuntime, gate/worker verbs,
the seven-step proof and text as code — against a real server at head."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from iu_core.domain.manifests import ManifestError, export, import_manifest, parse
from iu_core.domain.proof import run_proof
from iu_core.domain.registry import COMMANDS, COMPOSER, OPERATOR_RUNTIME, Command
from iu_core.domain.runtime import (
    DISPATCH_SQL,
    DotCommandPlan,
    NotGoverned,
    OperatorRuntime,
    assert_governed,
    build_plan,
    explain,
    parse_params,
    sql_string,
)
from iu_core.errors import BadInput
from iu_core.framework import layout

from .conftest import ROOT, connect, dbname, head, ok, open_gates


def sample(p_type: str) -> Any:
    return {"text": "x", "uuid": str(uuid.uuid4()), "integer": 1, "boolean": True, "jsonb": {},
            "uuid[]": [str(uuid.uuid4())], "text[]": ["a"]}[p_type]


# ---------------------------------------------------------------- governed plans
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.name)
def test_every_command_renders_a_plan_that_passes_the_governance_check(cmd: Command) -> None:
    params = {p.name: sample(p.type) for p in cmd.params if p.fixed is None}
    plan = build_plan(cmd, params)
    assert plan.statements[0].startswith(f"SELECT public.{cmd.targets[0]}(")
    # what is executed is the dispatcher call; the arguments travel as bound values, by position
    assert plan.executed == DISPATCH_SQL
    assert 0 < len(plan.args) <= len(cmd.params) or not cmd.params
    assert all(p.fixed is None or plan.args[i] == p.fixed for i, p in enumerate(cmd.params[: len(plan.args)]))


REORDER = next(c for c in COMMANDS if c.name == "dot_iu_reorder_piece")
U = "'7f3e0c9a-1b2c-4d5e-8f90-123456789abc'::uuid"
GOOD = f"SELECT public.fn_iu_collection_reorder_piece({U}, {U}, 0, 'op')"
PAYLOADS = [  # a second statement of each kind: DDL, three DML, another command's function
    "DROP TABLE public.dot_config",
    "DELETE FROM public.dot_iu_command_run",
    "UPDATE public.dot_config SET value = 'true'",
    "INSERT INTO public.dot_config VALUES ('k', 'v')",
    "SELECT public.fn_iu_gate_open('iu_core.composer_enabled', NULL, 'x', 'y', 1)",
]
# A payload statement beside the good call: every payload in each of these positions.
BESIDE = [
    "{good}; {p}",
    "{p}; {good}",
    "{good} -- \n; {p}",
    "/* */ {good}; /* */ {p}",
]
# A data-modifying CTE in front of the good call (only the DML payloads can be one).
IN_A_CTE = "WITH x AS ({p} RETURNING 1) {good}"
# Every other shape once: a clause around the good call, an argument that is not a
# bound literal, another name for the function, another function, another statement.
SHAPES = [
    "WITH x AS (SELECT 1) {good}",
    "{good} FROM public.dot_config",
    "{good} WHERE EXISTS (SELECT 1)",
    "{good} LIMIT 1",
    "{good} ORDER BY 1",
    "{good} UNION SELECT 1",
    "{good} FOR UPDATE",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, (SELECT 0), 'op')",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, length(current_user), 'op')",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, current_user)",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, $1)",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'a' || 'b')",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, CASE WHEN true THEN 'a' END)",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'x'::regclass::text)",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op' COLLATE \"C\")",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, ROW(1, 2), 'op')",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, ARRAY[pg_sleep(1)]::text)",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, pg_sleep(10)::int, 'op')",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op'::evil.text)",
    "SELECT public.fn_iu_collection_reorder_piece(VARIADIC ARRAY[1])",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') OVER ()",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') FILTER (WHERE true)",
    "SELECT public.fn_iu_collection_reorder_piece(*)",
    "SELECT (public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')).status",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') IS NULL",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') AS named",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op'), 1",
    "SELECT DISTINCT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "SELECT fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "SELECT evil.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "SELECT pg_temp.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "SELECT \"PUBLIC\".fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "SELECT public.\"fn_iu_collection_reorder_piece \"({u}, {u}, 0, 'op')",
    "SELECT db.public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "SELECT public.fn_iu_retire({u}, 'x', 'op')",
    "SELECT public.fn_iu_gate_open('iu_core.composer_enabled', {u}, 'x', 'op', 60)",
    "SELECT public.fn_dot_iu_command_log('a','b','c','d',true,NULL,'{{}}','{{}}','op')",
    "SELECT * FROM public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "TABLE public.dot_config",
    "VALUES (public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op'))",
    "EXPLAIN ANALYZE {good}",
    "PREPARE p AS {good}",
    "CALL public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op')",
    "DO $$ BEGIN PERFORM 1; END $$",
    "SET search_path = evil",
    "COPY public.dot_config TO PROGRAM 'true'",
    "",
    "SELECT",
    "SELECT public.fn_iu_collection_reorder_piece(",
    "{good}\\gexec",
    "{good} INTO TEMP t",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') WINDOW w AS ()",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, (SELECT string_agg(key, ',') FROM public.dot_config))",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') GROUP BY 1",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') HAVING true",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') OFFSET 0",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') FETCH FIRST 1 ROW ONLY",
    "SELECT public.fn_iu_collection_reorder_piece({u}, {u}, 0, 'op') INTERSECT SELECT 1",
    "SELECT 1",
]


def hostile_statements() -> list[str]:
    """Each distinct shape once: no shape repeated with a renamed literal."""
    out = [t.format(good=GOOD, p=p) for t in BESIDE for p in PAYLOADS]
    out += [IN_A_CTE.format(good=GOOD, p=p) for p in PAYLOADS if p.split()[0] in ("DELETE", "UPDATE", "INSERT")]
    out += [t.format(good=GOOD, u=U) for t in SHAPES]
    return out


def test_82_distinct_hostile_plan_shapes_are_all_refused() -> None:
    stmts = hostile_statements()
    assert len(stmts) == len(set(stmts)) == 82
    accepted = []
    for s in stmts:
        try:
            assert_governed(DotCommandPlan(REORDER, {}, [s]))
            accepted.append(s)
        except NotGoverned:
            pass
    assert accepted == []
    assert_governed(DotCommandPlan(REORDER, {}, [GOOD]))  # the control passes


EXECUTED = [
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s); DELETE FROM public.dot_config",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s, %s)::text",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::json, %s)",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, 'someone else')",
    "SELECT public.fn_dot_iu_execute(%s, 'apply', %s::jsonb, %s)",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb)",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s, %s)",
    "SELECT public.fn_dot_iu_execute(%s, %s, (%s || '[]')::jsonb, %s)",
    "SELECT public.fn_iu_collection_reorder_piece(%s, %s, %s, %s)",
    "SELECT fn_dot_iu_execute(%s, %s, %s::jsonb, %s)",
    "SELECT evil.fn_dot_iu_execute(%s, %s, %s::jsonb, %s)",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s) FROM public.dot_config",
    "SELECT public.fn_dot_iu_execute(%(a)s, %s, %s::jsonb, %s)",
    "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, current_user)",
    "WITH x AS (DELETE FROM public.dot_iu_command_run) SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s)",
]


@pytest.mark.parametrize("executed", EXECUTED)
def test_the_executed_statement_is_exactly_the_dispatcher_call_with_bound_parameters(executed: str) -> None:
    plan = build_plan(REORDER, {"collection_id": str(uuid.uuid4()), "iu_id": str(uuid.uuid4()),
                                "new_order": 0, "actor": "op"})
    assert_governed(plan)
    plan.executed = executed
    with pytest.raises(NotGoverned):
        assert_governed(plan)


def test_the_checks_remember_only_proofs_a_refused_text_is_refused_every_time() -> None:
    """assert_governed remembers texts it proved (bench row 6a); never one it refused."""
    plan = build_plan(REORDER, {"collection_id": str(uuid.uuid4()), "iu_id": str(uuid.uuid4()),
                                "new_order": 0, "actor": "op"})
    assert_governed(plan)
    assert_governed(plan)  # proven once: stays proven
    bad = DotCommandPlan(REORDER, {}, [plan.statements[0] + "; DELETE FROM public.dot_config"])
    for _ in range(3):
        with pytest.raises(NotGoverned):
            assert_governed(bad)
    plan.executed = EXECUTED[0]
    for _ in range(3):
        with pytest.raises(NotGoverned):
            assert_governed(plan)


def test_a_tampered_plan_is_refused_before_it_runs(conn) -> None:
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    rt = OperatorRuntime(conn, "pytest")
    import iu_core.domain.runtime as op

    real = op.render_call
    try:
        op.render_call = lambda cmd, params: real(cmd, params) + "; DELETE FROM public.dot_config"
        with pytest.raises(NotGoverned):
            rt.apply("dot_iu_healthcheck", {})
    finally:
        op.render_call = real
    assert conn.execute("SELECT count(*) FROM public.dot_config").fetchone()[0] > 0


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("pairs", "needle"),
    [
        (["collection_id=nope", "iu_id=" + str(uuid.uuid4()), "new_order=0"], "is not a uuid"),
        (["iu_id=" + str(uuid.uuid4()), "new_order=0"], "missing parameter collection_id"),
        (["collection_id=" + str(uuid.uuid4()), "iu_id=" + str(uuid.uuid4()), "new_order=x"], "is not an integer"),
        (["collection_id=" + str(uuid.uuid4()), "iu_id=" + str(uuid.uuid4()), "new_order=0", "color=red"], "unknown parameter(s) color"),
        (["collection_id"], "is not key=value"),
        (["new_order=1", "new_order=2"], "given twice"),
        (["collection_id=" + str(uuid.uuid4()), "iu_id=" + str(uuid.uuid4()), "new_order=99999999999"], "32-bit"),
    ],
)
def test_parameter_errors_are_exit_2_before_the_database(run_cli, pairs: list[str], needle: str) -> None:
    res = run_cli(None, "--url", "postgresql://nobody@/nowhere?host=/nonexistent", "dot", "apply",
                  "dot_iu_reorder_piece", *pairs)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "cannot connect" not in res.stderr


@pytest.mark.parametrize(("pairs", "needle"), [
    (["steps=" + "[" * 5000 + "]" * 5000], "nested deeper than 64 levels"),
    (['steps=[{"title": "\\u0000"}]'], "holds a NUL byte"),
    (['steps=[{"title": "\\udc80"}]'], "lone surrogate U+DC80"),
    (["steps=[NaN]"], "is not valid JSON"),
    (["steps=[1, Infinity]"], "is not valid JSON"),
    (["title=a\udc80b"], "lone surrogate"),
])
def test_values_postgresql_would_reject_are_exit_2_before_the_database(run_cli, pairs: list[str],
                                                                        needle: str) -> None:
    base = {"collection_key": "k.1", "title": "T", "steps": "[]"}
    for pair in pairs:
        base[pair.split("=", 1)[0]] = pair.split("=", 1)[1]
    res = run_cli(None, "--url", "postgresql://nobody@/nowhere?host=/nonexistent", "dot", "apply",
                  "dot_iu_workflow_from_steps", *[f"{k}={v}" for k, v in base.items()])
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "Traceback" not in res.output


def test_typed_parameters_convert() -> None:
    split = next(c for c in COMMANDS if c.name == "dot_iu_split_piece")
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    got = parse_params(split, [f"iu_id={ids[0]}", 'parts=[{"address": "a/b", "title": "T"}]',
                               f"review_decision_id={ids[1]}", "dry_run=no"])
    assert got == {"iu_id": ids[0], "parts": [{"address": "a/b", "title": "T"}],
                   "review_decision_id": ids[1], "dry_run": False}
    merge = next(c for c in COMMANDS if c.name == "dot_iu_merge_pieces")
    assert parse_params(merge, [f"iu_ids={ids[0]},{ids[1]}", "merged_address=x", f"review_decision_id={ids[0]}"])["iu_ids"] == ids


# ---------------------------------------------------------------- explain
def test_explain_matches_seed_004_usage_and_psql_runs_it(conn) -> None:
    sql = explain("dot_iu_auto_instantiate_rollback_by_actor", ["actor=operator", "dry_run=true"])
    assert sql == "SELECT public.fn_iu_auto_instantiate_rollback_by_actor('operator', true);"
    tricky = explain("dot_iu_clone_piece", ["canonical_address=a/b", "unit_kind=section",
                                            "title=it's \"quoted\"; DROP TABLE x; --"], actor="o'brien")
    from iu_core.framework.backup import newest

    psql = str(Path(newest("pg_dump")).with_name("psql"))
    for statement in (sql, tricky, explain("dot_iu_command_run_health", [])):
        proc = subprocess.run([psql, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", statement, conn.info.dsn],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["status"] in ("refused", "dry_run", "ok")
    assert conn.execute("SELECT to_regclass('x')").fetchone() == (None,)


# Values a session setting would reinterpret inside a '…' literal, or that try
# to end a dollar quote: each must reach the function as itself.
TRICKY_TEXT = [
    "\\', $$x$$); UPDATE public.dot_config SET value = $$true$$ WHERE key = $$iu_core.vector_sync_enabled$$; --",
    "a\\'b", "\\", "'", "''", "$$", "$iu$", "x$iu", "$iu$ ); DROP TABLE public.dot_config; --$iu$",
    "$iu$$iu1$", "tab\there", "E'\\x41'", "\\047", "ünïcode ' \\ $",
]


@pytest.mark.parametrize("value", TRICKY_TEXT)
def test_explain_means_the_same_under_hostile_session_settings(conn, value: str) -> None:
    """psql runs explain's SQL with standard_conforming_strings off and backslash_quote on:
    the function receives exactly the value, and nothing else runs."""
    lit = sql_string(value)
    from iu_core.framework.backup import newest

    psql = str(Path(newest("pg_dump")).with_name("psql"))
    env = {"PGOPTIONS": "-c standard_conforming_strings=off -c backslash_quote=on -c escape_string_warning=off",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([psql, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", f"SELECT {lit};", conn.info.dsn],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == value + "\n"
    # and the explain of a real command, run the same way, changes nothing
    stmt = explain("dot_iu_clone_piece", ["canonical_address=a/b", "unit_kind=piece", f"title={value}"],
                   actor=value)
    before = conn.execute("SELECT value FROM public.dot_config WHERE key = 'iu_core.vector_sync_enabled'").fetchone()
    proc = subprocess.run([psql, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", stmt, conn.info.dsn],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "refused"  # the composer gate is shut
    after = conn.execute("SELECT value FROM public.dot_config WHERE key = 'iu_core.vector_sync_enabled'").fetchone()
    assert before == after == ("false",)


# ---------------------------------------------------------------- runtime & ledger
def ledger(conn: psycopg.Connection[Any]) -> list[tuple]:
    return conn.execute(
        "SELECT command_name, run_mode, run_status, params_digest, gate_snapshot, evidence, actor"
        " FROM public.dot_iu_command_run ORDER BY created_at").fetchall()


def test_apply_refuses_before_any_plan_sql_when_a_gate_is_shut(conn) -> None:
    open_gates(conn, OPERATOR_RUNTIME)
    rt = OperatorRuntime(conn, "pytest")
    n_before = len(ledger(conn))
    ans = rt.apply("dot_iu_clone_piece", {"canonical_address": "t/shut", "unit_kind": "piece", "title": "T"})
    assert (ans.status, ans.closed_gates) == ("refused", [COMPOSER])
    assert ans.answer is None  # the function never ran
    assert conn.execute("SELECT count(*) FROM public.information_unit").fetchone() == (0,)
    rows = ledger(conn)[n_before:]
    assert len(rows) == 1 and rows[0][2] == "refused" and rows[0][5]["closed_gates"] == [COMPOSER]


def test_every_call_writes_exactly_one_ledger_row_and_never_a_raw_value(conn) -> None:
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    rt = OperatorRuntime(conn, "pytest")
    secret = "addr/secret-marker-q7x"
    n0 = len(ledger(conn))
    a = rt.apply("dot_iu_clone_piece", {"canonical_address": secret, "unit_kind": "piece", "title": "Top secret title"})
    iu = a.answer["iu_id"]
    b = rt.apply("dot_iu_create_file_from_pieces", {"collection_key": "secret.key-q7x", "collection_kind": "file",
                                                    "title": "T", "piece_ids": [iu], "labels": ["lbl-q7x"]})
    cid = b.answer["collection_id"]
    c = rt.plan("dot_iu_reorder_piece", {"collection_id": cid, "iu_id": iu, "new_order": 0})
    d = rt.verify("dot_iu_validate_collection", {"collection_id": cid})
    e = rt.apply("dot_iu_clone_piece", {"canonical_address": secret, "unit_kind": "piece", "title": "again"})
    assert [x.status for x in (a, b, c, d, e)] == ["applied", "applied", "planned", "verified", "refused"]
    rows = ledger(conn)[n0:]
    assert len(rows) == 5
    blob = json.dumps([list(map(str, r)) for r in rows])
    for raw in (secret, "Top secret title", "secret.key-q7x", "lbl-q7x", iu, cid):
        assert raw not in blob
    assert all(len(r[3]) == 32 for r in rows)
    # same parameters, same digest; different parameters, different digest
    assert rows[0][3] != rows[4][3]


def test_a_function_refusal_is_reported_with_guidance_and_rolled_back(conn) -> None:
    open_gates(conn, OPERATOR_RUNTIME, "iu_core.structure_ops_enabled")
    rt = OperatorRuntime(conn, "pytest")
    ans = rt.apply("dot_iu_split_piece", {
        "iu_id": str(uuid.uuid4()), "parts": [{"address": "a/1", "title": "A"}, {"address": "a/2", "title": "B"}],
        "review_decision_id": str(uuid.uuid4())})
    assert ans.status == "refused"
    assert ans.answer["status"] == "review_decision_not_found"
    assert ans.next_action == "record_review_decision_first"


def test_unavailable_commands_are_reported_not_crashed_on(conn_at, run_cli, new_db) -> None:
    target = new_db("280")
    res = run_cli(target, "--json", "dot", "list")
    rows = {r["command"]: r for r in json.loads(res.stdout)}
    assert rows["dot_iu_reorder_piece"]["available"] is True
    assert rows["dot_iu_gate_open"]["available"] is False
    res = run_cli(target, "gate", "status")
    assert res.exit_code == 2
    assert "needs revision least_privilege" in res.stderr and "database at 280" in res.stderr


def test_below_least_privilege_the_runtime_refuses_instead_of_a_second_path(new_db, run_cli) -> None:
    """No governed entry point, no execution: exit 2, nothing written, not even a ledger row."""
    target = new_db("gate_protocol")
    with connect(target) as c:
        before = c.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone()
        with pytest.raises(BadInput) as exc:
            OperatorRuntime(c, "pytest").apply("dot_iu_healthcheck", {})
        assert "needs revision least_privilege" in exc.value.message
        assert "database at gate_protocol: run iucore db upgrade" in exc.value.message
        assert c.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone() == before
    res = run_cli(target, "dot", "apply", "dot_iu_healthcheck")
    assert res.exit_code == 2 and "iucore db upgrade" in res.stderr and "Traceback" not in res.output


# ---------------------------------------------------------------- CLI verbs
def test_gate_verbs_open_close_status_watchdog(new_db, run_cli) -> None:
    target = new_db(head())
    ok = run_cli(target, "gate", "open", "iu_core.delivery_enabled", "--approval-id", str(uuid.uuid4()),
                 "--ttl", "60", "--reason", "test")
    assert ok.exit_code == 0, ok.output
    assert run_cli(target, "gate", "status").exit_code == 4  # not all safe
    never = run_cli(target, "gate", "open", "iu_core.vector_sync_enabled", "--approval-id", str(uuid.uuid4()),
                    "--ttl", "60", "--reason", "x")
    assert never.exit_code == 3 and "NEVER-FLIP" in never.stderr
    ttl = run_cli(target, "gate", "open", "iu_core.composer_enabled", "--approval-id", str(uuid.uuid4()),
                  "--ttl", "0", "--reason", "x")
    assert ttl.exit_code == 3
    bad = run_cli(target, "gate", "open", "iu_core.composer_enabled", "--approval-id", "nope",
                  "--ttl", "60", "--reason", "x")
    assert bad.exit_code == 2 and "is not a uuid" in bad.stderr
    with connect(target) as c:
        c.execute("UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 minute'")
    wd = run_cli(target, "--json", "gate", "watchdog")
    assert wd.exit_code == 0 and json.loads(wd.stdout)["answer"]["closed_count"] == 1
    assert run_cli(target, "gate", "status").exit_code == 0
    with connect(target) as c:
        actions = [r[0] for r in c.execute("SELECT action FROM public.iu_gate_transition ORDER BY created_at")]
    assert actions == ["open", "watchdog_close"]


def test_worker_run_prints_the_dry_run_counts(new_db, run_cli) -> None:
    target = new_db(head())
    with connect(target) as c:
        c.execute("SELECT public.fn_iu_emit_event('iu', 'structure_op_applied', 's1', '{}', 'pytest')")
    res = run_cli(target, "worker", "run", "--limit", "50")
    assert res.exit_code == 0, res.output
    assert "seen=1, attempts_written=1, skipped=0, dead_lettered=0, dry_run=True" in res.stdout
    assert "seen=0" in ok(run_cli(target, "worker", "run")).stdout
    assert run_cli(target, "worker", "run", "no_such_route").exit_code == 3
    assert run_cli(target, "worker", "run", "--limit", "0").exit_code == 3


# ---------------------------------------------------------------- the proof
def test_the_seven_step_proof_end_to_end(new_db, run_cli) -> None:
    target = new_db(head())
    res = run_cli(target, "--json", "proof", "operator-runtime", "--yes-on-this-database", dbname(target))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(s["step"], s["status"], s["ledger_rows"]) for s in out["steps"]] == [
        (1, "planned", 1), (2, "applied", 1), (3, "verified", 1), (4, "applied", 1),
        (5, "applied", 1), (6, "verified", 1), (7, "refused", 1)]
    assert out["closed_gates_step7"] == [COMPOSER]
    assert out["order_before"] == out["order_after"] == ["0/intro", "1/body", "2/tail"]
    assert out["events"] == {"piece_reordered@delayed": 2, "collection_rendered@delayed": 1}
    assert out["final_gates"]["all_safe"] is True
    again = json.loads(ok(run_cli(target, "--json", "proof", "operator-runtime",
                                  "--yes-on-this-database", dbname(target))).stdout)
    assert again["ok"] and again["composed"] is False  # discovered, not recomposed


def test_the_proofs_own_ledger_rows_are_its_seven_steps(new_db) -> None:
    """Seed 000 §5: "+7 this proof, all actor runtime_500x_op_proof". On runtime/290's collection
    the proof's actor writes exactly the seven step rows; the gate window (two opens, two closes,
    the end-state check) is in the ledger too, under its own actor, with every gate transition."""
    from iu_core.release import datascripts

    target = new_db(head())
    datascripts.apply(target, "290", approval_id=str(uuid.uuid4()), project=ROOT)
    with connect(target) as c:
        before = c.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone()[0]
        res = run_proof(c)
        assert res.ok and not res.composed, res.problems
        rows = c.execute("SELECT actor, command_name, run_mode, run_status FROM public.dot_iu_command_run"
                         " ORDER BY created_at OFFSET %s", (before,)).fetchall()
        transitions = c.execute("SELECT DISTINCT actor FROM public.iu_gate_transition"
                                " WHERE actor LIKE 'runtime_500x%%'").fetchall()
    assert [r[1:] for r in rows if r[0] == "runtime_500x_op_proof"] == [
        ("dot_iu_reorder_piece", "plan", "planned"), ("dot_iu_reorder_piece", "apply", "applied"),
        ("dot_iu_validate_collection", "verify", "verified"), ("dot_iu_checkpoint_collection", "apply", "applied"),
        ("dot_iu_reorder_piece", "apply", "applied"), ("dot_iu_validate_collection", "verify", "verified"),
        ("dot_iu_reorder_piece", "apply", "refused")]
    assert [r[1:] for r in rows if r[0] == "runtime_500x_op_proof.gate_window"] == [
        ("dot_iu_gate_open", "apply", "applied")] * 2 + [("dot_iu_gate_close", "apply", "applied")] * 2 + [
        ("dot_iu_gate_verify_closed", "verify", "verified")]
    assert len(rows) == 12 and transitions == [("runtime_500x_op_proof.gate_window",)]
    assert (res.actor, res.gate_actor) == ("runtime_500x_op_proof", "runtime_500x_op_proof.gate_window")


def test_the_proof_closes_its_gates_when_a_step_fails_midway(conn) -> None:
    def boom(step):
        if step.n == 3:
            raise KeyboardInterrupt  # an operator's Ctrl-C in the middle of the window

    with pytest.raises(KeyboardInterrupt):
        run_proof(conn, after_step=boom)
    safe = conn.execute("SELECT public.fn_iu_gate_verify_closed(NULL)").fetchone()[0]
    assert safe["all_safe"] is True
    closes = conn.execute("SELECT count(*) FROM public.iu_gate_transition WHERE action = 'close'").fetchone()
    assert closes == (2,)


# ---------------------------------------------------------------- text as code
def test_export_import_export_is_byte_identical(new_db, tmp_path: Path, run_cli) -> None:
    src = new_db(head())
    assert run_cli(src, "proof", "operator-runtime", "--yes-on-this-database", dbname(src)).exit_code == 0
    res = run_cli(src, "dot", "render", "iu_core.runtime290.file-001", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    path = tmp_path / "iu-tree/_collections/file/iu_core.runtime290.file-001.md"
    first = path.read_bytes()
    dst = new_db(head())
    assert run_cli(dst, "dot", "import", str(path)).exit_code == 3  # gates shut: refused
    with connect(dst) as c:
        assert c.execute("SELECT count(*) FROM public.information_unit").fetchone() == (0,)
        # issue 9 point 7: the refusal is audited, nothing else of the import is left
        assert ledger(c) and [r[:3] for r in ledger(c)] == [("dot_iu_clone_piece", "apply", "refused")]
        assert ledger(c)[0][5] == {"closed_gates": [OPERATOR_RUNTIME, COMPOSER], "reason": "gate_closed"}
        open_gates(c, OPERATOR_RUNTIME, COMPOSER)
    res = run_cli(dst, "dot", "import", str(path))
    assert res.exit_code == 0 and "imported" in res.stdout, res.output
    again = ok(run_cli(dst, "dot", "render", "iu_core.runtime290.file-001", "--stdout"))
    assert again.stdout.encode() == first
    assert "in_sync" in ok(run_cli(dst, "dot", "import", str(path))).stdout


@pytest.mark.parametrize(
    ("mutate", "line"),
    [
        (lambda t: t.replace("collection_kind: file", "collection_kind: scroll"), 3),
        (lambda t: t.replace("1 | body", "5 | body"), 7),
        (lambda t: t.replace(" | section | Body", " | section"), 7),
        (lambda t: t.replace("---\n0 |", "---\n0 | x | BAD ADDRESS | section | T\n1 |"), 6),
        (lambda t: t.rstrip("\n"), 8),
        (lambda t: t.replace("title: ", "titel: "), 4),
    ],
)
def test_a_malformed_manifest_is_refused_with_the_line_at_fault(mutate, line: int) -> None:
    text = ("---\ncollection_key: k.1\ncollection_kind: file\ntitle: T\n---\n"
            "0 | intro | a/intro | section | Intro\n1 | body | a/body | section | Body\n2 | tail | a/tail | section | Tail\n")
    assert parse(text).text() == text
    with pytest.raises(ManifestError) as exc:
        parse(mutate(text), "m.md")
    assert exc.value.data["line"] == line, exc.value.message


def test_a_conflicting_manifest_changes_nothing(conn) -> None:
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    m = parse("---\ncollection_key: k.1\ncollection_kind: file\ntitle: T\n---\n0 | a | x/a | section | A\n")
    assert import_manifest(conn, m, "pytest")["status"] == "imported"
    before = export(conn, "k.1").text()
    other = parse("---\ncollection_key: k.1\ncollection_kind: file\ntitle: T\n---\n0 | a | x/a | section | CHANGED\n")
    from iu_core.errors import Refused

    def refusals() -> list[tuple[str, str, str]]:
        return conn.execute("SELECT command_name, run_status, evidence->>'answer_status' FROM public.dot_iu_command_run"
                            " WHERE actor = 'pytest' AND run_status = 'refused' ORDER BY created_at").fetchall()

    with pytest.raises(Refused) as exc:
        import_manifest(conn, other, "pytest")
    assert export(conn, "k.1").text() == before
    # every refusal is audited: the governed function's own refusal row, nothing else
    assert refusals() == [("dot_iu_create_file_from_pieces", "refused", "duplicate")]
    assert exc.value.data["run_id"]
    clash = parse("---\ncollection_key: k.2\ncollection_kind: file\ntitle: T\n---\n0 | a | x/a | piece | A\n")
    n = conn.execute("SELECT count(*) FROM public.iu_collection").fetchone()
    with pytest.raises(Refused):
        import_manifest(conn, clash, "pytest")
    assert conn.execute("SELECT count(*) FROM public.iu_collection").fetchone() == n
    assert refusals()[1:] == [("dot_iu_clone_piece", "refused", "duplicate")]


# ---------------------------------------------------------------- the demo
def test_demo_runs_twice(empty_db, run_cli) -> None:
    first = run_cli(empty_db, "demo", "--yes-on-this-database", dbname(empty_db))
    assert first.exit_code == 0, first.output
    n = len(list(layout.script_directory(ROOT).walk_revisions()))
    assert f"rehearsed {n} revision(s); fingerprint unchanged" in first.stdout
    for needle in ("runtime/290 applied", "order restored: 0/intro 1/body 2/tail",
                   # seed 000 §5: +7, all actor runtime_500x_op_proof; the gate window has its own actor
                   "dot_iu_command_run 2 → 14: +7 runtime_500x_op_proof, +5 runtime_500x_op_proof.gate_window",
                   # seed 001 §3: the 8 composer events, nothing else (the births emit none)
                   "seen=8, attempts_written=8, skipped=0, dead_lettered=0",
                   "attempted: composer 8 (collection_created 1, "
                   "piece_added_to_collection 3, collection_rendered 2, piece_reordered 2)",
                   "drift 0", "gates: all_safe = true", "demo complete"):
        assert needle in first.stdout, needle
    with connect(empty_db) as c:  # the demo ran the data script itself: audited like any run
        assert c.execute("SELECT direction, outcome FROM iucore.migration_log WHERE revision = 'runtime/290'"
                         ).fetchall() == [("apply", "applied")]
    second = run_cli(empty_db, "demo", "--yes-on-this-database", dbname(empty_db))
    assert second.exit_code == 0, second.output
    assert "nothing to rehearse" in second.stdout and "exists already" in second.stdout
    assert "order restored: 0/intro 1/body 2/tail" in second.stdout


def test_a_parameter_can_add_a_gate_and_apply_refuses_before_sql(conn) -> None:
    """Seed 004: live auto-instantiation needs composer AND auto_instantiate_enabled."""
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)
    rt = OperatorRuntime(conn, "pytest")
    params = {"event_id": str(uuid.uuid4()), "event_type": "template.instance_auto_composed",
              "template_collection_id": str(uuid.uuid4()), "instance_key_suffix": "t1", "note": "n"}
    live = rt.apply("dot_iu_auto_instantiate_from_event", {**params, "emit_mode": "live"})
    assert (live.status, live.closed_gates, live.answer) == ("refused", ["iu_core.auto_instantiate_enabled"], None)
    dry = rt.apply("dot_iu_auto_instantiate_from_event", {**params, "emit_mode": "dry_run"})
    assert dry.closed_gates == [] and dry.answer is not None  # the function ran (and judged the input)
    back = rt.apply("dot_iu_auto_instantiate_rollback_by_actor", {"dry_run": False})
    assert back.closed_gates == ["iu_core.auto_instantiate_enabled"]
