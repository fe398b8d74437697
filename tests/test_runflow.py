"""How a run ends (DESIGN §7), through the real CLI against a real server:
exit 2 for a target that is not valid from here, 5 for a run stopped part-way,
130/143 for SIGINT/SIGTERM (real signals to a real process), global options
in any position, time zones in the history, and roles without CREATE.

sample: a1 (table) → a2 (column + function; sleeps iucore_test.sleep s) → a3 (view)
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from iu_core.cli import cli
from iu_core.pg.target import Target

from .conftest import BROKEN, SAMPLE, connect, fp, heads, ok
from .test_framework import log_rows

BIN = Path(sys.executable).parent
_roles = itertools.count()


def as_role(target: Target, role: str) -> Target:
    """The same database, logged in as `role` (the test cluster trusts local sockets)."""
    return Target.of(**{**target.params, "user": role})


@pytest.fixture
def login_role(databases) -> Iterator[Callable[[], str]]:
    """Factory: a real LOGIN role, not superuser, with no CREATE anywhere (PUBLIC's CONNECT only).

    Requested before new_db, so it is dropped after the databases it was granted on.
    """
    made: list[str] = []

    def make() -> str:
        name = f"rf_role_{os.getpid()}_{next(_roles)}"
        databases.admin.execute(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        made.append(name)
        return name

    yield make
    for name in made:
        databases.admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def schemas(target: Target) -> set[str]:
    with connect(target) as c:
        return {r[0] for r in c.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'")}


def audit_count(target: Target) -> int:
    with connect(target) as c:
        if c.execute("SELECT to_regclass('iucore.migration_log')").fetchone() == (None,):
            return 0
        return c.execute("SELECT count(*) FROM iucore.migration_log").fetchone()[0]


# ---------------------------------------------------------------- exit 2
@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["downgrade", "a3"], "Destination a3 is not a valid downgrade target"),  # above where it is
        (["downgrade", "head"], "Destination head is not a valid downgrade target"),
        (["upgrade", "--", "-1"], "Relative revision -1 didn't produce 1 migrations"),  # a downgrade step
        (["upgrade", "+5"], "Relative revision +5 didn't produce 5 migrations"),  # past head
        (["upgrade", "a1"], "a1 is below where the database is (that is a downgrade)"),
    ],
)
def test_a_revision_that_is_not_a_valid_target_from_here_is_exit_2(new_db, run_cli, args, reason) -> None:
    target = new_db("a2", SAMPLE)
    before, rows = fp(target, SAMPLE), audit_count(target)
    res = run_cli(target, "db", *args, project=SAMPLE)
    assert res.exit_code == 2, res.output
    assert reason in res.stderr
    assert ("The database is at a2; valid upgrade targets from here: a3, head (or +1); "
            "valid downgrade targets: a1, base (or -1…-2). No revision ran") in res.stderr
    assert "Traceback" not in res.output
    assert fp(target, SAMPLE) == before and audit_count(target) == rows and heads(target) == ["a2"]


def test_downgrade_to_a_later_revision_of_the_real_chain_is_exit_2(new_db, run_cli) -> None:
    target = new_db("033")
    res = run_cli(target, "--json", "db", "downgrade", "034")
    assert res.exit_code == 2, res.output
    err = json.loads(res.stdout)
    assert err["error"] == "InvalidTarget" and err["now_at"] == ["033"]
    assert err["valid_upgrade"] == ["034", "gate_protocol", "least_privilege", "worker_pick", "head"]
    assert err["valid_downgrade"][0] == "280" and err["valid_downgrade"][-1] == "base"
    assert "The database is at 033" in err["message"]


def test_an_unknown_revision_is_exit_2_naming_the_known_ones(empty_db, run_cli) -> None:
    res = run_cli(empty_db, "db", "downgrade", "a9", project=SAMPLE)
    assert res.exit_code == 2
    assert "unknown revision 'a9'; known revisions: a1, a2, a3" in res.stderr
    assert schemas(empty_db) == {"public"}  # refused before connecting: not even the bootstrap ran


# ---------------------------------------------------------------- exit 5 / 3 / 1
def test_a_downgrade_that_commits_then_is_refused_is_exit_5_naming_where_it_is(new_db, run_cli) -> None:
    target = new_db("a3", SAMPLE)
    with connect(target) as c:
        c.execute("INSERT INTO public.sample_t (id) VALUES (1)")
    res = run_cli(target, "db", "downgrade", "base", project=SAMPLE)
    assert res.exit_code == 5, res.output
    assert res.stderr.startswith("iucore: stopped part-way: a1 downgrade refused by its rollback guard")
    assert "Committed before it: a3 downgrade, a2 downgrade; the database is now at a1" in res.stderr
    assert heads(target) == ["a1"]
    assert [(r[0], r[1], r[3]) for r in log_rows(target)][-3:] == [
        ("a3", "downgrade", "applied"), ("a2", "downgrade", "applied"), ("a1", "downgrade", "refused")]


def test_an_upgrade_that_commits_then_fails_is_exit_5_in_json_too(empty_db, run_cli) -> None:
    res = run_cli(empty_db, "db", "upgrade", "--json", project=BROKEN)
    assert res.exit_code == 5, res.output
    err = json.loads(res.stdout)
    assert (err["error"], err["exit_code"], err["committed"], err["now_at"]) == ("StoppedPartWay", 5, ["b1"], ["b1"])
    assert err["cause"]["error"] == "RevisionFailed" and err["cause"]["section"] == "postcheck"
    assert heads(empty_db) == ["b1"]


def test_a_refusal_of_the_first_revision_stays_exit_3(new_db, run_cli) -> None:
    target = new_db("a3", SAMPLE)
    with connect(target) as c:
        c.execute("DROP VIEW public.sample_v")  # a3's rollback guard will refuse
    before = fp(target, SAMPLE)
    res = run_cli(target, "db", "downgrade", "base", project=SAMPLE)
    assert res.exit_code == 3, res.output
    assert "a3 rollback refused: sample_v missing" in res.stderr
    assert "Nothing of this run committed; the database is at a3" in res.stderr
    assert fp(target, SAMPLE) == before


# ---------------------------------------------------------------- signals
def _wait_for_sleep(target: Target, proc: subprocess.Popen[str]) -> None:
    """Until a2's body is sleeping inside its transaction (bounded, so a broken run cannot hang the suite)."""
    deadline = time.monotonic() + 60
    with connect(target) as c:
        while time.monotonic() < deadline and proc.poll() is None:
            if c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                         " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'").fetchone() == (1,):
                return
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run never reached a2's sleep: {proc.communicate()}")


