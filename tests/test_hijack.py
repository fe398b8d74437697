"""A role that may CREATE in public (Directus's own, DESIGN §7a) runs nothing inside IU Core.

PostgreSQL picks an exact argument match wherever it sits on the search_path,
and a function found by name in a schema anyone may create in can be out-matched
by an overload planted beside it. From revision least_privilege on, every IU
Core function searches `pg_catalog, pg_temp` only and names every IU Core object
schema-qualified; the dispatcher runs only a target its own owner owns. Here a
real LOGIN role holding USAGE and CREATE on public — not PUBLIC: one named role,
as in production — plants look-alikes: better matches for built-ins (the
reviewer's finding 1), and overloads of IU Core's own functions for every
argument an untyped literal could reach. Every planted body bumps a sequence of
its own, which no rollback undoes, so a look-alike that ran is seen even when
the call that ran it was undone.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import psycopg
import pytest

from iu_core.config import RunOptions
from iu_core.domain.registry import COMPOSER, OPERATOR_RUNTIME
from iu_core.framework import layout, migrate

from .conftest import ROOT, connect, logins

STRUCTURE_OPS = "iu_core.structure_ops_enabled"
THREE_AXIS = "iu_core.three_axis_auto_refresh_enabled"
PINNED = ["search_path=pg_catalog, pg_temp"]


class Tripwires:
    """Look-alikes planted by one role, each bumping its own sequence when it runs."""

    def __init__(self, planter: psycopg.Connection[Any], owner: psycopg.Connection[Any]) -> None:
        self.planter, self.owner = planter, owner
        self.shapes: dict[str, str] = {}  # sequence → what was planted

    def wire(self, shape: str) -> str:
        seq = f"public.hj_trip_{len(self.shapes)}"
        self.planter.execute(f"CREATE SEQUENCE {seq}")
        self.planter.execute(f"GRANT USAGE, SELECT ON SEQUENCE {seq} TO PUBLIC")
        self.shapes[seq] = shape
        return f"PERFORM pg_catalog.nextval('{seq}');"

    def function(self, name: str, args: list[str], returns: str, result: str) -> None:
        """public.<name>(args) returning `result` (an expression over $1…) after the trip."""
        trip = self.wire(f"{name}({', '.join(args)})")
        self.planter.execute(f"CREATE FUNCTION public.{name}({', '.join(args)}) RETURNS {returns}"
                             f" LANGUAGE plpgsql AS $$ BEGIN {trip} RETURN {result}; END $$")
        self.planter.execute(f"GRANT EXECUTE ON FUNCTION public.{name}({', '.join(args)}) TO PUBLIC")

    def operator(self, op: str, left: str, right: str, returns: str, result: str) -> None:
        fn = f"hj_op_{len(self.shapes)}"
        trip = self.wire(f"OPERATOR {op} ({left}, {right})")
        self.planter.execute(f"CREATE FUNCTION public.{fn}(a {left}, b {right}) RETURNS {returns}"
                             f" LANGUAGE plpgsql AS $$ BEGIN {trip} RETURN {result}; END $$")
        self.planter.execute(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right},"
                             f" FUNCTION = public.{fn})")

    def tripped(self) -> list[str]:
        """What ran, read as the owner: a sequence never called has no last_value."""
        return [self.shapes[f"public.{r[0]}"] for r in self.owner.execute(
            "SELECT sequencename FROM pg_catalog.pg_sequences"
            " WHERE schemaname = 'public' AND sequencename LIKE 'hj\\_trip\\_%%' AND last_value IS NOT NULL"
            " ORDER BY sequencename")]


def plant_builtin_lookalikes(t: Tripwires) -> None:
    """The reviewer's overloads: each an exact match where pg_catalog's is polymorphic or variadic,
    so PostgreSQL would choose it from any path that holds public."""
    t.function("cardinality", ["text[]"], "integer", "pg_catalog.cardinality($1)")
    t.function("array_to_string", ["text[]", "text"], "text", "pg_catalog.array_to_string($1, $2)")
    t.function("array_position", ["text[]", "text"], "integer", "pg_catalog.array_position($1, $2)")
    t.function("format", ["text", "text"], "text", "pg_catalog.format($1, $2)")
    t.function("format", ["text", "integer", "regtype"], "text", "pg_catalog.format($1, $2, $3)")
    t.function("format", ["text", "name", "name", "text"], "text", "pg_catalog.format($1, $2, $3, $4)")
    t.function("jsonb_build_object", ["text", "text"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)")
    t.function("to_jsonb", ["text[]"], "jsonb", "pg_catalog.to_jsonb($1)")
    t.operator("||", "text[]", "text", "text[]", "pg_catalog.array_append(a, b)")
    t.operator("||", "text[]", "text[]", "text[]", "pg_catalog.array_cat(a, b)")
    t.operator("=", "text", "uuid", "boolean", "a OPERATOR(pg_catalog.=) b::text")
    t.operator("=", "uuid", "text", "boolean", "a::text OPERATOR(pg_catalog.=) b")


def dispatch(c: psycopg.Connection[Any], command: str, mode: str, args: list[Any], actor: str = "hijack") -> dict:
    row = c.execute("SELECT public.fn_dot_iu_execute(%s::text, %s::text, %s::jsonb, %s::text)",
                    (command, mode, json.dumps(args), actor)).fetchone()
    assert row is not None
    return dict(row[0])


def run_the_governed_path(op: psycopg.Connection[Any], tag: str) -> dict[str, str]:
    """The operator through the dispatcher: the gate functions, the logger (every call), a composer
    mutator and its events, refusals, a plan with a conditional gate, reads, the route worker."""
    seen: dict[str, str] = {}

    def do(step: str, command: str, mode: str, args: list[Any]) -> dict:
        ans = dispatch(op, command, mode, args)
        seen[step] = str(ans["status"]) + ("/" + ans["reason"] if ans.get("reason") else "")
        return ans

    for gate in (OPERATOR_RUNTIME, COMPOSER):
        do(f"open {gate}", "dot_iu_gate_open", "apply", [gate, str(uuid.uuid4()), "hijack test", "lead", 600])
    pieces = [do(f"clone {n}", "dot_iu_clone_piece", "apply", [f"{tag}/p{n}", "piece", f"P{n}", "op"])
              ["answer"]["iu_id"] for n in (1, 2)]
    do("compose", "dot_iu_create_file_from_pieces", "apply", [f"{tag}/file", "file", "F", pieces, "op"])
    do("verify a mutator", "dot_iu_clone_piece", "verify", [f"{tag}/x", "piece", "X", "op"])
    do("bad args", "dot_iu_clone_piece", "apply", [{"o": 1}, "piece", "X", "op"])
    do("plan with a conditional gate", "dot_iu_auto_instantiate_rollback_by_actor", "plan", ["op", False])
    do("plan a shut gate", "dot_iu_retire_piece", "plan", [pieces[0], "r", "op"])
    do("healthcheck", "dot_iu_healthcheck", "verify", [])
    do("gate verify", "dot_iu_gate_verify_closed", "verify", [None])
    do("worker", "dot_iu_route_worker_run", "apply", ["iu_outbound_default", 50])
    do("watchdog", "dot_iu_gate_watchdog", "apply", ["lead"])
    for gate in (COMPOSER, OPERATOR_RUNTIME):
        do(f"close {gate}", "dot_iu_gate_close", "apply", [gate, "done", "lead"])
    return seen


GOVERNED_PATH_ANSWERS = {
    f"open {OPERATOR_RUNTIME}": "applied", f"open {COMPOSER}": "applied",
    "clone 1": "applied", "clone 2": "applied", "compose": "applied",
    "verify a mutator": "refused/verify_mutating", "bad args": "refused/invalid_args",
    "plan with a conditional gate": "planned", "plan a shut gate": "planned",
    "healthcheck": "verified", "gate verify": "verified", "worker": "applied", "watchdog": "applied",
    f"close {COMPOSER}": "applied", f"close {OPERATOR_RUNTIME}": "applied",
}


# ---------------------------------------------------------------- the path every function searches
def iu_core_functions(conn: psycopg.Connection[Any]) -> dict[str, tuple[list[str] | None, bool]]:
    return {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig, p.prosecdef FROM pg_catalog.pg_proc p"
        " WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)")}


def test_every_iu_core_function_searches_pg_catalog_then_pg_temp_only(conn) -> None:
    functions = iu_core_functions(conn)
    declared = {f.replace(" ", "").replace("public.", "") for f in migrate_declared_functions()}
    assert {sig.replace(" ", "") for sig in functions} == declared  # every function here is the chain's
    assert {sig: config for sig, (config, _) in functions.items() if config != PINNED} == {}
    assert sum(definer for _, definer in functions.values()) >= 7  # the definers are among them


def migrate_declared_functions() -> set[str]:
    from iu_core.release.inventory import declared_delta

    out: set[str] = set()
    for rev in layout.script_directory(ROOT).walk_revisions():
        adds, removes = declared_delta(rev.module)
        out |= set(adds.get("function", [])) - set(removes.get("function", []))
    return out


def test_the_rollback_restores_the_path_on_exactly_the_functions_the_upgrade_pinned() -> None:
    """search_path_pin.sql and search_path_restore.sql: one ALTER per function, the same functions
    in the same order; pinned to pg_catalog, pg_temp and back to the public, pg_temp of their
    revisions. Together with the ones least_privilege re-creates, every function of the chain."""
    from pglast import parse_sql

    def alters(name: str) -> list[tuple[str, list[str]]]:
        out = []
        text = (ROOT / "migrations" / "sql" / "functions" / "least_privilege" / name).read_text()
        for raw in parse_sql(text):
            stmt = raw.stmt
            assert type(stmt).__name__ == "AlterFunctionStmt", stmt
            [action] = stmt.actions
            assert action.defname == "set" and action.arg.name == "search_path"
            fn = stmt.func
            sig = ".".join(n.sval for n in fn.objname) + "(" + ",".join(
                ".".join(n.sval for n in a.names if n.sval != "pg_catalog") + ("[]" if a.arrayBounds else "")
                for a in fn.objargs or ()) + ")"
            out.append((sig, [v.val.sval for v in action.arg.args]))
        return out

    pin, restore = alters("search_path_pin.sql"), alters("search_path_restore.sql")
    assert [s for s, _ in pin] == [s for s, _ in restore] and len(pin) == len({s for s, _ in pin}) == 28
    assert {tuple(p) for _, p in pin} == {("pg_catalog", "pg_temp")}
    assert {tuple(p) for _, p in restore} == {("public", "pg_temp")}
    recreated = {f"public.{f.stem}" for f in (ROOT / "migrations" / "sql" / "functions" / "least_privilege").glob("fn_*.sql")}
    assert len(recreated) == 9
    declared = {f.replace(" ", "").split("(")[0] for f in migrate_declared_functions()}
    assert {s.split("(")[0] for s, _ in pin} | recreated == declared


# ---------------------------------------------------------------- bodies name IU Core objects qualified
_TOKEN = re.compile(r"""(?P<comment>--[^\n]*|/\*.*?\*/)|(?P<literal>[Ee]?'(?:[^']|'')*')|(?P<quoted>"(?:[^"]|"")*")"""
                    r"""|(?P<dollar>\$[A-Za-z_0-9]*\$)|(?P<word>[A-Za-z_][A-Za-z_0-9$]*)|(?P<dot>\.)|(?P<space>\s+)|(?P<other>.)""",
                    re.S)
