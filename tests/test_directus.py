"""The real target (DESIGN §7a): IU Core as sidecar objects in Directus's database.

Directus's tables, sequences, triggers, views, functions and types, and other
schemas, are never drift, never in the fingerprint and never counted; an
IU-Core-named object outside the chain is drift until a DBA acknowledges it.
Everything here is built for real on the session's PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from iu_core.framework.facts import load
from iu_core.framework.fingerprint import diff, fingerprint, snapshot
from iu_core.framework.scope import Scope
from iu_core.release.inventory import CLASSES, expected

from . import directus
from .conftest import ROOT, connect, dbname, head, ok, project_copy, run_preflight, snap
from .directus import GATEWAY_ACK, GATEWAY_GUARD, foreign


def directus_at_head(new_db, run_cli):
    """Directus first (as in production), then the chain applied by iucore."""
    target = new_db()
    directus.build(target)
    res = run_cli(target, "db", "upgrade", "head")
    assert res.exit_code == 0, res.output
    return target


def preflight_inventory(run_cli, target, project: Path = ROOT) -> dict:
    _, rep, _ = run_preflight(run_cli, target, project=project)
    return next(c for c in rep["checks"] if c["check"] == "inventory: no drift")


# ---------------------------------------------------------------- the rule
def test_the_scope_misses_nothing_the_chain_creates(new_db) -> None:
    """On a database holding only the chain, IU Core's scope is every object of its schemas."""
    with connect(new_db(head())) as c:
        scoped = snapshot(c, scope=Scope.of(ROOT))
        everything = snapshot(c, scope=Scope.everything(Scope.of(ROOT).schemas, Scope.of(ROOT).facts))
    assert scoped == everything
    assert sum(len(v) for k, v in scoped.items() if k not in ("schema", "rows")) > 100


def test_the_naming_rule_covers_the_chains_names_but_four() -> None:
    """In the schema shared with Directus, the chain's own names follow the rule; the
    four that do not are IU Core's by declaration (a new one belongs in this list, on purpose)."""
    scope = Scope.of(ROOT)
    iu_named = load(ROOT).named
    shared = {n.split(".", 1)[1].split("(")[0] for (c, n) in scope.declared_by
              if c in ("table", "view", "function") and n.startswith("public.")}
    assert sorted(n for n in shared if not iu_named(n)) == [
        "event_outbox", "event_type_registry", "fn_event_outbox_type_validate", "information_unit"]
    for foreign_name in ("directus_users", "directus_touch_last_access", "articles", "event_log"):
        assert not iu_named(foreign_name)
    for ours_name in ("fn_iu_gateway_write_guard", "v_dot_iu_x", "iu_gate_transition", "trg_iu_x", "dot_config"):
        assert iu_named(ours_name)


def test_the_name_ranges_hold_exactly_the_names_the_rule_allows() -> None:
    """The catalog queries find project-named objects by ranges of the name indexes
    (byte order, as the catalogs' C collation sorts): a name is in a range exactly when the
    naming rule takes it, at every edge of every range."""
    facts = load(ROOT)
    ranges = [(lo.encode(), hi.encode()) for lo, hi in facts.name_ranges()]
    starts = [f"{stem}_" for stem in facts.name_stems]
    starts += [f"{kind}_{stem}_" for kind in facts.kind_prefixes for stem in facts.name_stems]
    names = {n.split(".", 1)[1].split("(")[0] for (_, n) in Scope.of(ROOT).declared_by if "." in n}
    for start in starts:
        names |= {start, start + "x", start + "é", start[:-1], start[:-1] + "`", start[:-1] + "^",
                  start[:-1] + "a", start.upper(), "x" + start, start[:-1] + "__", start[0]}
    for name in sorted(names):
        assert facts.named(name) == any(lo <= name.encode() < hi for lo, hi in ranges), name
    assert len(ranges) == len(starts) == 16


