"""Security against a live server at head, as an attacker with an ordinary login would try it.

Real LOGIN roles, each given exactly what `iucore db grant` gives, connect with
their own connections and try every write path: each IU Core table, the ledger
logger, every function that writes, dot_config, the touch trigger, the gate
functions, the command targets. Only the governed entry point works, and the
ledger it writes names the real session user.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import psycopg
import pytest

from iu_core.domain.registry import COMMANDS, COMPOSER, OPERATOR_RUNTIME
from iu_core.domain.roles import OPERATOR_READ_TABLES, apply, plan_operator, privileges
from iu_core.domain.runtime import OperatorRuntime
from iu_core.framework import migrate

from .conftest import connect, head, open_gates, run_preflight

NEVER_FLIP = ("iu_enact.allow_no_review_decision", "iu_core.vector_sync_enabled")
DISPATCHER = "public.fn_dot_iu_execute(text, text, jsonb, text)"


def iu_tables(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " WHERE c.relkind = 'r' AND c.relnamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)"
        " ORDER BY 1")]


def writers(conn: psycopg.Connection[Any]) -> list[str]:
    """Every IU Core function that writes (volatile, not a trigger function), the dispatcher too."""
    return [r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
        " AND p.provolatile = 'v' AND p.prorettype <> 'trigger'::regtype ORDER BY 1")]


def null_call(sig: str) -> str:
    """`SELECT fn(NULL::t1, …)` for a regprocedure text."""
    name, args = sig.split("(", 1)
    types = [t.strip() for t in args.rstrip(")").split(",") if t.strip()]
    return f"SELECT {name}({', '.join(f'NULL::{t}' for t in types)})"


def ledger(conn: psycopg.Connection[Any]) -> list[tuple]:
    return conn.execute("SELECT run_id, command_name, run_mode, run_status, params_digest, gate_snapshot,"
                        " evidence, actor, session_user_name FROM public.dot_iu_command_run"
                        " ORDER BY created_at, run_id").fetchall()


def refused(c: psycopg.Connection[Any], sql: str) -> str:
    """Run `sql` as the role; the SQLSTATE it fails with (the test fails if it succeeds)."""
    try:
        c.execute(sql)
    except psycopg.Error as exc:
        return exc.sqlstate or "?"
    raise AssertionError(f"allowed: {sql}")


# ---------------------------------------------------------------- the policy, as exact sets
def test_the_operator_holds_exactly_the_policy(conn, login) -> None:
    op, _ = login("op")
    views = [r[0] for r in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
        " AND c.relkind = 'v' ORDER BY 1")]
    assert len(views) == 9
    want = {("schema public", "USAGE"), ("schema cutter_governance", "USAGE")}
    want |= {(f"table {v}", "SELECT") for v in views}
    want |= {(f"table {t.removeprefix('public.')}", "SELECT") for t in OPERATOR_READ_TABLES}
    want |= {("function fn_dot_iu_execute(text,text,jsonb,text)", "EXECUTE")}
    assert privileges(conn, op) == want
    # and effectively (PUBLIC included): no table privilege but SELECT anywhere, EXECUTE on no writer but the dispatcher
    assert conn.execute(
        "SELECT count(*) FROM pg_class c, unnest(ARRAY['INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) p"
        " WHERE c.relkind = 'r' AND c.relnamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)"
        " AND has_table_privilege(%s, c.oid, p)", (op,)).fetchone() == (0,)
    executable = {r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
        " AND p.provolatile = 'v' AND p.prorettype <> 'trigger'::regtype AND has_function_privilege(%s, p.oid, 'EXECUTE')",
        (op,))}
    assert executable == {"fn_dot_iu_execute(text,text,jsonb,text)"}


def test_the_readonly_role_holds_exactly_the_views(conn, login) -> None:
    ro, _ = login("ro")
    views = {r[0] for r in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'")}
    assert privileges(conn, ro) == ({("schema public", "USAGE"), ("schema cutter_governance", "USAGE")}
                                    | {(f"table {v}", "SELECT") for v in views})


def test_granting_converges_a_role_that_held_the_old_policy(conn, login) -> None:
    """The pre-least_privilege operator policy (mutators, the logger, DML) is revoked by a re-grant."""
    name, _ = login("none")
    for stmt in ("GRANT SELECT, INSERT, UPDATE, DELETE ON public.information_unit, public.iu_collection TO {r}",
                 "GRANT TRIGGER, TRUNCATE ON public.dot_config TO {r}",
                 "GRANT EXECUTE ON FUNCTION public.fn_iu_create(text, text, text, text, text) TO {r}",
                 "GRANT EXECUTE ON FUNCTION public.fn_dot_iu_command_log(text, text, text, text, boolean, text,"
                 " jsonb, jsonb, text) TO {r}"):
        conn.execute(stmt.format(r=name))
    plan = plan_operator(conn, name)
    assert sum(s.startswith("REVOKE ALL ON") for s in plan.statements) == 5
    apply(conn, plan)
    fresh, _ = login("op")
    assert privileges(conn, name) == privileges(conn, fresh)


def test_db_grant_prints_the_policy_and_refuses_below_least_privilege(new_db, run_cli) -> None:
    target = new_db(head())
    name = f"iu_cli_{uuid.uuid4().hex[:8]}"
    with connect(target) as c:
        c.execute(f"CREATE ROLE {name} NOLOGIN")
        try:
            res = run_cli(target, "db", "grant", "--operator", name, "--dry-run")
            assert res.exit_code == 0, res.output
            assert f"GRANT EXECUTE ON FUNCTION public.fn_dot_iu_execute(text, text, jsonb, text) TO {name}" in res.stdout
            assert "INSERT" not in res.stdout and "fn_dot_iu_command_log" not in res.stdout
            assert privileges(c, name) == set()  # a dry run grants nothing
            assert run_cli(target, "db", "grant", "--operator", name).exit_code == 0
            assert ("function fn_dot_iu_execute(text,text,jsonb,text)", "EXECUTE") in privileges(c, name)
        finally:
            c.execute(f"DROP OWNED BY {name}")
            c.execute(f"DROP ROLE {name}")
    old = new_db("gate_protocol")
    with connect(old) as c:
        c.execute(f"CREATE ROLE {name} NOLOGIN")
        try:
            res = run_cli(old, "db", "grant", "--operator", name)
            assert res.exit_code == 2 and "needs revision least_privilege" in res.stderr, res.output
            assert privileges(c, name) == set()
        finally:
            c.execute(f"DROP ROLE {name}")


def test_the_upgrade_revokes_grants_that_bypassed_the_governed_path(new_db) -> None:
    """Grants made at gate_protocol (the old policy) do not survive least_privilege: only SELECT does."""
    target = new_db("gate_protocol")
    name = f"iu_legacy_{uuid.uuid4().hex[:8]}"
    with connect(target) as c:
        c.execute(f"CREATE ROLE {name} NOLOGIN")
        try:
            c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON public.information_unit, public.dot_config,"
                      f" public.dot_iu_command_run TO {name}")
            c.execute(f"GRANT EXECUTE ON FUNCTION public.fn_iu_create(text, text, text, text, text),"
                      f" public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text),"
                      f" public.fn_iu_gate_open(text, uuid, text, text, integer), public.fn_iu_healthcheck() TO {name}")
            migrate.upgrade(target, "least_privilege")
            left = c.execute(
                "SELECT c.relname, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
                " WHERE a.grantee = %s::regrole ORDER BY 1, 2", (name,)).fetchall()
            assert left == [("dot_config", "SELECT"), ("dot_iu_command_run", "SELECT"),
                            ("information_unit", "SELECT")]
            fns = c.execute("SELECT p.proname FROM pg_proc p, aclexplode(p.proacl) a"
                            " WHERE a.grantee = %s::regrole ORDER BY 1", (name,)).fetchall()
            assert fns == [("fn_iu_healthcheck",)]  # a reader keeps its grant; every writer lost it
        finally:
            c.execute(f"DROP OWNED BY {name}")
            c.execute(f"DROP ROLE {name}")


# ---------------------------------------------------------------- every write path, refused
@pytest.mark.parametrize("kind", ["op", "ro", "none"])
def test_every_write_path_is_refused_to_a_login_without_the_owner(conn, login, kind: str) -> None:
    _, c = login(kind)
    before_ledger = ledger(conn)
    before_config = conn.execute("SELECT key, value FROM public.dot_config ORDER BY key").fetchall()
    tables = iu_tables(conn)
    assert len(tables) >= 18
    tried = 0
    for t in tables:
        col = conn.execute("SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = %s::regclass"
                           " AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT 1", (t,)).fetchone()[0]
        for sql in (f"INSERT INTO {t} DEFAULT VALUES", f"UPDATE {t} SET {col} = {col}", f"DELETE FROM {t}",
                    f"TRUNCATE {t}"):
            assert refused(c, sql) == "42501", sql
            tried += 1
    for sig in writers(conn):
        if sig.startswith("fn_dot_iu_execute(") and kind == "op":
            continue  # the one the operator is given
        assert refused(c, null_call("public." + sig)) == "42501", sig
        tried += 1
    # the touch trigger: no one calls a trigger function, and no one but the owner hangs one on dot_config
    assert refused(c, "SELECT public.fn_dot_config_touch()") in ("0A000", "42501")
    assert refused(c, "CREATE TRIGGER t_evil BEFORE UPDATE ON public.dot_config FOR EACH ROW"
                      " EXECUTE FUNCTION public.fn_dot_config_touch()") == "42501"
    assert refused(c, "CREATE FUNCTION public.fn_iu_gate_is_open(text, text) RETURNS boolean"
                      " LANGUAGE sql AS 'SELECT true'") == "42501"
    assert tried >= 4 * 18 + 20
    assert ledger(conn) == before_ledger
    assert conn.execute("SELECT key, value FROM public.dot_config ORDER BY key").fetchall() == before_config


def test_the_gate_functions_and_the_command_targets_are_not_the_operators(conn, login) -> None:
    _, c = login("op")
    open_gates(conn, OPERATOR_RUNTIME, COMPOSER)  # even with every gate a target needs open
    gate_calls = [
        ("SELECT public.fn_iu_gate_open('iu_core.structure_ops_enabled', gen_random_uuid(), 'x', 'op', 60)"),
        "SELECT public.fn_iu_gate_close('iu_core.composer_enabled', 'x', 'op')",
        "SELECT public.fn_iu_gate_watchdog('op')",
    ]
    for sql in gate_calls:
        assert refused(c, sql) == "42501", sql
    targets = {fn for cmd in COMMANDS if cmd.mutating for fn in cmd.targets}
    for sig in writers(conn):
        if sig.split("(")[0] in targets:
            assert refused(c, null_call("public." + sig)) == "42501", sig
    assert conn.execute("SELECT count(*) FROM public.information_unit").fetchone() == (0,)


def test_the_operator_cannot_forge_the_ledger(conn, login) -> None:
    """Issue 9 finding 2: a direct logger call with a NULL digest, raw values, a false snapshot
    and somebody else's name — refused, and the ledger is exactly as it was."""
    name, c = login("op")
    before = ledger(conn)
    forgeries = [
        "SELECT public.fn_dot_iu_command_log('dot_iu_clone_piece', 'piece', 'apply', 'applied', true, NULL,"
        " '{\"iu_core.composer_enabled\": \"true\"}', '{\"title\": \"raw secret\"}', 'somebody-else')",
        "INSERT INTO public.dot_iu_command_run (command_name, category, run_mode, run_status, mutating, actor)"
        " VALUES ('dot_iu_clone_piece', 'piece', 'apply', 'applied', true, 'somebody-else')",
        "UPDATE public.dot_iu_command_run SET actor = 'somebody-else'",
        "DELETE FROM public.dot_iu_command_run",
        "SELECT public.fn_iu_gate_open('iu_core.composer_enabled', gen_random_uuid(), 'x', 'somebody-else', 60)",
    ]
    for sql in forgeries:
        assert refused(c, sql) == "42501", sql
    # the dispatcher with hostile arguments: an unknown command writes nothing; a refused one
    # writes one true row (its real session user; the claimed actor beside it)
    unknown = c.execute("SELECT public.fn_dot_iu_execute('dot_iu_no_such', 'apply', '[]', 'x')").fetchone()[0]
    assert unknown["reason"] == "unknown_command" and ledger(conn) == before
    ans = c.execute("SELECT public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply', %s::jsonb, 'somebody-else')",
                    (json.dumps(["a/raw-secret", "piece", "raw secret title", "somebody-else"]),)).fetchone()[0]
    assert ans["status"] == "refused" and ans["closed_gates"] == [OPERATOR_RUNTIME, COMPOSER]
    after = ledger(conn)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    row = after[-1]
    assert row[1:4] == ("dot_iu_clone_piece", "apply", "refused")
    assert (row[7], row[8]) == ("somebody-else", name)
    assert "raw secret" not in json.dumps([str(x) for x in row])


