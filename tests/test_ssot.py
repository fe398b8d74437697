"""Seed 004's SSOT check and 034's idempotency, against a real server.

- `db verify` compares the registry's governed commands with the live catalog,
  row for row, and re-runs the real catalog seed INSERTs of 280 and 034 (parsed
  out of their files) inside a rolled-back transaction, proving INSERT 0 0.
- 034 re-applied is a no-op: its rows present with the registered values count
  as done; other values, or half of them, are still refused.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from iu_core.framework import migrate
from iu_core.framework.fingerprint import fingerprint
from iu_core.framework.sqlfiles import expand
from iu_core.pg.server import bin_dir
from iu_core.release.ssot import catalog_seed_insert

from .conftest import PG_MAJOR, ROOT, connect, logins, ok, refused, set_version, snap

AUTO = ("dot_iu_auto_instantiate_from_event", "dot_iu_auto_instantiate_rollback_by_actor")


def psql_file(target, rel):
    """What a DBA runs by hand (docs/sql-conventions.md), with the wheel's psql."""
    return subprocess.run(
        [str(bin_dir(PG_MAJOR) / "psql"), "-X", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(ROOT / rel), target.libpq],
        capture_output=True, text=True, timeout=60,
    )


# --------------------------------------------------------------------------- db verify


def test_verify_passes_at_head_with_insert_0_0_per_file(new_db, run_cli):
    target = new_db("gate_protocol")
    before = snap(target)
    res = run_cli(target, "db", "verify")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "SSOT PASS" in out
    assert "registry ↔ catalog: 30 governed command(s), 30 catalog row(s), 0 difference(s)" in out
    assert "migrations/sql/280.sql seed INSERT re-run (rolled back): INSERT 0 0" in out
    assert "migrations/sql/034.sql seed INSERT re-run (rolled back): INSERT 0 0" in out
    data = json.loads(ok(run_cli(target, "--json", "db", "verify")).stdout)
    assert data["ok"] is True
    assert [(r["file"], r["tag"]) for r in data["ssot"]["seed_reruns"]] == [
        ("migrations/sql/280.sql", "INSERT 0 0"), ("migrations/sql/034.sql", "INSERT 0 0")]
    assert snap(target) == before


def test_verify_before_034_reruns_only_280(new_db, run_cli):
    target = new_db("033")
    data = json.loads(ok(run_cli(target, "--json", "db", "verify")).stdout)
    assert data["ok"] is True
    assert [r["revision"] for r in data["ssot"]["seed_reruns"]] == ["280"]
    assert data["ssot"]["registry_rows"] == 24


def test_a_catalog_row_altered_by_hand_exits_4_naming_the_row(new_db, run_cli):
    target = new_db("gate_protocol")
    with connect(target) as c:
        c.execute("UPDATE public.dot_iu_command_catalog SET mutating = false, category = 'piece'"
                  " WHERE command_name = 'dot_iu_add_piece'")
    res = run_cli(target, "db", "verify")
    assert res.exit_code == 4, res.output
    assert "SSOT FAIL" in res.stdout
    line = "catalog row dot_iu_add_piece: category registry 'collection', catalog 'piece'; mutating registry True, catalog False"
    assert line in res.stdout and line in res.stderr
    # ON CONFLICT DO NOTHING cannot see values: the re-runs still answer INSERT 0 0
    assert "280.sql seed INSERT re-run (rolled back): INSERT 0 0" in res.stdout


def test_a_missing_row_fails_both_halves_and_the_rerun_persists_nothing(new_db, run_cli):
    target = new_db("gate_protocol")
    with connect(target) as c:
        c.execute("DELETE FROM public.dot_iu_command_catalog WHERE command_name = 'dot_iu_route_dead_letter_open'")
        c.execute("INSERT INTO public.dot_iu_command_catalog (command_name, category, mutating, reversible,"
                  " target_functions) VALUES ('dot_iu_rogue', 'read', false, true, ARRAY['fn_iu_observe'])")
    before = snap(target)
    res = run_cli(target, "--json", "db", "verify")
    assert res.exit_code == 4
    ssot = json.loads(res.stdout)["ssot"]
    assert {(d["command"], d["problem"]) for d in ssot["differences"]} == {
        ("dot_iu_route_dead_letter_open", "missing"), ("dot_iu_rogue", "extra")}
    reruns = {r["revision"]: r for r in ssot["seed_reruns"]}
    assert reruns["280"]["tag"] == "INSERT 0 1" and reruns["280"]["would_insert"] == ["dot_iu_route_dead_letter_open"]
    assert reruns["034"]["tag"] == "INSERT 0 0"
    assert "lacks row(s) the file seeds: dot_iu_route_dead_letter_open" in res.stderr
    assert snap(target) == before  # the re-run was rolled back