# ---------------------------------------------------------------- Directus is not drift
def test_directus_objects_are_neither_drift_nor_counted(new_db, run_cli) -> None:
    target = directus_at_head(new_db, run_cli)
    res = run_cli(target, "--json", "inventory", "--check")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["drift"] == [] and data["extras"] == []
    # the same counts as a database holding nothing but the chain
    want = {c: len(v) for c, v in expected(ROOT, head()).items()}
    assert {c["class"]: c["present"] for c in data["classes"]} == want
    assert data["present_total"] == data["expected_total"] == sum(want.values())
    check = preflight_inventory(run_cli, target)
    assert check["status"] == "PASS", check
    assert check["data"]["drift"] == []


def test_directus_objects_are_not_in_the_fingerprint(new_db, run_cli) -> None:
    target = directus_at_head(new_db, run_cli)
    clean = new_db(head())
    with connect(target) as c:
        beside_directus = fingerprint(snapshot(c))
    with connect(clean) as c:
        alone = fingerprint(snapshot(c))
    assert beside_directus == alone
    with connect(target) as c:  # Directus keeps working: nothing of it moves the fingerprint
        c.execute("ALTER TABLE public.directus_users ADD COLUMN theme varchar(30)")
        c.execute("CREATE OR REPLACE FUNCTION public.directus_user_count() RETURNS bigint LANGUAGE sql"
                  " STABLE AS 'SELECT count(*) + 0 FROM public.directus_users'")
        c.execute("DROP TRIGGER directus_users_touch ON public.directus_users")
        c.execute("CREATE TABLE analytics.sessions (id int)")
        assert fingerprint(snapshot(c)) == alone
        c.execute("CREATE INDEX iu_collection_title_idx ON public.iu_collection (title)")  # ours: it moves
        assert fingerprint(snapshot(c)) != alone


def test_upgrade_then_downgrade_beside_directus_leaves_directus_untouched(new_db, run_cli) -> None:
    target = new_db()
    directus.build(target)
    neighbour, base = foreign(target), snap(target)
    assert {"table", "view", "function", "trigger", "sequence", "index", "type"} <= set(neighbour)
    rehearsal = run_cli(target, "db", "upgrade", "head", "--rehearse")
    assert rehearsal.exit_code == 0, rehearsal.output
    assert f"catalog fingerprint unchanged: {fingerprint(base)}" in rehearsal.stdout
    assert run_cli(target, "db", "upgrade", "head").exit_code == 0
    assert foreign(target) == neighbour
    down = run_cli(target, "db", "downgrade", "base")
    assert down.exit_code == 0, down.output
    assert foreign(target) == neighbour
    assert snap(target) == base


# ---------------------------------------------------------------- IU-named extras
def test_an_iu_named_extra_beside_directus_is_drift(new_db, run_cli) -> None:
    target = directus_at_head(new_db, run_cli)
    with connect(target) as c:
        c.execute(GATEWAY_GUARD)
        # a trigger on an IU Core table is IU Core's, whatever its name
        c.execute("CREATE TRIGGER audit_everything BEFORE UPDATE ON public.dot_config"
                  " FOR EACH ROW EXECUTE FUNCTION public.fn_iu_gateway_write_guard()")
    res = run_cli(target, "inventory", "--check")
    assert res.exit_code == 4, res.output
    assert ("extra function public.fn_iu_gateway_write_guard() (IU-Core-named, not in the chain, "
            "not acknowledged)") in res.stdout
    assert "extra trigger public.dot_config.audit_everything" in res.stdout
    assert "directus" not in res.stdout and "lookalike" not in res.stdout
    data = json.loads(ok(run_cli(target, "--json", "inventory")).stdout)  # a report: exit 0 without --check
    assert [(e["class"], e["name"], e["acknowledged"]) for e in data["extras"]] == [
        ("function", "public.fn_iu_gateway_write_guard()", False),
        ("trigger", "public.dot_config.audit_everything", False)]
    check = preflight_inventory(run_cli, target)
    assert check["status"] == "FAIL"
    assert "extra function public.fn_iu_gateway_write_guard()" in check["evidence"]