def test_the_operator_applies_through_the_dispatcher_as_itself(conn, login) -> None:
    name, c = login("op")
    rt = OperatorRuntime(c, "claimed-actor")
    gate = rt.apply("dot_iu_gate_open", {"gate_key": OPERATOR_RUNTIME, "approval_id": str(uuid.uuid4()),
                                         "reason": "test", "ttl_seconds": 600})
    assert gate.status == "applied", gate
    assert rt.apply("dot_iu_gate_open", {"gate_key": COMPOSER, "approval_id": str(uuid.uuid4()),
                                         "reason": "test", "ttl_seconds": 600}).status == "applied"
    a = rt.apply("dot_iu_clone_piece", {"canonical_address": "sec/p1", "unit_kind": "piece", "title": "P"})
    assert a.status == "applied" and a.answer["status"] == "created"
    rows = conn.execute("SELECT command_name, run_status, actor, session_user_name FROM public.dot_iu_command_run"
                        " ORDER BY created_at").fetchall()
    assert rows == [("dot_iu_gate_open", "applied", "claimed-actor", name)] * 2 + [
        ("dot_iu_clone_piece", "applied", "claimed-actor", name)]
    # what the tool reads as an operator works too: availability, the piece it made
    assert c.execute("SELECT title FROM public.information_unit WHERE canonical_address = 'sec/p1'").fetchone() == ("P",)
    closed = rt.apply("dot_iu_gate_close", {"gate_key": COMPOSER, "reason": "done"})
    assert closed.status == "applied"
    assert rt.apply("dot_iu_clone_piece", {"canonical_address": "sec/p2", "unit_kind": "piece",
                                           "title": "P"}).closed_gates == [COMPOSER]


