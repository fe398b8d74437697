"""Security, checked against a live server at head: roles, search_path hijacking, never-flip."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from typing import Any

import psycopg
import pytest

from iu_core import migrate
from iu_core.registry import COMMANDS
from iu_core.roles import apply, plan_operator, plan_readonly

from .conftest import ROOT

NEVER_FLIP = ("iu_enact.allow_no_review_decision", "iu_core.vector_sync_enabled")
_seq = itertools.count()


def head() -> str:
    return migrate.script_directory(ROOT).get_current_head()


@pytest.fixture
def conn(conn_at) -> psycopg.Connection[Any]:
    return conn_at(head())


@pytest.fixture
def role(conn) -> Any:
    made: list[str] = []

    def make(kind: str) -> str:
        name = f"iu_{kind}_{next(_seq)}_{uuid.uuid4().hex[:6]}"
        conn.execute(f"CREATE ROLE {name} NOLOGIN")
        made.append(name)
        plan = plan_readonly(conn, name) if kind == "ro" else plan_operator(conn, name)
        apply(conn, plan)
        return name

    yield make
    conn.execute("RESET ROLE")
    for name in made:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


def as_role(conn: psycopg.Connection[Any], role: str, sql: str, params: tuple = ()) -> Any:
    """Run one statement as `role` inside a transaction that is always rolled back."""
    conn.execute("BEGIN")
    try:
        conn.execute(f"SET LOCAL ROLE {role}")
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None
    finally:
        conn.execute("ROLLBACK")


def sample_call(fn_sig: str) -> str:
    """`public.fn(a, b)` with a typed NULL for every argument."""
    name, args = fn_sig.split("(", 1)
    types = [t.strip() for t in args.rstrip(")").split(",") if t.strip()]
    return f"SELECT public.{name}({', '.join(f'NULL::{t}' for t in types)})"


def signatures(conn: psycopg.Connection[Any], names: set[str]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT p.proname || '(' || oidvectortypes(p.proargtypes) || ')' FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY(%s) ORDER BY 1", (sorted(names),))]


# ---------------------------------------------------------------- read-only role
def test_readonly_role_reads_the_observability_views_and_nothing_else(conn, role) -> None:
    ro = role("ro")
    views = [r[0] for r in conn.execute(
        "SELECT 'public.' || relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'v'")]
    assert len(views) >= 9
    for v in views:
        as_role(conn, ro, f"SELECT count(*) FROM {v}")  # no error
    mutators = {fn for c in COMMANDS if c.mutating for fn in c.targets} | {"fn_dot_iu_command_log", "fn_iu_emit_event"}
    for sig in signatures(conn, mutators):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(conn, ro, sample_call(sig))
    tables = [r[0] for r in conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('public', 'cutter_governance') AND c.relkind = 'r'")]
    assert len(tables) >= 16
    for t in tables:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(conn, ro, f"DELETE FROM {t}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(conn, ro, f"SELECT 1 FROM {t} LIMIT 1")


# ---------------------------------------------------------------- operator role
def test_operator_calls_governed_functions_but_moves_gates_only_through_the_protocol(conn, role) -> None:
    op = role("op")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(conn, op, "UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.composer_enabled'")
    for table in ("public.iu_gate_transition", "public.dot_iu_command_catalog", "public.dot_iu_command_run",
                  "public.event_type_registry", "public.iu_outbound_route"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(conn, op, f"DELETE FROM {table}")
    conn.execute("BEGIN")
    try:
        conn.execute(f"SET LOCAL ROLE {op}")
        opened = conn.execute("SELECT public.fn_iu_gate_open('iu_core.composer_enabled', %s, 'test', 'op', 60)",
                              (str(uuid.uuid4()),)).fetchone()[0]
        assert opened["status"] == "opened"
        created = conn.execute("SELECT public.fn_iu_create('sec/p1', 'piece', 'P', 'op')").fetchone()[0]
        assert created["status"] == "created"
        verify = conn.execute("SELECT public.fn_iu_gate_verify_closed(NULL)").fetchone()[0]
        assert verify["all_governed_closed"] is False
        closed = conn.execute("SELECT public.fn_iu_gate_close('iu_core.composer_enabled', 'done', 'op')").fetchone()[0]
        assert closed["status"] == "closed"
        # the operator's own ledger rows went through the SECURITY DEFINER logger
        n = conn.execute("SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', "
                         "'verified', false, NULL, '{}', '{}', 'op')").fetchone()[0]
        assert n is not None
    finally:
        conn.execute("ROLLBACK")


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
CREATE FUNCTION evil.fn_iu_gate_is_open(text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text)
  RETURNS uuid LANGUAGE sql AS 'SELECT ''00000000-0000-0000-0000-00000000bad2''::uuid';
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT ''2000-01-01''::timestamptz';
CREATE TEMP TABLE dot_config (key text, value text, description text, updated_at timestamptz);
INSERT INTO dot_config SELECT key, 'true', description, now() FROM public.dot_config;
CREATE TEMP TABLE review_decision (review_decision_id uuid);
INSERT INTO review_decision VALUES ('00000000-0000-0000-0000-00000000bad1');
SET LOCAL search_path = evil, pg_temp, public;
"""