_SQL_IN_TEXT = r"(?:from|join|into|update|table|only|execute|call|perform|select)\s+(?:only\s+)?"


def unqualified_references(name: str, body: str, objects: set[str]) -> list[str]:
    """Every place a function body names an IU Core relation, view, row type or function without
    its schema — where the search_path would decide. A name right after a '.' is qualified; the
    function's own name before a '.' qualifies a parameter (fn.route_code). In a string literal
    (text for EXECUTE) the same name after a SQL keyword or before '(' counts too."""
    found: list[str] = []
    prev = ""
    toks = [m for m in _TOKEN.finditer(body) if m.lastgroup not in ("comment", "space")]
    for i, m in enumerate(toks):
        kind, text = m.lastgroup, m.group()
        if kind == "word" or kind == "quoted":
            word = text.strip('"') if kind == "quoted" else text.lower()
            nxt = toks[i + 1].group() if i + 1 < len(toks) else ""
            if word in objects and prev != "." and not (word == name and nxt == "."):
                found.append(f"{word} (line {body.count(chr(10), 0, m.start()) + 1})")
        elif kind == "literal":
            for obj in objects:
                if re.search(rf"(?<![.\w])(?:{_SQL_IN_TEXT}{obj}\b|{obj}\s*\()", text, re.I):
                    found.append(f"{obj} in {text[:60]}")
        prev = text
    return found


