"""`iucore db preflight`: the 14 mandatory gates, each made to PASS and to FAIL for real.

A real read-only LOGIN role (and one that can write), a real backup, a real
long transaction of another role, a database set read-only, a planted
hardcoded password in a pending file of a test project, a planted object of a
pending revision, an edited applied file, a tampered catalog row. Every run is
recorded as an audit row (revision `preflight`) that `db report` cites.
"""

from __future__ import annotations

from typing import Any

import psycopg

from iu_core.framework import layout
from iu_core.pg.target import Target
from iu_core.release import preflight as pf

from .conftest import ROOT, connect, project_copy, run_preflight

PW = "pl4nted-Secr3t"


def checks(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in rep["checks"]}


# ---------------------------------------------------------------- all 14 PASS, and the record
def test_all_fourteen_gates_pass_with_a_read_only_role_and_a_backup(readonly_role, new_db, run_cli,
                                                                    tmp_path) -> None:
    target = new_db("034")
    ro = readonly_role(target)
    assert run_cli(target, "db", "backup", "--out", str(tmp_path)).exit_code == 0
    code, rep, _ = run_preflight(run_cli, target, "--backup-dir", str(tmp_path), "--read-url", ro.libpq)
    assert code == 0, rep
    assert (rep["ok"], rep["passed"], rep["total"], rep["summary"]) == (True, 14, 14, "14/14 mandatory gates PASS")
    assert [c["check"] for c in rep["checks"]] == list(pf.MANDATORY)
    c = checks(rep)
    dbname = target.params["dbname"]
    read = c[pf.READ]["evidence"]
    assert read.startswith(f"{ro.params['user']} | {dbname} | ") and "PostgreSQL" in read
    assert "UPDATE public.dot_config → refused (42501" in read and "CREATE TABLE public.iucore_read_probe → refused (42501" in read
    assert c[pf.WRITE]["evidence"].startswith(f"IDENTITY | postgres | {dbname} |")
    assert "BEGIN / UPDATE 1 / IN_TX | iu_core.composer_enabled | true / ROLLBACK / AFTER_RB" in c[pf.WRITE]["evidence"]
    with connect(target) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    assert c[pf.SERVER]["evidence"].startswith(f"PostgreSQL {version} (major ") and "accepting writes" in c[pf.SERVER]["evidence"]
    assert "self-tests 7/7 PASSED" in c[pf.SURFACE]["evidence"] and "nothing of gate_protocol, least_privilege" in c[pf.SURFACE]["evidence"]
    assert "INSERT 0 0" in c[pf.SSOT]["evidence"]
    assert "of gate_protocol, least_privilege" in c[pf.HARDCODE]["evidence"]
    assert "migrations/sql/functions/gate_protocol/fn_iu_gate_open.sql" in c[pf.HARDCODE]["data"]["files"]
    assert c[pf.TOOLS]["data"]["pg_restore"]
    # recorded: one audit row, the checklist as its evidence
    with connect(target) as conn:
        rows = conn.execute("SELECT run_id::text, revision, direction, mode, outcome, evidence FROM iucore.migration_log"
                            " WHERE direction = 'check'").fetchall()
    assert [r[1:5] for r in rows] == [("preflight", "check", "real", "passed")]
    assert rows[0][0] == rep["recorded_run_id"] and rows[0][5]["checks"] == rep["checks"]


# ---------------------------------------------------------------- 1 read identity
def test_the_read_identity_fails_closed(readonly_role, new_db, run_cli, databases) -> None:
    target = new_db("substrate")
    _, rep, _ = run_preflight(run_cli, target)
    assert checks(rep)[pf.READ]["status"] == "FAIL" and "give --read-url" in checks(rep)[pf.READ]["evidence"]

    # a "read-only" role that may UPDATE dot_config
    writer = readonly_role(target)
    with connect(target) as c:
        c.execute(f'GRANT UPDATE ON public.dot_config TO "{writer.params["user"]}"')
        config = c.execute("SELECT key, value, updated_at FROM public.dot_config ORDER BY key").fetchall()
    _, rep, _ = run_preflight(run_cli, target, "--read-url", writer.libpq)
    ev = checks(rep)[pf.READ]["evidence"]
    assert checks(rep)[pf.READ]["status"] == "FAIL" and "UPDATE public.dot_config → UPDATE 0 (NOT refused)" in ev
    assert "may write: table public.dot_config" in ev
    with connect(target) as c:  # the probe was rolled back: not even the touch trigger's updated_at moved
        assert c.execute("SELECT key, value, updated_at FROM public.dot_config ORDER BY key").fetchall() == config
        assert c.execute("SELECT to_regclass('public.iucore_read_probe')").fetchone() == (None,)

    # the run's own role, and another database
    _, rep, _ = run_preflight(run_cli, target, "--read-url", target.libpq)
    ev = checks(rep)[pf.READ]["evidence"]
    assert "is a superuser" in ev and "it is the run's own role 'postgres'" in ev
    other = new_db("substrate")
    reader = readonly_role(other)
    _, rep, _ = run_preflight(run_cli, target, "--read-url", reader.libpq)
    assert f"it reaches database {other.params['dbname']!r}" in checks(rep)[pf.READ]["evidence"]

    # one that cannot connect: a FAIL with libpq's reason, no password anywhere
    ghost = Target.of(**{**target.params, "user": "no_such_role_x", "password": PW})
    code, rep, out = run_preflight(run_cli, target, "--read-url", ghost.libpq)
    assert code == 3 and "cannot connect as the read identity" in checks(rep)[pf.READ]["evidence"]
    assert PW not in out
    with connect(target) as c:
        assert all(PW not in r[0] for r in c.execute("SELECT t::text FROM iucore.migration_log t"))
    # a malformed URL is bad input: exit 2, nothing recorded
    res = run_cli(target, "db", "preflight", "--read-url", "postgresql://[oops")
    assert res.exit_code == 2