def test_a_role_without_the_grant_is_refused_with_guidance(conn, login) -> None:
    from iu_core.domain.runtime import CommandRefused

    for kind in ("none", "ro", "op"):
        name, c = login(kind)
        if kind == "op":  # the catalog readable, the dispatcher not
            conn.execute(f"REVOKE EXECUTE ON FUNCTION {DISPATCHER} FROM {name}")
        with pytest.raises(CommandRefused) as exc:
            OperatorRuntime(c, "x").apply("dot_iu_healthcheck", {})
        assert "iucore db grant --operator ROLE" in exc.value.message


# ---------------------------------------------------------------- issue 9, finding 1, replayed
EXPLOIT = ("\\', $$x$$); UPDATE public.dot_config SET value=$$true$$"
           " WHERE key=$$iu_core.vector_sync_enabled$$; --")


@pytest.mark.parametrize("argv", [
    ["dot", "apply", "dot_iu_gate_close", "gate_key=iu_core.composer_enabled", f"reason={EXPLOIT}"],
    ["dot", "verify", "dot_iu_gate_verify_closed", f"gate_key={EXPLOIT}"],
    ["gate", "close", "iu_core.composer_enabled", "--reason", EXPLOIT],
    ["--actor", EXPLOIT, "dot", "plan", "dot_iu_clone_piece", "canonical_address=a/b", "unit_kind=piece",
     f"title={EXPLOIT}"],
])
def test_the_injection_of_finding_1_runs_nothing_under_hostile_settings(new_db, run_cli, argv: list[str]) -> None:
    """PGOPTIONS turns standard_conforming_strings off for the tool's own connection: the value
    reaches the function as itself, as one bound parameter, and the never-flip gate stays false."""
    target = new_db(head())
    env = {"PGOPTIONS": "-c standard_conforming_strings=off -c backslash_quote=on -c escape_string_warning=off"}
    res = run_cli(target, *argv, env=env)
    assert res.exit_code in (0, 3), res.output
    with connect(target) as c:
        assert c.execute("SELECT value FROM public.dot_config WHERE key = 'iu_core.vector_sync_enabled'"
                         ).fetchone() == ("false",)
        reasons = [r[0] for r in c.execute("SELECT reason FROM public.iu_gate_transition")]
        closes = "dot_iu_gate_close" in argv or argv[:2] == ["gate", "close"]
        assert reasons == ([EXPLOIT] if closes else [])
        assert c.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone() == (1,)