def test_no_function_body_names_an_iu_core_object_unqualified(conn) -> None:
    objects = {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c"
        " WHERE c.relnamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)"
        "   AND c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')"
        " UNION SELECT p.proname FROM pg_catalog.pg_proc p"
        " WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)"
        " UNION SELECT t.typname FROM pg_catalog.pg_type t"
        " WHERE t.typnamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)"
        "   AND t.typtype IN ('c', 'd', 'e', 'r', 'm') AND t.typrelid = 0")}
    assert {"dot_config", "information_unit", "review_decision", "fn_iu_gate_state"} <= objects
    bodies = conn.execute(
        "SELECT p.proname, p.prosrc FROM pg_catalog.pg_proc p"
        " WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)").fetchall()
    assert len(bodies) >= 37
    assert {name: refs for name, src in bodies if (refs := unqualified_references(name, src, objects))} == {}


@pytest.mark.parametrize("body", [
    "SELECT value FROM dot_config WHERE key = 'x'",
    "BEGIN PERFORM fn_iu_gate_state('x'); END",
    "DECLARE v information_unit%ROWTYPE; BEGIN RETURN; END",
    "DECLARE v text := review_decision.status; BEGIN RETURN; END",
    "BEGIN EXECUTE 'DELETE FROM iu_route_attempt'; END",
    "BEGIN EXECUTE format('SELECT %s', 'fn_iu_observe(''x'', 1)'); END",
])
def test_the_body_scan_sees_an_unqualified_reference(body: str) -> None:
    objects = {"dot_config", "fn_iu_gate_state", "information_unit", "review_decision", "iu_route_attempt",
               "fn_iu_observe"}
    assert unqualified_references("fn_x", body, objects) != []
    qualified = re.sub(r"(?<![.\w])(dot_config|fn_iu_gate_state|information_unit|review_decision|"
                       r"iu_route_attempt|fn_iu_observe)\b", r"public.\1", body)
    assert unqualified_references("fn_x", qualified, objects) == []