# ---------------------------------------------------------------- 3 server
def test_a_read_only_server_session_fails_the_server_and_write_gates_and_says_it_was_not_recorded(
        new_db, run_cli, databases) -> None:
    target = new_db("substrate")
    databases.admin.execute(f'ALTER DATABASE "{target.params["dbname"]}" SET default_transaction_read_only = on')
    code, rep, _out = run_preflight(run_cli, target)
    c = checks(rep)
    assert code == 3 and c[pf.SERVER]["status"] == "FAIL" and "this session is read-only" in c[pf.SERVER]["evidence"]
    assert c[pf.WRITE]["status"] == "FAIL"
    assert rep["recorded_run_id"] is None and "read-only transaction" in rep["not_recorded"]
    res = run_cli(target, "db", "preflight")
    assert res.exit_code == 3, res.output
    assert "WARNING: not recorded in the audit" in res.stdout


# ---------------------------------------------------------------- 4 backup
def test_no_backup_dir_fails_the_backup_gate(new_db, run_cli) -> None:
    _, rep, _ = run_preflight(run_cli, new_db("substrate"))
    assert checks(rep)[pf.BACKUP]["status"] == "FAIL" and "no --backup-dir" in checks(rep)[pf.BACKUP]["evidence"]


# ---------------------------------------------------------------- 6 prior surface, 7 inventory
def test_an_object_of_a_pending_revision_fails_the_prior_surface_and_the_inventory(new_db, run_cli) -> None:
    target = new_db("034")
    with connect(target) as c:
        c.execute("CREATE TABLE public.iu_gate_transition (x int)")
    _, rep, _ = run_preflight(run_cli, target)
    c = checks(rep)
    assert c[pf.SURFACE]["status"] == "FAIL"
    assert "object(s) of the pending revisions already present: table public.iu_gate_transition (gate_protocol)" \
        in c[pf.SURFACE]["evidence"]
    assert c[pf.INVENTORY]["status"] == "FAIL" and "public.iu_gate_transition" in c[pf.INVENTORY]["evidence"]


def test_iu_core_objects_without_a_recorded_revision_fail_the_prior_surface(new_db, run_cli) -> None:
    target = new_db()
    _, rep, _ = run_preflight(run_cli, target)
    assert checks(rep)[pf.SURFACE]["status"] == "PASS"  # empty: nothing prior
    with connect(target) as c:
        c.execute("CREATE TABLE public.iu_handmade (x int)")
    _, rep, _ = run_preflight(run_cli, target)
    ev = checks(rep)[pf.SURFACE]["evidence"]
    assert checks(rep)[pf.SURFACE]["status"] == "FAIL" and "iucore db adopt REV" in ev


# ---------------------------------------------------------------- 8 checksums, 9 SSOT
def test_an_edited_applied_file_fails_the_checksums(new_db, run_cli, tmp_path) -> None:
    project = project_copy(tmp_path)
    target = new_db("034")
    rb = project / "rollbacks" / "280.sql"
    rb.write_text(rb.read_text() + "\n-- edited after apply\n")
    _, rep, _ = run_preflight(run_cli, target, project=project)
    c = checks(rep)[pf.CHECKSUMS]
    assert c["status"] == "FAIL" and "rollbacks/280.sql (revision 280) changed since apply" in c["evidence"]


def test_a_catalog_row_that_differs_from_the_registry_fails_the_ssot(new_db, run_cli) -> None:
    target = new_db("034")
    with connect(target) as c:
        c.execute("UPDATE public.dot_iu_command_catalog SET category = 'read'"
                  " WHERE command_name = 'dot_iu_auto_instantiate_from_event'")
    _, rep, _ = run_preflight(run_cli, target)
    c = checks(rep)[pf.SSOT]
    assert c["status"] == "FAIL"
    assert "catalog row dot_iu_auto_instantiate_from_event: category registry 'collection', catalog 'read'" in c["evidence"]