@pytest.mark.parametrize(
    ("program", "sig"),
    [("iucore", signal.SIGINT), ("iucore", signal.SIGTERM), ("alembic", signal.SIGTERM)],
)
def test_a_signal_mid_revision_rolls_it_back_audits_it_and_says_where_the_database_is(
    empty_db: Target, program: str, sig: signal.Signals
) -> None:
    with connect(empty_db) as c:
        c.execute(f"ALTER DATABASE \"{c.info.dbname}\" SET iucore_test.sleep = '300'")
    env = {**os.environ, "IUCORE_DATABASE_URL": empty_db.libpq, "IUCORE_ACTOR": "signal-test"}
    argv = ([str(BIN / "iucore"), "--project", str(SAMPLE), "db", "upgrade"] if program == "iucore"
            else [str(BIN / "alembic"), "upgrade", "head"])
    proc = subprocess.Popen(argv, cwd=SAMPLE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job starts with SIGINT ignored; a terminal's does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_sleep(empty_db, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (out, err)
    assert (f"iucore: interrupted: interrupted by {sig.name} during a2 upgrade: its transaction was rolled back. "
            "Committed before it: a1 upgrade; the database is now at a1") in err
    assert "Traceback" not in err and "Aborted!" not in err
    assert heads(empty_db) == ["a1"]
    with connect(empty_db) as c:
        assert c.execute("SELECT to_regprocedure('public.sample_fn(integer)')").fetchone() == (None,)
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.sample_t'::regclass"
                         " AND attname = 'added_by_a2'").fetchone() == (0,)
        # the session ended: no iucore backend left, so no advisory lock held
        assert c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                         " (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone() == (0,)
    rows = log_rows(empty_db)
    assert [(r[0], r[3]) for r in rows] == [("a1", "applied"), ("a2", "interrupted")]
    assert rows[-1][4].startswith(f"interrupted by {sig.name} during a2 upgrade")


# ---------------------------------------------------------------- the audit log's CHECK
OLD_LOG = """
CREATE SCHEMA iucore;
CREATE TABLE iucore.migration_log (
    log_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       uuid        NOT NULL,
    revision     text        NOT NULL,
    direction    text        NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
    mode         text        NOT NULL CHECK (mode IN ('real', 'rehearsal')),
    outcome      text        NOT NULL CHECK (outcome IN ('applied', 'refused', 'failed', 'rehearsed')),
    checksums    jsonb       NOT NULL DEFAULT '{}',
    actor        text        NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_ms  numeric(12,3) NOT NULL,
    message      text,
    evidence     jsonb       NOT NULL DEFAULT '{}',
    db_user      text        NOT NULL DEFAULT current_user,
    client       text        NOT NULL DEFAULT current_setting('application_name'));
INSERT INTO iucore.migration_log (run_id, revision, direction, mode, outcome, actor, started_at, duration_ms)
VALUES (gen_random_uuid(), 'older', 'upgrade', 'rehearsal', 'rehearsed', 'old-iucore', now(), 1);
"""