# ---------------------------------------------------------------- finding 1: look-alikes of built-ins
def test_lookalikes_of_builtins_planted_in_public_run_nowhere(conn, login) -> None:
    _, creator = login("create_on_public")
    _, op = login("op")
    trips = Tripwires(creator, conn)
    plant_builtin_lookalikes(trips)
    seen = run_the_governed_path(op, "hj-builtin")
    assert seen == GOVERNED_PATH_ANSWERS
    # the gate functions and the logger called directly by their owner, the refusals of each too
    conn.execute("SELECT public.fn_iu_gate_open('iu_core.delivery_enabled', gen_random_uuid(), 'x', 'lead', 60)")
    conn.execute("SELECT public.fn_iu_gate_watchdog('lead'), public.fn_iu_gate_verify_closed(NULL::text),"
                 " public.fn_iu_healthcheck()")
    conn.execute("SELECT public.fn_iu_gate_close('iu_core.delivery_enabled', 'x', 'lead')")
    for bad in ("SELECT public.fn_iu_gate_open('iu_core.vector_sync_enabled', gen_random_uuid(), 'x', 'l', 60)",
                "SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,"
                " md5('x'), '{\"my.gate\": \"open\"}'::jsonb, '{}'::jsonb, 'x')"):
        with pytest.raises(psycopg.Error):
            conn.execute(bad)
    assert trips.tripped() == []
    # The control: the same look-alikes ARE chosen by anything whose path holds public — what every
    # IU Core function searched before (search_path = public, pg_temp).
    conn.execute("CREATE FUNCTION public.fn_hj_old_style(a text[]) RETURNS integer LANGUAGE plpgsql"
                 " SECURITY DEFINER SET search_path = public, pg_temp AS $$ BEGIN RETURN cardinality(a); END $$")
    assert conn.execute("SELECT public.fn_hj_old_style(ARRAY['a', 'b'])").fetchone() == (2,)
    assert trips.tripped() == ["cardinality(text[])"]