# ---------------------------------------------------------------- 10 no-hardcode, 11 conventions
def test_a_planted_password_in_a_pending_file_fails_and_is_not_repeated(new_db, run_cli, tmp_path) -> None:
    project = project_copy(tmp_path)
    target = new_db("034")
    _, rep, _ = run_preflight(run_cli, target, project=project)
    assert checks(rep)[pf.HARDCODE]["status"] == "PASS"
    pending = project / "migrations" / "sql" / "gate_protocol.sql"
    lines = pending.read_text().splitlines(keepends=True)
    lines.insert(1, f"-- deploy with password = '{PW}'\n")
    pending.write_text("".join(lines))
    include = project / "migrations" / "sql" / "functions" / "gate_protocol" / "fn_iu_gate_close.sql"
    host = ".".join(["10", "20", "30", "40"])
    include.write_text(f"-- copied from {host}\n" + include.read_text())
    code, rep, out = run_preflight(run_cli, target, project=project)
    c = checks(rep)[pf.HARDCODE]
    assert code == 3 and c["status"] == "FAIL"
    assert c["data"]["findings"] == ["migrations/sql/gate_protocol.sql:2: a password literal",
                                     "migrations/sql/functions/gate_protocol/fn_iu_gate_close.sql:1: an IP address"]
    assert PW not in out and host not in out
    with connect(target) as conn:
        assert all(PW not in r[0] for r in conn.execute("SELECT evidence::text FROM iucore.migration_log"))
    # an applied file is not "to apply": the same plant there is the checksum gate's business
    assert all("280" not in f for f in c["data"]["findings"])


def test_a_pending_file_that_breaks_the_conventions_fails(new_db, run_cli, tmp_path) -> None:
    project = project_copy(tmp_path)
    target = new_db("034")
    pending = project / "migrations" / "sql" / "gate_protocol.sql"
    text = pending.read_text()
    pending.write_text(text.replace("-- @body\n", "-- @body\nSET lock_timeout = '1s';\n", 1))
    _, rep, _ = run_preflight(run_cli, target, project=project)
    c = checks(rep)[pf.CONVENTIONS]
    assert c["status"] == "FAIL" and "framework-timeouts" in c["evidence"] and "gate_protocol.sql" in c["evidence"]
    assert all("gate_protocol.sql" in f for f in c["data"]["findings"])


def test_at_head_nothing_is_pending(new_db, run_cli) -> None:

    target = new_db(layout.script_directory(ROOT).get_current_head())
    _, rep, _ = run_preflight(run_cli, target)
    c = checks(rep)
    assert rep["pending"] == []
    assert c[pf.HARDCODE]["status"] == c[pf.CONVENTIONS]["status"] == "PASS"
    assert c[pf.HARDCODE]["evidence"] == "at head: no file to apply"
    assert c[pf.GATES]["status"] == "PASS" and "public.iu_gate_class" in c[pf.GATES]["evidence"]


# ---------------------------------------------------------------- 13 long transactions: fail closed
def test_a_transaction_the_role_cannot_see_fails_the_long_transaction_gate(databases, run_cli) -> None:
    """A non-superuser owner sees neither the start nor the state of another role's session:
    it cannot tell whether the apply would queue behind it, so the gate fails."""
    owner, other = "pf_owner_x", "pf_other_x"
    name = databases.create()
    try:
        for role in (owner, other):
            databases.admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        databases.admin.execute(f'ALTER DATABASE "{name}" OWNER TO "{owner}"')
        base = databases.target(name)
        target = Target.of(**{**base.params, "user": owner})
        with psycopg.connect(Target.of(**{**base.params, "user": other}).libpq, autocommit=True) as held:
            held.execute("BEGIN")
            held.execute("SELECT 1")
            _, rep, _ = run_preflight(run_cli, target)
            c = checks(rep)[pf.LONG_TXN]
            assert c["status"] == "FAIL" and "hidden from" in c["evidence"] and "GRANT pg_read_all_stats TO" in c["evidence"]
            held.execute("ROLLBACK")
        databases.admin.execute(f'GRANT pg_read_all_stats TO "{owner}"')
        with psycopg.connect(Target.of(**{**base.params, "user": other}).libpq, autocommit=True) as idle:
            idle.execute("SELECT 1")
            _, rep, _ = run_preflight(run_cli, target)
            assert checks(rep)[pf.LONG_TXN]["status"] == "PASS"
    finally:
        databases.drop(name)
        for role in (owner, other):
            databases.admin.execute(f'DROP ROLE IF EXISTS "{role}"')


# ---------------------------------------------------------------- a check that cannot run
def test_a_check_that_cannot_run_fails_instead_of_skipping(new_db, run_cli) -> None:
    target = new_db("substrate")
    with connect(target) as c:  # two heads: the inventory cannot say which revision to expect
        c.execute("INSERT INTO iucore.alembic_version VALUES ('016')")
    _, rep, _ = run_preflight(run_cli, target)
    c = checks(rep)
    assert c[pf.INVENTORY]["status"] == "FAIL" and c[pf.INVENTORY]["evidence"].startswith("could not run:")
    assert rep["total"] == 14 and rep["passed"] < 14