def _outcome_check(target: Target) -> str:
    with connect(target) as c:
        return c.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                         " WHERE conname = 'migration_log_outcome_check'").fetchone()[0]


def test_an_older_audit_log_gains_the_interrupted_outcome_and_keeps_its_rows(empty_db, run_cli) -> None:
    with connect(empty_db) as c:
        c.execute(OLD_LOG)
    assert "interrupted" not in _outcome_check(empty_db)
    assert run_cli(empty_db, "db", "upgrade", "a1", project=SAMPLE).exit_code == 0
    assert "'interrupted'::text" in _outcome_check(empty_db)
    with connect(empty_db) as c:
        assert c.execute("SELECT revision, outcome FROM iucore.migration_log ORDER BY log_id").fetchall() == [
            ("older", "rehearsed"), ("a1", "applied")]
        cols = {r[0] for r in c.execute("SELECT attname FROM pg_attribute WHERE attrelid ="
                                        " 'iucore.migration_log'::regclass AND attnum > 0")}
        assert {"backup", "override"} <= cols
        with pytest.raises(psycopg.errors.CheckViolation):  # the CHECK is still a CHECK
            c.execute("INSERT INTO iucore.migration_log (run_id, revision, direction, mode, outcome, actor,"
                      " started_at, duration_ms) VALUES (gen_random_uuid(), 'x', 'upgrade', 'real', 'bogus',"
                      " 'a', now(), 1)")


def test_an_older_audit_log_owned_by_another_role_is_a_clear_exit_2(login_role, new_db, run_cli) -> None:
    role = login_role()
    target = new_db()
    with connect(target) as c:
        c.execute(OLD_LOG)
        c.execute(f'GRANT USAGE, CREATE ON SCHEMA iucore TO "{role}"; GRANT CREATE ON SCHEMA public TO "{role}";'
                  f' GRANT SELECT, INSERT ON iucore.migration_log TO "{role}"')
    before = schemas(target), fp(target, SAMPLE)
    res = run_cli(as_role(target, role), "db", "upgrade", "a1", project=SAMPLE)
    assert res.exit_code == 2, res.output
    assert (f"iucore.migration_log predates this iucore and role {role} in database") in res.stderr
    assert "let its owner, role postgres, run iucore db upgrade once" in res.stderr
    assert "Traceback" not in res.output
    assert (schemas(target), fp(target, SAMPLE)) == before and "interrupted" not in _outcome_check(target)


# ---------------------------------------------------------------- roles without CREATE
@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("", "has no CREATE on the database, so it cannot create schema iucore"),  # empty database
        ("migrated", "has no USAGE on schema iucore"),
        ("migrated+usage", "may not write iucore.migration_log"),
    ],
)
def test_db_upgrade_as_a_role_without_the_privileges_is_exit_2_and_changes_nothing(
    login_role, new_db, run_cli, setup: str, needle: str
) -> None:
    role = login_role()
    target = new_db("a1", SAMPLE) if setup else new_db()
    with connect(target) as c:
        c.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')  # it could create IU Core objects…
        if setup == "migrated+usage":
            c.execute(f'GRANT USAGE ON SCHEMA iucore TO "{role}"; GRANT SELECT ON iucore.alembic_version TO "{role}"')
    before = schemas(target), fp(target, SAMPLE), audit_count(target)
    res = run_cli(as_role(target, role), "db", "upgrade", project=SAMPLE)
    assert res.exit_code == 2, res.output  # …but not record the run: refused before anything ran
    assert f"role {role} in database" in res.stderr and needle in res.stderr
    assert "nothing was changed" in res.stderr and "Traceback" not in res.output
    assert (schemas(target), fp(target, SAMPLE), audit_count(target)) == before