# ---------------------------------------------------------------- overloads of IU Core's own functions
def plant_iu_core_overloads(t: Tripwires, owner: psycopg.Connection[Any]) -> int:
    """For every IU Core function and every argument that is not text: the same function with
    text there. An untyped literal ('{}', NULL) passed at that position would prefer it (the
    string category wins for an unknown), and it would run with the caller's rights."""
    n = 0
    for name, args, returns in owner.execute(
            "SELECT p.proname, ARRAY(SELECT format_type(u.t, NULL) FROM unnest(p.proargtypes)"
            "                        WITH ORDINALITY AS u (t, o) ORDER BY u.o),"
            "       format_type(p.prorettype, NULL)"
            "  FROM pg_catalog.pg_proc p"
            " WHERE p.pronamespace = 'public'::regnamespace AND p.prorettype <> 'trigger'::regtype"
            " ORDER BY 1").fetchall():
        for i, a in enumerate(args):
            if a != "text":
                variant = [*args[:i], "text", *args[i + 1:]]
                t.function(name, variant, returns, "NULL")
                n += 1
    return n


def test_overloads_of_iu_core_functions_planted_in_public_run_nowhere(conn, login) -> None:
    _, creator = login("create_on_public")
    _, op = login("op")
    trips = Tripwires(creator, conn)
    assert plant_iu_core_overloads(trips, conn) >= 40
    tag = "hj-own"

    def call(sql: str, *params: Any) -> Any:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    # The dispatcher's refusals log with literals of their own (fn_dot_iu_command_log is overloaded);
    # its targets with overloads beside them are refused, never run (below). fn_iu_create has only
    # text arguments: no overload, so the clone goes through.
    for gate in (OPERATOR_RUNTIME, COMPOSER, STRUCTURE_OPS, THREE_AXIS):
        assert call("SELECT public.fn_iu_gate_open(%s::text, %s::uuid, 'x'::text, 'lead'::text, 600::integer)"
                    " ->> 'status'", gate, str(uuid.uuid4())) == "opened"
    assert dispatch(op, "dot_iu_clone_piece", "apply", [f"{tag}/p0", "piece", "P0", "op"])["status"] == "applied"
    assert dispatch(op, "dot_iu_clone_piece", "verify", [])["reason"] == "verify_mutating"
    assert dispatch(op, "dot_iu_clone_piece", "apply", [[1], "piece", "T", "op"])["reason"] == "invalid_args"
    unresolvable = dispatch(op, "dot_iu_create_file_from_pieces", "apply", [f"{tag}/f", "file", "F", [], "op"])
    assert (unresolvable["status"], unresolvable["reason"]) == ("failed", "target_unresolvable")
    # Every mutator and reader as its owner, with exactly typed arguments: what runs inside them
    # resolves their calls to one another.
    ids = [call("SELECT (public.fn_iu_create(%s::text, 'piece'::text, %s::text, 'lead'::text) ->> 'iu_id')::uuid",
                f"{tag}/p{n}", f"P{n}") for n in range(1, 6)]
    composed = call("SELECT public.fn_iu_compose(%s::text, 'file'::text, 'F'::text, %s::uuid[], 'lead'::text,"
                    " %s::text[])", f"{tag}/file", ids[:2], ["a", "b"])
    assert composed["status"] == "composed", composed
    coll = composed["collection_id"]
    assert call("SELECT public.fn_iu_collection_add_piece(%s::uuid, %s::uuid, 'lead'::text, 1::integer, 'c'::text)"
                " ->> 'status'", coll, ids[2]) != "invalid_input"
    call("SELECT public.fn_iu_collection_reorder_piece(%s::uuid, %s::uuid, 3::integer, 'lead'::text)", coll, ids[2])
    call("SELECT public.fn_iu_collection_remove_piece(%s::uuid, %s::uuid, 'lead'::text)", coll, ids[2])
    call("SELECT public.fn_iu_collection_checkpoint(%s::uuid, 'lead'::text)", coll)
    call("SELECT public.fn_iu_collection_render(%s::uuid)", coll)
    call("SELECT public.fn_iu_workflow_from_steps(%s::text, 'W'::text, %s::jsonb, 'lead'::text)", f"{tag}/wf",
         json.dumps([{"address": f"{tag}/s1", "title": "S1"}, {"address": f"{tag}/s2", "title": "S2"}]))
    call("SELECT public.fn_iu_refresh_metadata_axes(%s::uuid, 'lead'::text)", ids[3])
    call("SELECT public.fn_iu_piece_soft_delete(%s::uuid, 'r'::text, 'lead'::text)", ids[3])
    call("SELECT public.fn_iu_piece_restore(%s::uuid, 'lead'::text)", ids[3])
    call("SELECT public.fn_iu_retire(%s::uuid, 'r'::text, 'lead'::text)", ids[4])
    call("SELECT public.fn_iu_piece_split(%s::uuid, %s::jsonb, %s::uuid, 'lead'::text, true)", ids[3],
         json.dumps([{"address": f"{tag}/a", "title": "A"}, {"address": f"{tag}/b", "title": "B"}]),
         str(uuid.uuid4()))
    call("SELECT public.fn_iu_piece_merge(%s::uuid[], %s::text, %s::uuid, 'lead'::text, true)", ids[:2],
         f"{tag}/m", str(uuid.uuid4()))
    call("SELECT public.fn_iu_piece_emit_event('iu_retired'::text, %s::uuid, '{}'::jsonb, 'lead'::text)", ids[4])
    call("SELECT public.fn_iu_route_worker_run('iu_outbound_default'::text, 50::integer)")
    call("SELECT public.fn_iu_auto_instantiate_rollback_by_actor('lead'::text, true)")
    call("SELECT public.fn_iu_observe('collection_health'::text, 5::integer)")
    call("SELECT public.fn_iu_healthcheck()")
    call("SELECT public.fn_iu_gate_watchdog('lead'::text)")
    for gate in (OPERATOR_RUNTIME, COMPOSER, STRUCTURE_OPS, THREE_AXIS):
        call("SELECT public.fn_iu_gate_close(%s::text, 'x'::text, 'lead'::text)", gate)
    assert trips.tripped() == []
    # The control: an untyped literal where the function takes jsonb picks the text overload —
    # the shape the dispatcher's own refusal log had ('{}' for the gate snapshot).
    conn.execute("SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified',"
                 " false, md5('x'), '{}', '{}'::jsonb, 'x')")
    assert trips.tripped() == ["fn_dot_iu_command_log(text, text, text, text, boolean, text, text, jsonb, text)"]