def test_an_acknowledged_extra_is_clean_and_named(new_db, run_cli, tmp_path: Path) -> None:
    target = directus_at_head(new_db, run_cli)
    with connect(target) as c:
        c.execute(GATEWAY_GUARD)
    project = project_copy(tmp_path, GATEWAY_ACK)
    res = run_cli(target, "inventory", "--check", project=project)
    assert res.exit_code == 0, res.output
    assert ("acknowledged extra function public.fn_iu_gateway_write_guard(): pre-existing gateway write "
            "guard from an earlier macro (seed 002 A4) (by dba on call)") in res.stdout
    data = json.loads(ok(run_cli(target, "--json", "inventory", "--check", project=project)).stdout)
    assert data["ok"] is True and data["drift"] == []
    assert data["acknowledged"] == [{
        "class": "function", "name": "public.fn_iu_gateway_write_guard()",
        "reason": "pre-existing gateway write guard from an earlier macro (seed 002 A4)", "by": "dba on call"}]
    check = preflight_inventory(run_cli, target, project)
    assert check["status"] == "PASS"
    assert "acknowledged extra function public.fn_iu_gateway_write_guard()" in check["evidence"]
    # the same file without the object: a note, not drift
    other = new_db(head())
    quiet = run_cli(other, "--json", "inventory", "--check", project=project)
    assert quiet.exit_code == 0
    assert [a["name"] for a in json.loads(quiet.stdout)["stale_acknowledgements"]] == [
        "public.fn_iu_gateway_write_guard()"]


def test_an_acknowledgement_for_another_database_does_not_apply(new_db, run_cli, tmp_path: Path) -> None:
    target = directus_at_head(new_db, run_cli)
    with connect(target) as c:
        c.execute(GATEWAY_GUARD)
    project = project_copy(tmp_path, GATEWAY_ACK + 'database = "directus"\n')
    res = run_cli(target, "inventory", "--check", project=project)
    assert res.exit_code == 4
    assert "extra function public.fn_iu_gateway_write_guard()" in res.stdout
    here = project_copy(tmp_path / "here", GATEWAY_ACK + f'database = "{dbname(target)}"\n')
    assert run_cli(target, "inventory", "--check", project=here).exit_code == 0


@pytest.mark.parametrize(("entry", "needle"), [
    # a pattern is not an acknowledgement
    ('class = "function"\nname = "public.fn_iu_gateway_*()"\nreason = "r"\nby = "b"',
     "patterns are not accepted"),
    # what the chain declares is not an extra
    ('class = "function"\nname = "public.fn_iu_healthcheck()"\nreason = "r"\nby = "b"',
     "is declared by revision substrate"),
    # a Directus object is never reported, so never acknowledged
    ('class = "table"\nname = "public.directus_users"\nreason = "r"\nby = "b"',
     "is not IU-Core-named"),
    # a reason and a name of who acknowledged are required
    ('class = "function"\nname = "public.fn_iu_gateway_write_guard()"\nby = "b"',
     "`reason` is required"),
    ('class = "function"\nname = "public.fn_iu_gateway_write_guard"\nreason = "r"\nby = "b"',
     "must be schema.name(argument types)"),
    ('class = "sequence"\nname = "public.iu_seq"\nreason = "r"\nby = "b"',
     "is not an inventory class"),
    ('class = "function"\nname = "public.fn_iu_x()"\nreason = "r"\nby = "b"\nall = true',
     "unknown key(s) ['all']"),
])
def test_a_bad_acknowledgement_file_is_refused_as_bad_input(
        new_db, run_cli, tmp_path: Path, entry: str, needle: str) -> None:
    project = project_copy(tmp_path, "[[extra]]\n" + entry + "\n")
    res = run_cli(new_db(head()), "inventory", "--check", project=project)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "acknowledged.toml [[extra]] #1" in res.stderr