def test_a_role_that_cannot_insert_cannot_prove_insert_0_0(new_db, run_cli):
    target = new_db("gate_protocol")
    with connect(target) as c, logins(c) as login:
        role, _ = login("none")
        c.execute(f'GRANT USAGE ON SCHEMA iucore TO "{role}"')
        c.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA iucore TO "{role}"')
        c.execute(f'GRANT SELECT ON public.dot_iu_command_catalog TO "{role}"')
        ro = type(target).of(**{**target.params, "user": role})
        res = run_cli(ro, "db", "verify")
        assert res.exit_code == 4, res.output
        assert "could not prove INSERT 0 0: permission denied" in res.stderr


def test_the_rerun_statements_are_the_files_own():
    for rev, rows in (("280", 24), ("034", 2)):
        sql = catalog_seed_insert(ROOT / "migrations" / "sql" / f"{rev}.sql")
        assert sql.startswith("INSERT INTO public.dot_iu_command_catalog")
        assert sql.rstrip(";").endswith("ON CONFLICT (command_name) DO NOTHING")
        assert sql.count("ARRAY['fn_") == rows
        # the file's own text as psql runs it: 280's seed is `\ir`-included (written once)
        assert sql in expand(ROOT / "migrations" / "sql" / f"{rev}.sql").text


# --------------------------------------------------------------------------- 034 re-applied


def test_034_rerun_by_hand_at_head_is_insert_0_0_and_exit_0(new_db):
    target = new_db("gate_protocol")
    before = snap(target)
    proc = psql_file(target, "migrations/sql/034.sql")
    assert proc.returncode == 0, proc.stderr
    assert "INSERT 0 0" in proc.stdout.splitlines()
    assert "already applied; this run is a no-op (INSERT 0 0)" in proc.stderr
    after = snap(target)
    assert fingerprint(after) == fingerprint(before) and after == before


def test_034_reapplied_through_iucore_counts_as_done(new_db):
    target = new_db("034")
    set_version(target, "033")  # the bookkeeping lost, the rows in place
    lines: list[str] = []
    res = migrate.upgrade(target, "034", sink=lines.append)
    assert [r["revision"] for r in res.revisions] == ["034"] and res.to_heads == ["034"]
    assert "INSERT 0 0" in lines
    with connect(target) as c:
        assert c.execute("SELECT count(*) FROM public.dot_iu_command_catalog").fetchone() == (26,)


@pytest.mark.parametrize("change,needle", [
    ("UPDATE public.dot_iu_command_catalog SET reversible = false"
     " WHERE command_name = 'dot_iu_auto_instantiate_from_event'",
     "values other than 034 registers: dot_iu_auto_instantiate_from_event (category collection, mutating t, "
     "reversible f"),
    ("UPDATE public.dot_iu_command_catalog SET target_functions = ARRAY['fn_iu_retire']"
     " WHERE command_name = 'dot_iu_auto_instantiate_rollback_by_actor'",
     "dot_iu_auto_instantiate_rollback_by_actor (category lifecycle, mutating t, reversible t, "
     "target_functions {fn_iu_retire})"),
    ("DELETE FROM public.dot_iu_command_catalog WHERE command_name = 'dot_iu_auto_instantiate_from_event'",
     "only dot_iu_auto_instantiate_rollback_by_actor of 034's two catalog rows is present"),
    ("DELETE FROM public.dot_iu_command_catalog WHERE command_name = 'dot_iu_healthcheck'",
     "expected at least 26 — rows of 280 are missing"),
])
def test_034_rerun_over_other_values_is_still_refused(new_db, change, needle):
    target = new_db("034")
    with connect(target) as c:
        c.execute(change)
    set_version(target, "033")
    before = snap(target)
    assert needle in refused(migrate.upgrade, target, "034")
    # and by hand: psql stops at the preflight, nothing changed
    proc = psql_file(target, "migrations/sql/034.sql")
    assert proc.returncode == 3 and needle in proc.stderr
    assert snap(target) == before


def test_034_fresh_apply_still_needs_the_033_catalog(new_db):
    target = new_db("033")
    with connect(target) as c:
        c.execute("DELETE FROM public.dot_iu_command_catalog WHERE command_name = 'dot_iu_healthcheck'")
    assert "has 23 row(s), expected the 24 of 280" in refused(migrate.upgrade, target, "034")