# ---------------------------------------------------------------- the dispatcher's target is its owner's
def test_the_dispatcher_refuses_a_target_another_role_created(conn, login) -> None:
    _, creator = login("create_on_public")
    _, op = login("op")
    trips = Tripwires(creator, conn)
    # A command whose target no revision installed (dropped, or not yet created): the name is free.
    conn.execute("INSERT INTO public.dot_iu_command_catalog (command_name, category, mutating, reversible,"
                 " target_functions) VALUES ('dot_iu_hj_probe', 'read', false, true, ARRAY['fn_iu_hj_probe'])")
    absent = dispatch(op, "dot_iu_hj_probe", "verify", [])
    assert (absent["status"], absent["reason"]) == ("failed", "target_unresolvable")
    trips.function("fn_iu_hj_probe", [], "jsonb", "'{\"status\": \"planted\"}'::jsonb")
    before = conn.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone()
    ans = dispatch(op, "dot_iu_hj_probe", "verify", [])
    assert (ans["status"], ans["reason"], ans["answer"], ans["next_action"]) == (
        "refused", "target_untrusted", None, "inspect_catalog")
    assert trips.tripped() == []
    row = conn.execute("SELECT run_status, evidence, session_user_name FROM public.dot_iu_command_run"
                       " WHERE run_id = %s", (ans["run_id"],)).fetchone()
    assert row is not None and row[:2] == ("refused", {"reason": "target_untrusted"})
    assert conn.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone() == (before[0] + 1,)


