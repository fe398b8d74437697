"""The revision contract on small example projects (tests/projects/*), real server.

sample:           a1 (table) → a2 (column + function; sleeps iucore_test.sleep s) → a3 (view)
broken_postcheck: b1 → b2 whose post-check always fails
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iu_core.config import RunOptions
from iu_core.errors import LockBusy, RevisionFailed, RevisionRefused, SqlFileError, StoppedPartWay
from iu_core.framework import migrate
from iu_core.framework.session import LOCK_KEY
from iu_core.framework.sqlfiles import MIGRATION_SECTIONS, parse_script
from iu_core.pg.target import Target

from .conftest import BROKEN, SAMPLE, connect, fp, heads

IUCORE = str(Path(sys.executable).with_name("iucore"))


def log_rows(target: Target) -> list[tuple]:
    with connect(target) as c:
        return c.execute(
            "SELECT revision, direction, mode, outcome, message, evidence, checksums"
            " FROM iucore.migration_log ORDER BY log_id"
        ).fetchall()


def test_upgrade_applies_each_revision_with_an_audit_row(empty_db: Target, run_cli) -> None:
    res = run_cli(empty_db, "db", "upgrade", project=SAMPLE)
    assert res.exit_code == 0, res.output
    assert "== a1 upgrade" in res.stdout and "CREATE TABLE" in res.stdout
    assert "a1 post-check ok" in res.stdout  # NOTICE lines reach the transcript
    assert heads(empty_db) == ["a3"]
    rows = log_rows(empty_db)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("a1", "upgrade", "real", "applied"),
        ("a2", "upgrade", "real", "applied"),
        ("a3", "upgrade", "real", "applied"),
    ]
    a1 = rows[0]
    # the post-check's evidence rows and notices are recorded
    assert a1[5]["postcheck"]["rows"] == [{"check": "a1_table", "present": True}]
    assert a1[5]["postcheck"]["notices"] == ["a1 post-check ok"]
    sha = a1[6]["migrations/sql/a1.sql"]
    assert len(sha) == 64 and sha == _sha(SAMPLE / "migrations/sql/a1.sql")
    assert "rollbacks/a1.sql" in a1[6]
    # alembic bookkeeping stays out of the IU Core schemas
    with connect(empty_db) as c:
        assert c.execute("SELECT to_regclass('public.alembic_version')").fetchone() == (None,)


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_second_upgrade_finds_nothing_to_do(empty_db: Target, run_cli) -> None:
    assert run_cli(empty_db, "db", "upgrade", project=SAMPLE).exit_code == 0
    res = run_cli(empty_db, "db", "upgrade", project=SAMPLE)
    assert res.exit_code == 0
    assert "nothing to do: already at a3" in res.stdout
    assert len(log_rows(empty_db)) == 3


def test_failing_postcheck_persists_nothing_and_is_audited(new_db, run_cli) -> None:
    target = new_db("b1", BROKEN)
    res = run_cli(target, "db", "upgrade", project=BROKEN)
    assert res.exit_code == 1, res.output  # nothing of this run committed: failed, not part-way
    assert "b2 upgrade failed in @postcheck (migrations/sql/b2.sql:" in res.stderr
    assert "Nothing of this run committed; the database is at b1" in res.stderr
    with connect(target) as c:
        assert c.execute("SELECT to_regclass('public.b2_table')").fetchone() == (None,)
        assert c.execute("SELECT count(*) FROM public.broken_t").fetchone() == (0,)
        assert c.execute("SELECT version_num FROM iucore.alembic_version").fetchall() == [("b1",)]
    last = log_rows(target)[-1]
    assert (last[0], last[1], last[3]) == ("b2", "upgrade", "failed")
    assert last[5]["error"]["section"] == "postcheck"
    assert last[5]["error"]["notices"] == ["b2 post-check sees 2 rows"]
    assert "expected 3 rows" in last[4]


def test_rollback_guard_refusal_exits_3_and_changes_nothing(new_db, run_cli) -> None:
    target = new_db("a1", SAMPLE)
    with connect(target) as c:
        c.execute("INSERT INTO public.sample_t (id) VALUES (7)")
    before = fp(target, SAMPLE)
    res = run_cli(target, "db", "downgrade", "base", project=SAMPLE)
    assert res.exit_code == 3, res.output
    assert "a1 rollback refused: public.sample_t holds 1 row(s)" in res.stderr
    assert fp(target, SAMPLE) == before
    assert heads(target) == ["a1"]
    assert log_rows(target)[-1][3] == "refused"


def test_multi_revision_downgrade_stops_at_the_refusing_revision(new_db) -> None:
    target = new_db("a3", SAMPLE)
    with connect(target) as c:
        c.execute("INSERT INTO public.sample_t (id) VALUES (1)")
    with pytest.raises(StoppedPartWay) as exc:
        migrate.downgrade(target, "base", project=SAMPLE)
    # each revision is its own transaction: a3 and a2 rolled back and committed
    assert exc.value.data["committed"] == ["a3", "a2"]
    assert exc.value.data["now_at"] == ["a1"]
    assert isinstance(exc.value.cause, RevisionRefused) and exc.value.outcome == "refused"
    assert heads(target) == ["a1"]


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_rehearsal_runs_everything_then_leaves_no_trace(new_db, run_cli, direction: str) -> None:
    target = new_db("a1", SAMPLE)
    before = fp(target, SAMPLE)
    args = ["db", "upgrade", "--rehearse"] if direction == "upgrade" else ["db", "downgrade", "base", "--rehearse"]
    res = run_cli(target, *args, project=SAMPLE)
    assert res.exit_code == 0, res.output
    out = res.stdout
    lines = out.splitlines()
    assert "rehearsal: will ROLLBACK" in out
    # ROLLBACK comes after the last statement and before the summary
    assert lines.index("ROLLBACK") > max(i for i, x in enumerate(lines) if x.startswith("== "))
    assert lines.index("ROLLBACK") < min(i for i, x in enumerate(lines) if x.startswith("iucore: "))
    assert ("CREATE FUNCTION" in out) if direction == "upgrade" else ("DROP TABLE" in out)
    assert f"catalog fingerprint unchanged: {before}" in out
    assert fp(target, SAMPLE) == before
    assert heads(target) == ["a1"]
    rehearsed = [r for r in log_rows(target) if r[2] == "rehearsal"]
    expected = ["a2", "a3"] if direction == "upgrade" else ["a1"]
    assert [r[0] for r in rehearsed] == expected
    assert {r[3] for r in rehearsed} == {"rehearsed"}


def test_rehearsal_that_is_refused_rolls_back_everything(new_db) -> None:
    target = new_db("a3", SAMPLE)
    with connect(target) as c:
        c.execute("INSERT INTO public.sample_t (id) VALUES (1)")
    before = fp(target, SAMPLE)
    with pytest.raises(RevisionRefused) as exc:
        migrate.downgrade(target, "base", project=SAMPLE, options=RunOptions(rehearse=True))
    assert "Rehearsal: everything was rolled back" in exc.value.message
    assert fp(target, SAMPLE) == before and heads(target) == ["a3"]


def test_lock_held_by_another_run_exits_3_after_the_bounded_wait(empty_db: Target, run_cli) -> None:
    with connect(empty_db) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        res = run_cli(empty_db, "db", "upgrade", "--lock-wait", "300ms", project=SAMPLE)
    assert res.exit_code == 3, res.output
    assert "another migration run holds the iucore lock: pid" in res.stderr
    assert "Nothing was changed" in res.stderr
    assert heads(empty_db) == []


def test_migration_blocked_by_a_table_lock_fails_within_lock_timeout(new_db) -> None:
    """With --lock-retries 0 a lock timeout fails the revision at once (iu_core.framework.lockretry retries otherwise)."""
    target = new_db("a1", SAMPLE)
    before = fp(target, SAMPLE)
    with connect(target) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE public.sample_t IN ACCESS SHARE MODE")  # a long reader
        with pytest.raises(RevisionFailed) as exc:
            migrate.upgrade(target, "a2", project=SAMPLE,
                            options=RunOptions(lock_timeout_ms=200, lock_retries=0))
        blocker.execute("ROLLBACK")
    assert exc.value.data["sqlstate"] == "55P03"
    assert "another transaction holds a lock" in exc.value.message
    assert fp(target, SAMPLE) == before and heads(target) == ["a1"]


def test_statement_timeout_stops_a_runaway_statement(new_db, databases) -> None:
    target = new_db("a1", SAMPLE)
    with connect(target) as c:
        c.execute(f"ALTER DATABASE \"{c.info.dbname}\" SET iucore_test.sleep = '2'")
    with pytest.raises(RevisionFailed) as exc:
        migrate.upgrade(target, "a2", project=SAMPLE, options=RunOptions(statement_timeout_ms=200))
    assert exc.value.data["sqlstate"] == "57014"
    assert heads(target) == ["a1"]


def test_two_concurrent_upgrades_in_separate_processes(empty_db: Target) -> None:
    with connect(empty_db) as c:
        c.execute(f"ALTER DATABASE \"{c.info.dbname}\" SET iucore_test.sleep = '1'")
    env = {**os.environ, "IUCORE_DATABASE_URL": empty_db.libpq}
    procs = [
        subprocess.Popen([IUCORE, "--project", str(SAMPLE), "--json", "db", "upgrade"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], outs
    results = [json.loads(o[0]) for o in outs]
    applied = sorted(len(r["revisions"]) for r in results)
    assert applied == [0, 3], results  # one applied everything, the other found nothing to do
    for _, err in outs:
        assert "UniqueViolation" not in err and "DuplicateObject" not in err
    assert [r[3] for r in log_rows(empty_db)] == ["applied"] * 3


def test_bad_input_is_exit_2_with_one_clear_line(empty_db: Target, run_cli) -> None:
    res = run_cli(empty_db, "db", "upgrade", "nope", project=SAMPLE)
    assert res.exit_code == 2 and "unknown revision 'nope'; known revisions: a1, a2, a3" in res.stderr
    res = run_cli(empty_db, "db", "upgrade", "--lock-timeout", "soon", project=SAMPLE)
    assert res.exit_code == 2 and "'soon' is not a duration" in res.stderr
    res = run_cli(empty_db, "db", "frobnicate", project=SAMPLE)
    assert res.exit_code == 2 and "No such command 'frobnicate'" in res.stderr
    res = run_cli(None, "--url", "mysql://u@h/d", "db", "current", project=SAMPLE)
    assert res.exit_code == 2 and "unsupported database URL scheme" in res.stderr
    assert heads(empty_db) == []


def test_history_lists_runs_newest_first(new_db, run_cli) -> None:
    target = new_db("a3", SAMPLE)
    res = run_cli(target, "--json", "db", "history", "--limit", "2", project=SAMPLE)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["revision"] for r in rows] == ["a3", "a2"]
    assert rows[0]["actor"] == "pytest-template"


def test_actor_flag_is_recorded(empty_db: Target, run_cli) -> None:
    assert run_cli(empty_db, "--actor", "dba-jane", "db", "upgrade", "a1", project=SAMPLE).exit_code == 0
    with connect(empty_db) as c:
        assert c.execute("SELECT actor FROM iucore.migration_log").fetchall() == [("dba-jane",)]


def test_plain_alembic_runs_the_same_guards_and_audit(new_db) -> None:
    target = new_db("a1", SAMPLE)
    env = {**os.environ, "IUCORE_DATABASE_URL": target.libpq, "IUCORE_ACTOR": "plain-alembic"}
    alembic = str(Path(sys.executable).with_name("alembic"))
    ok = subprocess.run([alembic, "upgrade", "head"], cwd=SAMPLE, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "== a2 upgrade" in ok.stdout
    assert heads(target) == ["a3"]
    with connect(target) as c:
        c.execute("INSERT INTO public.sample_t (id) VALUES (1)")
    down = subprocess.run([alembic, "downgrade", "base"], cwd=SAMPLE, env=env, capture_output=True, text=True)
    assert down.returncode == 5, down.stderr  # a3, a2 rolled back and committed, then a1 refused
    assert "iucore: stopped part-way: a1 downgrade refused by its rollback guard" in down.stderr
    assert "a1 rollback refused" in down.stderr and "Traceback" not in down.stderr
    rows = log_rows(target)
    assert rows[-1][3] == "refused" and heads(target) == ["a1"]
    with connect(target) as c:
        actors = {r[0] for r in c.execute("SELECT actor FROM iucore.migration_log WHERE actor <> 'pytest-template'")}
    assert actors == {"plain-alembic"}
    reh = subprocess.run([alembic, "-x", "rehearse=true", "upgrade", "head"], cwd=SAMPLE, env=env,
                         capture_output=True, text=True)
    assert reh.returncode == 0, reh.stderr
    assert "ROLLBACK" in reh.stdout and heads(target) == ["a1"]


# ---------------------------------------------------------------- SQL files
def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.sql"
    p.write_text(text)
    return p


def test_parser_keeps_dollar_quoted_bodies_whole_and_knows_lines(tmp_path: Path) -> None:
    p = _write(tmp_path, "-- head\n-- @preflight\nDO $$ BEGIN PERFORM 1; END $$;\n-- @body\n"
               "CREATE TABLE t (a text DEFAULT ';');\n\nSELECT 1;\n-- @postcheck\nSELECT 2;\n")
    s = parse_script(p, MIGRATION_SECTIONS)
    assert [(st.section, st.line) for st in s.statements] == [
        ("preflight", 3), ("body", 5), ("body", 7), ("postcheck", 9),
    ]
    assert s.statements[0].sql == "DO $$ BEGIN PERFORM 1; END $$"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("-- @body\nSELECT 1;\n-- @postcheck\nSELECT 1;\n", "sections are ['body', 'postcheck']"),
        ("-- @preflight\nSELECT 1;\n-- @body\nBEGIN;\nSELECT 1;\n-- @postcheck\nSELECT 1;\n", "transaction control"),
        ("-- @preflight\nSELECT 1;\n-- @body\nCOMMIT;\n-- @postcheck\nSELECT 1;\n", "transaction control"),
        ("SELECT 0;\n-- @preflight\nSELECT 1;\n-- @body\n-- @postcheck\nSELECT 1;\n", "SQL before the first"),
        ("-- @preflight\nSELEC 1;\n-- @body\n-- @postcheck\nSELECT 1;\n", "does not parse"),
        ("-- @preflight\n-- @body\nSELECT 1;\n-- @postcheck\nSELECT 1;\n", "section @preflight is empty"),
    ],
)
def test_parser_rejects_files_that_break_the_conventions(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(SqlFileError) as exc:
        parse_script(_write(tmp_path, text), MIGRATION_SECTIONS)
    assert needle in exc.value.message


def test_lock_busy_carries_the_holder(empty_db: Target) -> None:
    with connect(empty_db) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        with pytest.raises(LockBusy) as exc:
            migrate.upgrade(empty_db, project=SAMPLE, options=RunOptions(lock_wait_ms=100))
    assert exc.value.data["holder_pid"] == pid


def test_killed_connection_mid_revision_leaves_nothing(new_db) -> None:
    target = new_db("a1", SAMPLE)
    before = fp(target, SAMPLE)
    with connect(target) as killer:

        def hook(conn, stmt, i):  # terminate the migration's backend just before a2's ALTER TABLE
            if stmt.sql.startswith("ALTER TABLE"):
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'iucore:%' AND datname = current_database()"
                )

        with pytest.raises(RevisionFailed) as exc:
            migrate.upgrade(target, "a2", project=SAMPLE, before_statement=hook)
    assert exc.value.data["section"] == "body"
    assert fp(target, SAMPLE) == before and heads(target) == ["a1"]
    last = log_rows(target)[-1]  # audited on a fresh connection
    assert (last[0], last[3]) == ("a2", "failed") and "terminating connection" in last[4]
    migrate.upgrade(target, "a2", project=SAMPLE)  # and a re-run succeeds
    assert heads(target) == ["a2"]


def test_a_killed_run_is_settled_without_reconnecting_its_connection(new_db) -> None:
    """SQLAlchemy reconnects an invalidated connection on its next begin; the run must not:
    the new session would hold neither its lock nor its timeouts. It settles on a fresh
    connection of its own (pg.db.connect, no pool) instead, so its pool connects once."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    target = new_db("a1", SAMPLE)
    pooled: list[int] = []

    def on_connect(dbapi_conn, record) -> None:
        pooled.append(dbapi_conn.info.backend_pid)

    event.listen(Pool, "connect", on_connect)
    try:
        with connect(target) as killer:

            def hook(conn, stmt, i):
                if stmt.sql.startswith("ALTER TABLE"):
                    killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

            with pytest.raises(RevisionFailed):
                migrate.upgrade(target, "a2", project=SAMPLE, before_statement=hook)
    finally:
        event.remove(Pool, "connect", on_connect)
    assert len(pooled) == 1, f"the run's pool connected {len(pooled)} times"
    last = log_rows(target)[-1]
    assert heads(target) == ["a1"] and (last[0], last[3]) == ("a2", "failed")


def test_cli_help_lists_the_verbs(run_cli) -> None:
    res = run_cli(None, "db", "--help")
    assert res.exit_code == 0, res.output
    for verb in ("upgrade", "downgrade", "current", "history"):
        assert verb in res.stdout