# ---------------------------------------------------------------- search_path hijack
HIJACK = """
CREATE SCHEMA evil;
CREATE TABLE evil.dot_config (key text, value text, description text, updated_at timestamptz);
INSERT INTO evil.dot_config SELECT key, 'true', description, now() FROM public.dot_config;
CREATE TABLE evil.dot_iu_command_catalog (LIKE public.dot_iu_command_catalog INCLUDING DEFAULTS);
INSERT INTO evil.dot_iu_command_catalog (command_name, category, mutating, reversible, target_functions)
  VALUES ('dot_iu_no_such_command', 'read', false, true, '{}');
CREATE TABLE evil.review_decision (review_decision_id uuid);
INSERT INTO evil.review_decision VALUES ('00000000-0000-0000-0000-00000000bad1');
CREATE TABLE evil.information_unit (LIKE public.information_unit INCLUDING DEFAULTS);
CREATE TABLE evil.iu_gate_class (gate_key text, class text, reason text);
INSERT INTO evil.iu_gate_class SELECT key, 'outside_protocol', 'x' FROM public.dot_config;
CREATE TABLE evil.dot_iu_command_gate (command_name text, gate_key text, ord smallint, when_arg text, when_value text);
CREATE FUNCTION evil.fn_iu_gate_is_open(text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.fn_iu_gate_state(text) RETURNS text LANGUAGE sql AS 'SELECT ''open''::text';
CREATE FUNCTION evil.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text)
  RETURNS uuid LANGUAGE sql AS 'SELECT ''00000000-0000-0000-0000-00000000bad2''::uuid';
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT ''2000-01-01''::timestamptz';
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS 'SELECT ''2000-01-01''::timestamptz';
CREATE FUNCTION evil.md5(text) RETURNS text LANGUAGE sql AS 'SELECT ''00000000000000000000000000000000''::text';
CREATE TEMP TABLE dot_config (key text, value text, description text, updated_at timestamptz);
INSERT INTO dot_config SELECT key, 'true', description, now() FROM public.dot_config;
CREATE TEMP TABLE review_decision (review_decision_id uuid);
INSERT INTO review_decision VALUES ('00000000-0000-0000-0000-00000000bad1');
CREATE TEMP TABLE iu_gate_class (gate_key text, class text, reason text);
INSERT INTO iu_gate_class SELECT key, 'outside_protocol', 'x' FROM public.dot_config;
SET LOCAL search_path = evil, pg_temp, public;
SET LOCAL standard_conforming_strings = off;
"""