def test_an_overload_planted_beside_a_target_is_refused_not_run(conn, login) -> None:
    _, creator = login("create_on_public")
    _, op = login("op")
    trips = Tripwires(creator, conn)
    trips.function("fn_iu_create", ["text", "text", "text", "text"], "jsonb", "'{\"status\": \"created\"}'::jsonb")
    conn.execute("SELECT public.fn_iu_gate_open(%s, gen_random_uuid(), 'x', 'lead', 60),"
                 " public.fn_iu_gate_open(%s, gen_random_uuid(), 'x', 'lead', 60)", (OPERATOR_RUNTIME, COMPOSER))
    ans = dispatch(op, "dot_iu_clone_piece", "apply", ["hj/o", "piece", "T", "op"])
    assert (ans["status"], ans["reason"]) == ("failed", "target_unresolvable")
    assert trips.tripped() == []
    assert conn.execute("SELECT count(*) FROM public.information_unit WHERE canonical_address = 'hj/o'"
                        ).fetchone() == (0,)


# ---------------------------------------------------------------- the upgrade names who may CREATE
def test_the_upgrade_names_each_role_that_may_create_in_an_iu_core_schema(new_db) -> None:
    target = new_db("gate_protocol")
    roles = [f"hj_dx_{uuid.uuid4().hex[:8]}", f"hj_cg_{uuid.uuid4().hex[:8]}"]
    with connect(target) as c:
        for r in roles:
            c.execute(f"CREATE ROLE {r} NOLOGIN")
        c.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {roles[0]}")
        c.execute(f"GRANT CREATE ON SCHEMA cutter_governance TO {roles[1]}")
        try:
            migrate.upgrade(target, "least_privilege", project=ROOT, options=RunOptions(actor="pytest"))
            evidence = c.execute("SELECT evidence FROM iucore.migration_log WHERE revision = 'least_privilege'"
                                 " AND outcome = 'applied'").fetchone()
            assert evidence is not None
            [notice] = [n for n in evidence[0]["preflight"]["notices"] if "may CREATE" in n]
            assert f"{roles[1]} on cutter_governance" in notice and f"{roles[0]} on public" in notice
            owner = c.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
                              ).fetchone()
            assert owner is not None and f"{owner[0]} on public" not in notice
        finally:
            for r in roles:
                c.execute(f"DROP OWNED BY {r}")
                c.execute(f"DROP ROLE {r}")


# ---------------------------------------------------------------- the revision's own run
def test_running_least_privilege_runs_no_lookalike_planted_in_public(new_db) -> None:
    """The upgrade and its rollback run in the migration owner's session, where production has
    Directus's role able to CREATE in public: their DO blocks call cardinality, array_to_string,
    format … on text[] and text. Each file searches pg_catalog, pg_temp for its transaction."""
    target = new_db("gate_protocol")
    with connect(target) as owner, logins(owner, "hj") as login:
        _, creator = login("create_on_public")
        trips = Tripwires(creator, owner)
        plant_builtin_lookalikes(trips)
        migrate.upgrade(target, "least_privilege", project=ROOT, options=RunOptions(actor="pytest"))
        assert trips.tripped() == []
        migrate.downgrade(target, "gate_protocol", project=ROOT, options=RunOptions(actor="pytest"))
        assert trips.tripped() == []


def test_no_iucore_session_runs_a_lookalike_planted_in_public(new_db) -> None:
    """Every connection iucore opens searches pg_catalog, pg_temp (iu_core.pg.db.PINNED): the
    whole chain's upgrade, the self-tests and a runtime data script, all run as the owner
    while another role that may CREATE in public has planted exact-type look-alikes of the
    built-ins their DO blocks call, run none of them."""
    from iu_core.framework.selftest import available
    from iu_core.release import datascripts

    target = new_db()
    with connect(target) as owner, logins(owner, "hj") as login:
        _, creator = login("create_on_public")
        trips = Tripwires(creator, owner)
        plant_builtin_lookalikes(trips)
        opts = RunOptions(actor="pytest")
        migrate.upgrade(target, "head", project=ROOT, options=opts)
        assert trips.tripped() == []
        # least_privilege's own self-test plants public.cardinality(text[]) itself (L5)
        names = [n for n in available(ROOT) if n != "least_privilege"]
        results = migrate.selftest(target, names, project=ROOT, options=opts)
        assert [(r.name, r.status, r.reason, r.diff) for r in results if not r.ok] == []
        assert trips.tripped() == []
        datascripts.apply(target, "290", approval_id=str(uuid.uuid4()), project=ROOT, options=opts)
        assert trips.tripped() == []