def _alembic(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IUCORE_DATABASE_URL": target.libpq}
    return subprocess.run([str(BIN / "alembic"), *args], cwd=SAMPLE, env=env, capture_output=True, text=True)


def test_plain_alembic_reads_work_for_a_role_without_create(login_role, new_db, run_cli) -> None:
    role = login_role()
    empty = new_db()
    res = _alembic(as_role(empty, role), "current")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "base (no revision applied)"
    assert schemas(empty) == {"public"}  # a read creates nothing, not even schema iucore

    target = new_db("a2", SAMPLE)
    res = _alembic(as_role(target, role), "current")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "permission denied for schema iucore" in res.stderr and "USAGE on schema iucore" in res.stderr
    mine = run_cli(as_role(target, role), "db", "current", project=SAMPLE)  # iucore's own read says the same
    assert mine.exit_code == 2 and "permission denied for schema iucore" in mine.stderr
    with connect(target) as c:
        c.execute(f'GRANT USAGE ON SCHEMA iucore TO "{role}"; GRANT SELECT ON iucore.alembic_version TO "{role}"')
    before = fp(target, SAMPLE), audit_count(target)
    reader = as_role(target, role)
    cur = _alembic(reader, "current")
    assert cur.returncode == 0 and cur.stdout.strip() == "a2", cur.stderr
    assert ok(run_cli(reader, "db", "current", project=SAMPLE)).stdout.startswith("a2\npending: a3")
    hist = _alembic(reader, "history", "-i")
    assert hist.returncode == 0 and "a1 -> a2 (current)" in hist.stdout
    hds = _alembic(reader, "heads")
    assert hds.returncode == 0 and hds.stdout.strip() == "a3 (head)", hds.stderr
    check = _alembic(reader, "check")
    assert check.returncode != 0 and "Traceback" not in check.stderr
    assert "no metadata for `alembic check`" in check.stdout + check.stderr
    assert "iucore inventory --check" in check.stdout + check.stderr
    assert (fp(target, SAMPLE), audit_count(target)) == before


# ---------------------------------------------------------------- global options
def _invoke(*argv: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(argv), env=env or {}, catch_exceptions=False)


def test_global_options_are_accepted_before_or_after_the_subcommand(new_db, empty_db) -> None:
    at_a2 = new_db("a2", SAMPLE)
    p = ["--project", str(SAMPLE)]
    for argv in (
        [*p, "--url", at_a2.libpq, "--json", "db", "current"],
        [*p, "db", "--url", at_a2.libpq, "--json", "current"],
        ["db", "current", *p, "--json", "--url", at_a2.libpq],
        [*p, "--url", empty_db.libpq, "db", "current", "--url", at_a2.libpq, "--json"],  # the later one wins
    ):
        res = _invoke(*argv)
        assert res.exit_code == 0, (argv, res.output)
        assert json.loads(res.stdout)["current"] == ["a2"], argv
    # an explicit --url after the command beats $IUCORE_DATABASE_URL
    res = _invoke("db", "current", "--json", "--project", str(SAMPLE), "--url", at_a2.libpq,
                  env={"IUCORE_DATABASE_URL": empty_db.libpq})
    assert json.loads(res.stdout)["current"] == ["a2"]
    res = _invoke("db", "upgrade", "a1", "--json", "--actor", "dba-after", "--url", empty_db.libpq, *p)
    assert res.exit_code == 0, res.output
    assert [r["revision"] for r in json.loads(res.stdout)["revisions"]] == ["a1"]
    with connect(empty_db) as c:
        assert c.execute("SELECT actor FROM iucore.migration_log").fetchall() == [("dba-after",)]


def test_every_command_help_lists_the_global_options() -> None:
    for path in (["db", "current"], ["db", "upgrade"], ["inventory"], ["dot", "apply"], ["gate", "open"],
                 ["server", "url"], ["db"]):
        res = _invoke(*path, "--help")
        assert res.exit_code == 0
        for opt in ("--url", "--json", "--actor", "--project"):
            assert opt in res.stdout, (path, opt)


# ---------------------------------------------------------------- history time zone
def test_history_timestamps_carry_the_offset_in_text_and_json(new_db, run_cli) -> None:
    # The database says Asia/Kolkata; iucore pins TimeZone=UTC on its connections,
    # so every stamp is the same instant, written with its offset (+00:00).
    target = new_db("a1", SAMPLE)
    with connect(target) as c:
        c.execute(f"ALTER DATABASE \"{c.info.dbname}\" SET timezone = 'Asia/Kolkata'")
        started = c.execute("SELECT started_at FROM iucore.migration_log").fetchone()[0]
    res = ok(run_cli(target, "--json", "db", "history", project=SAMPLE))
    stamp = json.loads(res.stdout)[0]["started_at"]
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0) and parsed == started
    text = ok(run_cli(target, "db", "history", project=SAMPLE)).stdout
    assert parsed.replace(microsecond=0).isoformat() in text and "+00:00" in text