PROBES = [
    "SELECT public.fn_dot_iu_command_log('dot_iu_no_such_command', 'read', 'plan', 'planned', false, NULL, '{}', '{}', 'x')",
    "SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false, md5('x'), '{}', '{}', 'x') IS NOT NULL",
    "SELECT public.fn_iu_piece_split(%(iu)s, '[{\"address\": \"h/a\", \"title\": \"A\"}, {\"address\": \"h/b\", \"title\": \"B\"}]', '00000000-0000-0000-0000-00000000bad1', 'x', true)",
    "SELECT public.fn_iu_piece_merge(ARRAY[%(iu)s, %(iu)s]::uuid[], 'h/m', '00000000-0000-0000-0000-00000000bad1', 'x', true)",
    "SELECT public.fn_iu_gate_open('iu_enact.allow_no_review_decision', gen_random_uuid(), 'x', 'x', 60)",
    "SELECT public.fn_iu_gate_open('iu_core.routes_master_enabled', gen_random_uuid(), 'x', 'x', 60)",
    "SELECT public.fn_iu_gate_open('iu_core.delivery_enabled', gen_random_uuid(), 'x', 'x', 60) ->> 'status'",
    "SELECT public.fn_iu_gate_close('iu_core.composer_enabled', 'x', 'x') ->> 'status'",
    "SELECT public.fn_iu_gate_watchdog('x') ->> 'closed_count'",
    "SELECT (SELECT value FROM public.dot_config WHERE key = 'iu_core.composer_enabled')",
    "SELECT public.fn_dot_iu_execute('dot_iu_no_such_command', 'apply', '[]', 'x') ->> 'reason'",
    "SELECT public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply', '[\"h/x\", \"piece\", \"T\", \"x\"]', 'x')"
    " - 'run_id' - 'duration_ms'",
    "SELECT public.fn_dot_iu_execute('dot_iu_healthcheck', 'verify', '[]', 'x') -> 'answer' -> 'all_governed_closed'",
]