PROBES = [
    "SELECT public.fn_dot_iu_command_log('dot_iu_no_such_command', 'read', 'plan', 'planned', false, NULL, '{}', '{}', 'x')",
    "SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false, NULL, '{}', '{}', 'x') IS NOT NULL",
    "SELECT public.fn_iu_piece_split(%(iu)s, '[{\"address\": \"h/a\", \"title\": \"A\"}, {\"address\": \"h/b\", \"title\": \"B\"}]', '00000000-0000-0000-0000-00000000bad1', 'x', true)",
    "SELECT public.fn_iu_piece_merge(ARRAY[%(iu)s, %(iu)s]::uuid[], 'h/m', '00000000-0000-0000-0000-00000000bad1', 'x', true)",
    "SELECT public.fn_iu_gate_open('iu_enact.allow_no_review_decision', gen_random_uuid(), 'x', 'x', 60)",
    "SELECT public.fn_iu_gate_open('iu_core.routes_master_enabled', gen_random_uuid(), 'x', 'x', 60)",
    "SELECT public.fn_iu_gate_open('iu_core.delivery_enabled', gen_random_uuid(), 'x', 'x', 60) ->> 'status'",
    "SELECT public.fn_iu_gate_close('iu_core.composer_enabled', 'x', 'x') ->> 'status'",
    "SELECT public.fn_iu_gate_watchdog('x') ->> 'closed_count'",
    "SELECT (SELECT value FROM public.dot_config WHERE key = 'iu_core.composer_enabled')",
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


# ---------------------------------------------------------------- never-flip
@pytest.mark.parametrize("key", NEVER_FLIP)
def test_never_flip_gates_cannot_be_opened_by_any_path_in_the_tool(new_db, run_cli, key: str) -> None:
    target = new_db(head())
    approval = str(uuid.uuid4())
    attempts = [
        ["gate", "open", key, "--approval-id", approval, "--ttl", "60", "--reason", "x"],
        ["dot", "apply", "dot_iu_gate_open", f"gate_key={key}", f"approval_id={approval}", "reason=x",
         "ttl_seconds=60"],
        ["dot", "apply", "dot_iu_gate_close", f"gate_key={key}", "reason=x"],  # close is allowed: stays false
        ["db", "preflight"],
    ]
    for argv in attempts:
        run_cli(target, *argv)
    from .conftest import connect

    with connect(target) as c:
        assert c.execute("SELECT value FROM public.dot_config WHERE key = %s", (key,)).fetchone() == ("false",)
        opens = c.execute("SELECT count(*) FROM public.iu_gate_transition WHERE gate_key = %s AND action = 'open'",
                          (key,)).fetchone()
        assert opens == (0,)
    # and no code path in the tool writes dot_config except the rolled-back probe of preflight
    src = (ROOT / "src" / "iu_core")
    writers = [p.name for p in src.glob("*.py") if re.search(r"UPDATE\s+public\.dot_config", p.read_text())]
    assert writers == ["preflight.py"]
    assert key not in (src / "preflight.py").read_text().split("PROBE_GATE")[1].split("\n")[0]


def test_the_hijack_probe_catches_a_vulnerable_definer(conn) -> None:
    """Negative control: an unpinned, unqualified SECURITY DEFINER function is fooled."""
    conn.execute("CREATE FUNCTION public.fn_vulnerable_probe() RETURNS text LANGUAGE sql SECURITY DEFINER"
                 " AS $$ SELECT value FROM dot_config WHERE key = 'iu_core.composer_enabled' $$")
    sql = "SELECT public.fn_vulnerable_probe()"
    assert _probe(conn, sql, "", False) == '"false"'
    assert _probe(conn, sql, "", True) == '"true"'