@pytest.mark.parametrize(("field", "value"), [
    ("name_stems", '("iu", "a.b")'),        # a regular expression's wildcard: `axb_t` would be named
    ("kind_prefixes", '("fn", "v%")'),      # a LIKE wildcard
    ("name_stems", '("iu", "Dot")'),        # not in the names' case
])
def test_a_naming_that_is_not_plain_words_is_refused_as_bad_input(
        new_db, run_cli, tmp_path: Path, field: str, value: str) -> None:
    """The naming is read as a regular expression, as LIKE patterns and as ranges of the name
    indexes: a stem or prefix that would mean different names to them is refused, exit 2."""
    project = project_copy(tmp_path)
    facts = project / "migrations" / "project.py"
    text = facts.read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{field}="))
    facts.write_text(text.replace(line, f"    {field}={value},"), encoding="utf-8")
    res = run_cli(new_db(head()), "inventory", "--check", project=project)
    assert res.exit_code == 2, res.output
    assert "name_stems and kind_prefixes must be lower-case letters and digits" in res.stderr
    assert "Traceback" not in res.output


def test_inventory_reads_only_the_iu_schemas_it_is_told(new_db) -> None:
    """Objects in a schema outside the scope are invisible even when IU-named."""
    target = new_db(head())
    with connect(target) as c:
        c.execute("CREATE SCHEMA elsewhere")
        c.execute("CREATE FUNCTION elsewhere.fn_iu_create(text) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    with psycopg.connect(target.libpq, autocommit=True) as c:
        from iu_core.release.inventory import live

        inv = live(c, Scope.of(ROOT))
    assert all(not n.startswith("elsewhere.") for cls in CLASSES for n in inv[cls])


# ---------------------------------------------------------------- every kind, found by the catalogs' indexes
WHOLE_KINDS = """
CREATE TABLE cutter_governance.cg_t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
CREATE TABLE cutter_governance.cg_p (k int) PARTITION BY RANGE (k);
CREATE TABLE cutter_governance.cg_p1 PARTITION OF cutter_governance.cg_p FOR VALUES FROM (0) TO (10);
CREATE VIEW cutter_governance.cg_v AS SELECT 1 AS one;
CREATE MATERIALIZED VIEW cutter_governance.cg_m AS SELECT 1 AS one;
CREATE SEQUENCE cutter_governance.cg_s;
CREATE FUNCTION cutter_governance.cg_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE PROCEDURE cutter_governance.cg_pr() LANGUAGE sql AS 'SELECT 1';
CREATE DOMAIN cutter_governance.cg_d AS int CHECK (VALUE > 0);
CREATE TYPE cutter_governance.cg_e AS ENUM ('a', 'b');
CREATE TYPE cutter_governance.cg_c AS (a int);
CREATE TYPE cutter_governance.cg_r AS RANGE (subtype = int4);
CREATE TABLE public.cg_moved (id serial);
ALTER TABLE public.cg_moved SET SCHEMA cutter_governance;
CREATE FUNCTION public.cg_f_moved() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION public.cg_f_moved() SET SCHEMA cutter_governance;
CREATE TYPE public.cg_e_moved AS ENUM ('a');
ALTER TYPE public.cg_e_moved SET SCHEMA cutter_governance;
"""
NAMED_KINDS = """
CREATE TABLE public.iu_t (id serial PRIMARY KEY);
CREATE VIEW public.v_iu_v AS SELECT 1 AS one;
CREATE MATERIALIZED VIEW public.mv_dot_m AS SELECT 1 AS one;
CREATE SEQUENCE public.seq_iu_s;
CREATE FUNCTION public.fn_dot_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE DOMAIN public.iu_d AS int;
CREATE TYPE public.dot_e AS ENUM ('a');
CREATE TYPE public.iu_r AS RANGE (subtype = int4);
CREATE TABLE public."iu_é" (id int);
CREATE TABLE public."iu_" (id int);
"""
# Names that start like the naming but do not follow it: each sorts beside a named range's edge.
NEAR_MISSES = """
CREATE TABLE public.iu (id int);
CREATE TABLE public.iux_t (id int);
CREATE TABLE public."iu`" (id int);
CREATE TABLE public."IU_upper" (id int);
CREATE TABLE public.xiu_t (id int);
CREATE TABLE public.fnx_iu_t (id int);
CREATE FUNCTION public.fn_iux() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.dot() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TYPE public.dotx AS ENUM ('a');
"""
_WHOLE_TRUTH = """
SELECT CASE WHEN c.relkind IN ('r', 'p') THEN 'table' WHEN 'v' = c.relkind THEN 'view'
            WHEN 'm' = c.relkind THEN 'matview' ELSE 'sequence' END, 'cutter_governance.' || c.relname
  FROM pg_class c WHERE c.relnamespace = 'cutter_governance'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
UNION ALL
SELECT 'function', 'cutter_governance.' || p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'cutter_governance'::regnamespace
UNION ALL
SELECT 'type', 'cutter_governance.' || t.typname FROM pg_type t
 WHERE t.typnamespace = 'cutter_governance'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm', 'c')
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
"""


def test_every_kind_of_object_is_found_through_the_catalog_indexes(new_db) -> None:
    """The scope finds its candidates through indexes (a project schema's objects by their
    dependency on the schema, a project name by ranges of the name indexes), not by reading
    every row: every kind of object PostgreSQL keeps in a schema is still found, set for set
    against a plain read of the catalogs, and a name beside a range's edge is not."""
    target = new_db(head())
    with connect(target) as c:
        for script in (WHOLE_KINDS, NAMED_KINDS, NEAR_MISSES):
            c.execute(script)
        c.execute("SET search_path = pg_catalog, pg_temp")  # the truth's regprocedure qualified, as the snapshot's
        truth = {(k, n) for k, n in c.execute(_WHOLE_TRUTH)}
        found = snapshot(c, scope=Scope.of(ROOT))
    listed = {(k, n) for k, names in found.items() for n in names}
    kinds = ("table", "view", "matview", "sequence", "function", "type")
    assert {(k, n) for k, n in listed if k in kinds and n.startswith("cutter_governance.")} == truth
    assert {("table", "cutter_governance.cg_p1"), ("type", "cutter_governance.cg_r_multirange"),
            ("sequence", "cutter_governance.cg_t_id_seq"), ("sequence", "cutter_governance.cg_s"),
            ("function", "cutter_governance.cutter_governance.cg_pr()"), ("type", "cutter_governance.cg_c"),
            ("table", "cutter_governance.cg_moved"), ("sequence", "cutter_governance.cg_moved_id_seq"),
            ("type", "cutter_governance.cg_e_moved")} <= truth
    named = {("table", "public.iu_t"), ("sequence", "public.iu_t_id_seq"), ("view", "public.v_iu_v"),
             ("matview", "public.mv_dot_m"), ("sequence", "public.seq_iu_s"), ("function", "public.public.fn_dot_f()"),
             ("type", "public.iu_d"), ("type", "public.dot_e"), ("type", "public.iu_r"),
             ("type", "public.iu_r_multirange"), ("table", "public.iu_é"), ("table", "public.iu_")}
    assert named <= listed, sorted(named - listed)
    misses = {"iu", "iux_t", "iu`", "IU_upper", "xiu_t", "fnx_iu_t", "fn_iux()", "dot()", "dotx"}
    assert not {n for _, n in listed if n.rsplit(".", 1)[-1] in misses}


def test_the_fingerprint_holds_every_byte_of_a_definition(new_db) -> None:
    """A change past a definition's 63rd byte changes the fingerprint, and two overloads whose
    names share their first 63 bytes are two objects (a `name`-typed column once cut both)."""
    target = new_db(head())
    with connect(target) as c:
        before = snapshot(c, project=ROOT)
        c.execute("ALTER FUNCTION public.fn_iu_healthcheck() SET work_mem = '1MB'")
        c.execute("ALTER TABLE public.dot_config ALTER COLUMN description SET DEFAULT 'changed'")
        for last in ("uuid", "text"):
            c.execute(f"CREATE FUNCTION public.fn_iu_an_overload_with_a_long_name(a integer, b text, c {last})"
                      " RETURNS int LANGUAGE sql AS 'SELECT 1'")
        after = snapshot(c, project=ROOT)
    assert fingerprint(before) != fingerprint(after)
    long = "function public.public.fn_iu_an_overload_with_a_long_name(integer,text,{})"
    assert diff(before, after) == ["+ " + long.format("text"), "+ " + long.format("uuid"),
                                   "~ function public.public.fn_iu_healthcheck()", "~ table public.dot_config"]