def _probe(conn: psycopg.Connection[Any], sql: str, iu: str, hijack: bool) -> Any:
    conn.execute("BEGIN")
    try:
        if hijack:
            for stmt in HIJACK.strip().split(";\n"):
                if stmt.strip():
                    conn.execute(stmt)
        try:
            row = conn.execute(sql, {"iu": iu}).fetchone()
            out = row[0] if row else None
        except psycopg.Error as exc:
            out = f"ERROR {exc.sqlstate}"
        return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uuid>", json.dumps(out, default=str, sort_keys=True))
    finally:
        conn.execute("ROLLBACK")


def test_security_definer_functions_ignore_look_alike_objects(conn) -> None:
    definers = {r[0] for r in conn.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef")}
    probed = {re.search(r"public\.(fn_\w+)", p).group(1) for p in PROBES if "public.fn_" in p}
    assert definers <= probed, f"unprobed SECURITY DEFINER functions: {definers - probed}"
    iu = str(uuid.uuid4())  # no such piece: the review decision is checked first
    for sql in PROBES:
        clean, hijacked = _probe(conn, sql, iu, False), _probe(conn, sql, iu, True)
        assert clean == hijacked, f"{sql}\n clean: {clean}\n hijacked: {hijacked}"
    # and the probes did answer what a clean database answers
    assert _probe(conn, PROBES[0], iu, True) == '"ERROR 23503"'
    assert _probe(conn, PROBES[4], iu, True) == '"ERROR 42501"'
    assert '"status": "refused"' in _probe(conn, PROBES[11], iu, True)  # every gate shut, whatever evil says


def test_no_definer_has_a_literal_a_session_setting_could_reinterpret(conn) -> None:
    """A plain '…' literal with a backslash means different things under
    standard_conforming_strings on and off, and PL/pgSQL compiles with the caller's setting."""
    bodies = conn.execute("SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
                          " AND prosecdef").fetchall()
    assert len(bodies) >= 7
    bad = [name for name, src in bodies if re.search(r"(?<![Ee])'[^']*\\", src)]
    assert bad == []


# ---------------------------------------------------------------- never-flip
def _flip_attempts(c: psycopg.Connection[Any]) -> int:
    """How many writes set the tripwired key to anything but 'false' (rolled back ones too)."""
    row = c.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tripwire.flips").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("key", NEVER_FLIP)
def test_never_flip_gates_cannot_be_opened_by_any_path_in_the_tool(new_db, run_cli, key: str) -> None:
    target = new_db(head())
    # A tripwire on dot_config counts every write that would set the key to anything but
    # 'false', even one rolled back afterwards (a sequence does not roll back): the tool
    # may refuse, and may never even try.
    with connect(target) as c:
        c.execute("CREATE SCHEMA tripwire")
        c.execute("CREATE SEQUENCE tripwire.flips")
        c.execute("""CREATE FUNCTION tripwire.count_flip() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                       IF NEW.key = TG_ARGV[0] AND NEW.value IS DISTINCT FROM 'false' THEN
                         PERFORM nextval('tripwire.flips');
                       END IF;
                       RETURN NEW;
                     END $$""")
        c.execute(f"CREATE TRIGGER zz_tripwire BEFORE INSERT OR UPDATE ON public.dot_config"
                  f" FOR EACH ROW EXECUTE FUNCTION tripwire.count_flip('{key}')")
    approval = str(uuid.uuid4())
    attempts = [  # (argv, the exit code it must end with)
        (["gate", "open", key, "--approval-id", approval, "--ttl", "60", "--reason", "x"], 3),
        (["dot", "apply", "dot_iu_gate_open", f"gate_key={key}", f"approval_id={approval}", "reason=x",
          "ttl_seconds=60"], 3),
        (["dot", "apply", "dot_iu_gate_close", f"gate_key={key}", "reason=x"], 0),  # allowed: stays false
        (["gate", "watchdog"], 0),
    ]
    for argv, code in attempts:
        res = run_cli(target, *argv)
        assert res.exit_code == code, (argv, res.output)
    # preflight's write probe flips a gate inside a rolled-back transaction: never this one
    code, _, _ = run_preflight(run_cli, target)
    assert code == 3  # no backup, no read identity (and the tripwire trigger is drift)
    with connect(target) as c:
        assert _flip_attempts(c) == 0
        assert c.execute("SELECT value FROM public.dot_config WHERE key = %s", (key,)).fetchone() == ("false",)
        opens = c.execute("SELECT count(*) FROM public.iu_gate_transition WHERE gate_key = %s AND action = 'open'",
                          (key,)).fetchone()
        assert opens == (0,)
        assert c.execute("SELECT class FROM public.iu_gate_class WHERE gate_key = %s", (key,)).fetchone() == (
            "never_flip",)
        # negative control: the tripwire sees a flip even when it is rolled back
        c.execute("BEGIN")
        c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = %s", (key,))
        c.execute("ROLLBACK")
        assert _flip_attempts(c) == 1


def test_the_hijack_probe_catches_a_vulnerable_definer(conn) -> None:
    """Negative control: an unpinned, unqualified SECURITY DEFINER function is fooled."""
    conn.execute("CREATE FUNCTION public.fn_vulnerable_probe() RETURNS text LANGUAGE sql SECURITY DEFINER"
                 " AS $$ SELECT value FROM dot_config WHERE key = 'iu_core.composer_enabled' $$")
    sql = "SELECT public.fn_vulnerable_probe()"
    assert _probe(conn, sql, "", False) == '"false"'
    assert _probe(conn, sql, "", True) == '"true"'
