"""Migrating under live traffic (issue 12): short lock waits, retried, the holder named.

A real holder connection keeps a lock that conflicts with what a revision's
guard takes (least_privilege's and gate_protocol's rollback guards take SHARE
on public.dot_config, 033's on public.iu_auto_instance); it lets go when the
transcript says so, or never. No test asserts a duration: what a try saw is
read from the transcript, the audit row and pg_locks.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.config import main as alembic_main

from iu_core.config import RunOptions, Settings
from iu_core.errors import LockRetriesExhausted, StoppedPartWay
from iu_core.framework import migrate
from iu_core.framework.fingerprint import snapshot
from iu_core.framework.lockretry import FIRST_SLEEP_S, MAX_SLEEP_S, LockRetries
from iu_core.pg.target import Target
from iu_core.release import datascripts
from iu_core.release.inventory import report as inventory_report

from .conftest import ROOT, SAMPLE, connect, fp, heads

HEAD = "least_privilege"
GATE_ROW = "iu_core.composer_enabled"
OTHER_ROW = "iu_core.delivery_enabled"
HOLDER_APP = "pytest-holder"
BIN = Path(sys.executable).parent
_roles = itertools.count()


def opts(**kw: Any) -> RunOptions:
    base = {"lock_timeout_ms": 100, "lock_retries": 10, "retry_budget_ms": 60_000, "actor": "dba-jane"}
    return RunOptions(**{**base, **kw})


def log_rows(target: Target) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    with connect(target) as c:
        return c.execute("SELECT revision, direction, mode, outcome, evidence FROM iucore.migration_log"
                         " ORDER BY log_id").fetchall()


class Holder:
    """Another session of production: an open transaction holding a lock."""

    def __init__(self, target: Target) -> None:
        self.conn = psycopg.connect(target.libpq, application_name=HOLDER_APP)
        self.conn.execute("SET lock_timeout = '10s'")  # a test that would deadlock fails instead
        self.pid = self.conn.info.backend_pid

    def update_row(self, key: str = GATE_ROW) -> None:
        """What any writer of dot_config holds: ROW EXCLUSIVE on the table, the row locked."""
        self.conn.execute("UPDATE public.dot_config SET description = description WHERE key = %s", (key,))

    def lock(self, sql: str) -> None:
        self.conn.execute(sql)

    def lock_gate_row(self) -> None:
        """The gate row locked FOR UPDATE: what a runtime script's or self-test's gate open waits for."""
        self.conn.execute("SELECT 1 FROM public.dot_config WHERE key = %s FOR UPDATE", (GATE_ROW,))

    @property
    def holding(self) -> bool:
        return self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS

    def release(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def holder_for() -> Iterator[Callable[[Target], Holder]]:
    made: list[Holder] = []

    def make(target: Target) -> Holder:
        h = Holder(target)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


class Transcript:
    """A sink that records the run's transcript and acts on lines as they come."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.on: list[tuple[str, Callable[[str], None]]] = []

    def when(self, prefix: str, action: Callable[[str], None]) -> None:
        self.on.append((prefix, action))

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        for prefix, action in list(self.on):
            if line.startswith(prefix):
                self.on.remove((prefix, action))
                action(line)

    @classmethod
    def releasing(cls, holder: Holder) -> Transcript:
        """A transcript that lets `holder` go at the first lock timeout: the second try gets the lock."""
        sink = cls()
        sink.when("-- lock timeout on try 1/", lambda _: holder.release())
        return sink

    def retry_lines(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith("-- lock timeout on try")]


def migration_pid(target: Target) -> int:
    """The run's own backend (application iucore:<run>, not its watch)."""
    with connect(target) as c:
        rows = c.execute("""SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                              AND application_name LIKE 'iucore:%%' AND application_name NOT LIKE '%%:watch'
                              AND pid <> pg_backend_pid()""").fetchall()
    assert len(rows) == 1, rows
    return int(rows[0][0])


def relation_locks(target: Target, pid: int) -> list[tuple[str, str]]:
    """(table, mode) of every lock `pid` holds or waits for on an IU Core schema's relation."""
    with connect(target) as c:
        return c.execute(
            """SELECT n.nspname || '.' || k.relname, l.mode FROM pg_locks l
                 JOIN pg_class k ON k.oid = l.relation JOIN pg_namespace n ON n.oid = k.relnamespace
                WHERE l.pid = %s AND n.nspname IN ('public', 'cutter_governance') ORDER BY 1, 2""",
            (pid,)).fetchall()


# --------------------------------------------------------------------------- the real run


def test_a_holder_that_lets_go_after_two_tries_the_revision_is_retried_and_applied(new_db, holder_for) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.update_row()
    between_tries: list[list[tuple[str, str]]] = []
    sink = Transcript()
    sink.when("-- lock timeout on try 1/", lambda _: between_tries.append(relation_locks(target, migration_pid(target))))
    sink.when("-- lock timeout on try 2/", lambda _: holder.release())

    result = migrate.downgrade(target, "gate_protocol", project=ROOT, options=opts(), sink=sink)

    assert heads(target) == ["gate_protocol"] and result.to_heads == ["gate_protocol"]
    assert between_tries == [[]]  # it sleeps holding nothing: the try was rolled back
    retries = sink.retry_lines()
    assert len(retries) == 2, sink.lines
    for n, line in enumerate(retries, 1):
        assert line.startswith(f"-- lock timeout on try {n}/11 (rollbacks/least_privilege.sql:")
        assert f"waiting on pid {holder.pid} (application {HOLDER_APP}, user " in line
        assert "UPDATE public.dot_config SET description = description WHERE key = $1" in line
        assert re.search(r"; retrying in \d+\.\d s$", line), line
    assert sum(ln.startswith("== least_privilege downgrade") for ln in sink.lines) == 3  # three tries, whole

    (_rev, _direction, mode, outcome, evidence), = [r for r in log_rows(target) if r[0] == "least_privilege"
                                                  and r[1] == "downgrade"]
    assert (mode, outcome) == ("real", "applied")
    tries = evidence["lock_retries"]
    assert (tries["tries"], tries["gave_up"], tries["lock_timeout_ms"], tries["lock_retries"]) == (3, False, 100, 10)
    assert [t["try"] for t in tries["timeouts"]] == [1, 2]
    assert [[h["pid"] for h in t["holders"]] for t in tries["timeouts"]] == [[holder.pid], [holder.pid]]
    assert {t["holders"][0]["application"] for t in tries["timeouts"]} == {HOLDER_APP}
    assert all(t["statement"].startswith("rollbacks/least_privilege.sql:") and t["sleep_s"] > 0
               for t in tries["timeouts"])


def test_a_holder_that_never_lets_go_is_refused_exit_3_naming_it_and_nothing_changes(
        new_db, holder_for, run_cli) -> None:
    target = new_db(HEAD)
    before = fp(target)
    holder = holder_for(target)
    holder.update_row()

    res = run_cli(target, "db", "downgrade", "gate_protocol", "--lock-timeout", "100ms", "--lock-retries", "2",
                  "--retry-budget", "1min")

    assert holder.holding
    assert res.exit_code == 3, res.output
    err = res.stderr
    assert err.startswith("iucore: refused: least_privilege downgrade: lock_timeout (100 ms) on every try, "
                          "3 of 3 tries (--lock-retries 2)"), err
    assert f"it waited on pid {holder.pid} (application {HOLDER_APP}, user " in err
    assert "Nothing of this run committed; the database is at least_privilege" in err
    assert len(re.findall(r"^-- lock timeout on try \d/3 ", res.stdout, re.M)) == 3
    assert fp(target) == before and heads(target) == [HEAD]
    *_, (rev, direction, mode, outcome, evidence) = log_rows(target)
    assert (rev, direction, mode, outcome) == ("least_privilege", "downgrade", "real", "refused")
    assert evidence["lock_retries"]["tries"] == 3 and evidence["lock_retries"]["gave_up"] is True
    assert [t["holders"][0]["pid"] for t in evidence["lock_retries"]["timeouts"]] == [holder.pid] * 3
    assert evidence["error"]["sqlstate"] == "55P03"


def test_the_retry_budget_ends_the_tries_before_the_count_does(new_db, holder_for) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.update_row()
    with pytest.raises(LockRetriesExhausted) as exc:
        migrate.downgrade(target, "gate_protocol", project=ROOT,
                          options=opts(lock_retries=1000, retry_budget_ms=700))
    e = exc.value
    assert e.exit_code == 3 and "the next would start past the retry budget of 0.7 s" in e.message
    assert 2 <= e.data["tries"] < 1001 and e.data["holder"]["pid"] == holder.pid
    assert heads(target) == [HEAD]


def test_committed_revisions_stay_then_the_next_one_runs_out_of_budget_exit_5(new_db, holder_for) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    sink = Transcript()
    # least_privilege's rollback commits; then production takes the row gate_protocol's guard needs.
    sink.when("== gate_protocol downgrade", lambda _: holder.update_row())
    with pytest.raises(StoppedPartWay) as exc:
        migrate.downgrade(target, "034", project=ROOT, options=opts(lock_retries=2), sink=sink)
    e = exc.value
    assert e.exit_code == 5 and isinstance(e.cause, LockRetriesExhausted)
    assert e.message.startswith("gate_protocol downgrade: lock_timeout (100 ms) on every try, 3 of 3 tries")
    assert f"pid {holder.pid} (application {HOLDER_APP}" in e.message
    assert "Committed before it: least_privilege downgrade; the database is now at gate_protocol" in e.message
    assert heads(target) == ["gate_protocol"]
    rows = [(r[0], r[3], (r[4].get("lock_retries") or {}).get("tries")) for r in log_rows(target)
            if r[1] == "downgrade"]
    assert rows == [("least_privilege", "applied", None), ("gate_protocol", "refused", 3)]


def test_a_relative_destination_does_not_move_when_a_later_revision_is_retried(new_db, holder_for) -> None:
    """downgrade -2 from least_privilege ends at 034, even though the retry starts at gate_protocol."""
    target = new_db(HEAD)
    holder = holder_for(target)
    sink = Transcript.releasing(holder)
    sink.when("== gate_protocol downgrade", lambda _: holder.update_row())
    migrate.downgrade(target, "-2", project=ROOT, options=opts(), sink=sink)
    assert heads(target) == ["034"]
    assert [ln.split(" —")[0] for ln in sink.lines if ln.startswith("== ")] == [
        "== least_privilege downgrade", "== gate_protocol downgrade", "== gate_protocol downgrade"]


def test_lock_retries_0_fails_at_the_first_lock_timeout_as_before(new_db, holder_for, run_cli) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.update_row()
    res = run_cli(target, "db", "downgrade", "gate_protocol", "--lock-timeout", "100ms", "--lock-retries", "0")
    assert res.exit_code == 1, res.output
    assert "canceling statement due to lock timeout — another transaction holds a lock" in res.stderr
    assert "lock timeout on try" not in res.output and heads(target) == [HEAD]
    *_, (rev, _direction, _mode, outcome, evidence) = log_rows(target)
    assert (rev, outcome) == ("least_privilege", "failed") and "lock_retries" not in evidence


def test_a_signal_while_retrying_is_audited_on_the_waiting_revision_with_its_tries(new_db, holder_for) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.update_row()
    env = {**os.environ, "IUCORE_DATABASE_URL": target.libpq, "IUCORE_ACTOR": "signal-test"}
    proc = subprocess.Popen(
        [str(BIN / "iucore"), "--project", str(ROOT), "db", "downgrade", "gate_protocol", "--lock-timeout", "100ms",
         "--lock-retries", "100", "--retry-budget", "10min"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    try:
        # from the 5th timeout on, the sleeps last 0.8 s and more: the signal lands between tries
        for line in proc.stdout:
            if line.startswith("-- lock timeout on try 5/101"):
                break
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT during least_privilege downgrade: its transaction was rolled back" in err
    assert "Traceback" not in err and heads(target) == [HEAD]
    *_, (rev, _direction, _mode, outcome, evidence) = log_rows(target)
    assert (rev, outcome) == ("least_privilege", "interrupted")
    timeouts = evidence["lock_retries"]["timeouts"]
    assert len(timeouts) >= 5 and {t["holders"][0]["pid"] for t in timeouts} == {holder.pid}


@pytest.fixture
def sample_owner(databases, new_db) -> Iterator[tuple[Target, Target]]:
    """The sample project at a1 in a database owned by a non-superuser LOGIN role:
    (the database as that role, the database as the superuser)."""
    role = f"lr_owner_{os.getpid()}_{next(_roles)}"
    databases.admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    db = new_db().dbname
    databases.admin.execute(f'ALTER DATABASE "{db}" OWNER TO "{role}"')
    target = Target.of(**{**databases.target(db).params, "user": role})
    migrate.upgrade(target, "a1", project=SAMPLE, options=opts())
    yield target, databases.target(db)
    databases.drop(db)
    databases.admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_role_without_pg_read_all_stats_still_names_the_holder_but_not_its_query(sample_owner, holder_for) -> None:
    """The holder is another user's session: pid, application and user are public, the query is not."""
    as_owner, as_superuser = sample_owner
    holder = holder_for(as_superuser)
    holder.lock("LOCK TABLE public.sample_t IN ACCESS SHARE MODE")  # a long reader; a2 alters the table
    with pytest.raises(LockRetriesExhausted) as exc:
        migrate.upgrade(as_owner, "a2", project=SAMPLE, options=opts(lock_retries=1))
    e = exc.value
    assert f"pid {holder.pid} (application {HOLDER_APP}, user " in e.message
    assert e.data["holder"]["query"] == "<insufficient privilege>" and e.data["holder"]["transaction_open_s"] is None
    assert e.data["tries"] == 2


# --------------------------------------------------------------------------- a rehearsal


def test_a_rehearsal_is_retried_whole_from_its_first_revision_and_persists_nothing(new_db, holder_for) -> None:
    target = new_db(HEAD)
    before = fp(target)
    holder = holder_for(target)
    between_tries: list[list[tuple[str, str]]] = []
    sink = Transcript()
    # 033's guard locks iu_auto_instance: production writes it while the rehearsal is three revisions in.
    sink.when("== 033 downgrade", lambda _: holder.lock("LOCK TABLE public.iu_auto_instance IN ROW EXCLUSIVE MODE"))

    def timed_out(_: str) -> None:
        between_tries.append(relation_locks(target, migration_pid(target)))
        holder.release()

    sink.when("-- lock timeout on try 1/", timed_out)
    result = migrate.downgrade(target, "280", project=ROOT, options=opts(rehearse=True), sink=sink)

    assert between_tries == [[]]  # not even the SHARE on dot_config the first revisions took
    headers = [ln.split(" (")[0] for ln in sink.lines if ln.startswith("== ")]
    first_try = ["== least_privilege downgrade", "== gate_protocol downgrade", "== 034 downgrade", "== 033 downgrade"]
    assert headers == first_try + first_try
    assert sink.retry_lines()[0].startswith("-- lock timeout on try 1/11 (rollbacks/033.sql:")
    assert fp(target) == before and heads(target) == [HEAD]
    assert result.fingerprint_before == result.fingerprint_after
    rows = [(r[0], r[2], r[3], r[4]["lock_retries"]["tries"]) for r in log_rows(target) if r[2] == "rehearsal"]
    assert rows == [(r, "rehearsal", "rehearsed", 2) for r in ("least_privilege", "gate_protocol", "034", "033")]


def test_a_rehearsals_snapshot_waits_politely_too(new_db, holder_for) -> None:
    """An ALTER TABLE of production holds dot_config: the snapshot before the rehearsal times
    out and is read again; the rehearsal then runs."""
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.lock("LOCK TABLE public.dot_config IN ACCESS EXCLUSIVE MODE")
    sink = Transcript.releasing(holder)
    result = migrate.downgrade(target, "gate_protocol", project=ROOT, options=opts(rehearse=True), sink=sink)
    line, = sink.retry_lines()
    assert line.startswith(f"-- lock timeout on try 1/11 (the catalog snapshot before the run) waiting on pid {holder.pid} ")
    assert result.fingerprint_before == result.fingerprint_after and heads(target) == [HEAD]


# --------------------------------------------------------------------------- production is not kept waiting


def test_a_writer_queued_behind_the_migration_goes_on_when_a_try_gives_up(new_db, holder_for) -> None:
    """The lock queue: a writer of another dot_config row waits behind the migration's SHARE
    request (not behind the holder: their locks do not conflict); when the try gives up, the
    writer's UPDATE completes while the holder still holds."""
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.update_row(GATE_ROW)
    writer = psycopg.connect(target.libpq, autocommit=True, application_name="pytest-writer")
    seen: dict[str, Any] = {}
    done = threading.Event()
    writer_thread = threading.Thread(target=lambda: (writer.execute(
        "UPDATE public.dot_config SET description = description WHERE key = %s", (OTHER_ROW,)), done.set()))

    def watch() -> None:
        with connect(target) as c:
            for _ in range(3000):  # the migration queues its SHARE request behind the holder
                row = c.execute("""SELECT pid FROM pg_locks WHERE relation = 'public.dot_config'::regclass
                                      AND mode = 'ShareLock' AND NOT granted""").fetchone()
                if row:
                    break
                c.execute("SELECT pg_sleep(0.01)")
            seen["migration"] = row[0] if row else None
            writer_thread.start()
            for _ in range(3000):  # the writer queues behind the migration
                blockers = c.execute("SELECT pg_blocking_pids(%s)", (writer.info.backend_pid,)).fetchone()[0]
                if blockers or done.is_set():
                    break
                c.execute("SELECT pg_sleep(0.01)")
            seen["writer_blocked_by"] = blockers

    watcher = threading.Thread(target=watch)

    def gave_up_try(_: str) -> None:
        seen["writer_done"] = done.wait(60)
        seen["holder_still_holds"] = holder.holding
        holder.release()

    sink = Transcript()
    sink.when("== least_privilege downgrade", lambda _: watcher.start())
    sink.when("-- lock timeout on try 1/", gave_up_try)
    try:
        # A lock_timeout long enough for the watcher to see both queues form.
        migrate.downgrade(target, "gate_protocol", project=ROOT, options=opts(lock_timeout_ms=2000), sink=sink)
    finally:
        watcher.join(60)
        if writer_thread.is_alive() or writer_thread.ident is not None:
            writer_thread.join(60)
        writer.close()
    assert seen["migration"] is not None
    assert seen["writer_blocked_by"] == [seen["migration"]]  # behind the migration, not the holder
    assert seen["writer_done"] is True and seen["holder_still_holds"] is True
    assert heads(target) == ["gate_protocol"]


# --------------------------------------------------------------------------- plain alembic, data scripts, self-tests


def test_plain_alembic_takes_the_retry_settings_as_x_arguments(new_db, holder_for, capsys) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.update_row()
    with pytest.raises(SystemExit) as exc:
        alembic_main(["-c", str(ROOT / "alembic.ini"), "-x", f"url={target.libpq}", "-x", "lock_timeout=100ms",
                      "-x", "lock_retries=1", "-x", "retry_budget=1min", "downgrade", "gate_protocol"])
    assert exc.value.code == 3
    out = capsys.readouterr()
    assert "3 of" not in out.err and "2 of 2 tries (--lock-retries 1)" in out.err
    assert f"pid {holder.pid} (application {HOLDER_APP}" in out.err
    assert heads(target) == [HEAD]


def test_a_runtime_script_is_retried_whole_and_its_audit_row_lists_the_tries(new_db, holder_for) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.lock_gate_row()
    sink = Transcript.releasing(holder)
    res = datascripts.apply(target, "290", approval_id="8d7a3f0e-2b1c-4d5e-9f60-718293a4b5c6", project=ROOT,
                            options=opts(), sink=sink)
    assert res.mode == "real"
    line, = sink.retry_lines()
    assert line.startswith("-- lock timeout on try 1/11 (runtime/290.sql:") and f"pid {holder.pid}" in line
    *_, (rev, direction, _mode, outcome, evidence) = log_rows(target)
    assert (rev, direction, outcome) == ("runtime/290", "apply", "applied")
    assert evidence["lock_retries"]["tries"] == 2
    assert evidence["lock_retries"]["timeouts"][0]["holders"][0]["pid"] == holder.pid


def test_a_runtime_script_that_never_gets_its_lock_is_refused_and_audited(new_db, holder_for) -> None:
    target = new_db(HEAD)
    before = fp(target)
    holder = holder_for(target)
    holder.lock_gate_row()
    with pytest.raises(LockRetriesExhausted) as exc:
        datascripts.apply(target, "290", approval_id="8d7a3f0e-2b1c-4d5e-9f60-718293a4b5c6", project=ROOT,
                          options=opts(lock_retries=1))
    assert f"pid {holder.pid}" in exc.value.message and exc.value.exit_code == 3
    assert fp(target) == before
    *_, (rev, _direction, _mode, outcome, evidence) = log_rows(target)
    assert (rev, outcome, evidence["lock_retries"]["tries"]) == ("runtime/290", "refused", 2)


def test_a_selftest_runs_with_the_timeouts_and_is_retried_whole(new_db, holder_for) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.lock_gate_row()
    sink = Transcript.releasing(holder)
    result, = migrate.selftest(target, ["gate_protocol"], project=ROOT, options=opts(), sink=sink)
    # passed: the transcript is the recorded one, the retry is not in it
    assert (result.status, result.lock_retries["tries"]) == ("passed", 2), result.reason
    line, = sink.retry_lines()
    assert line.startswith("-- lock timeout on try 1/11 (selftests/gate_protocol.sql:")
    assert f"waiting on pid {holder.pid} (application {HOLDER_APP}" in line


def test_a_selftest_that_never_gets_its_lock_exits_3_naming_the_holder(new_db, holder_for, run_cli) -> None:
    target = new_db(HEAD)
    holder = holder_for(target)
    holder.lock_gate_row()
    res = run_cli(target, "selftest", "280", "gate_protocol", "--lock-timeout", "100ms",
                  "--lock-retries", "1")
    assert res.exit_code == 3, res.output
    assert "selftest gate_protocol: REFUSED" in res.stdout and "selftest 280: PASSED" in res.stdout
    assert f"pid {holder.pid} (application {HOLDER_APP}" in res.stderr


# --------------------------------------------------------------------------- reads take no lock a writer waits for


def test_the_fingerprint_and_inventory_reads_take_only_access_share(new_db) -> None:
    """Inside one open transaction (so every lock they took is still held), then a writer
    of dot_config and of event_outbox goes through at once (lock_timeout 1 s would say otherwise)."""
    target = new_db(HEAD)
    with psycopg.connect(target.libpq) as reader:
        snapshot(reader, with_counts=True, project=ROOT)
        inventory_report(reader, ROOT)
        modes = reader.execute(
            """SELECT DISTINCT l.mode FROM pg_locks l JOIN pg_class k ON k.oid = l.relation
                WHERE l.pid = pg_backend_pid() AND k.relnamespace = 'public'::regnamespace""").fetchall()
        assert modes == [("AccessShareLock",)]
        with connect(target) as writer:
            writer.execute("SET lock_timeout = '1s'")
            writer.execute("UPDATE public.dot_config SET description = description WHERE key = %s", (GATE_ROW,))
            writer.execute("BEGIN")
            writer.execute("LOCK TABLE public.event_outbox IN ROW EXCLUSIVE MODE")
            writer.execute("ROLLBACK")
        reader.rollback()


# --------------------------------------------------------------------------- the settings and the schedule


def test_the_retry_settings_resolve_flag_then_environment_then_ini_then_default(tmp_path) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "env.py").write_text("")
    (tmp_path / "alembic.ini").write_text("[iucore]\nlock_retries = 7\nretry_budget = 90s\n")
    ini = Settings.resolve(project=tmp_path, environ={})
    assert (ini.lock_retries, ini.retry_budget_ms, ini.lock_timeout_ms) == (7, 90_000, 200)
    env = Settings.resolve(project=tmp_path, environ={"IUCORE_LOCK_RETRIES": "3", "IUCORE_RETRY_BUDGET": "2min"})
    assert (env.lock_retries, env.retry_budget_ms) == (3, 120_000)
    flag = Settings.resolve(project=tmp_path, environ={"IUCORE_LOCK_RETRIES": "3"}, lock_retries="0",
                            retry_budget="500ms")
    assert (flag.lock_retries, flag.retry_budget_ms) == (0, 500)
    (tmp_path / "alembic.ini").write_text("[iucore]\n")
    default = Settings.resolve(project=tmp_path, environ={})
    assert (default.lock_retries, default.retry_budget_ms, default.sources["lock_retries"]) == (40, 180_000, "default")
    assert default.run_options().lock_retries == 40


@pytest.mark.parametrize(("args", "needle"), [
    (["--lock-retries", "-1"], "lock_retries: '-1' is not a number of retries"),
    (["--lock-retries", "many"], "lock_retries: 'many' is not a number of retries"),
    (["--retry-budget", "soon"], "retry_budget: 'soon' is not a duration"),
])
def test_a_bad_retry_setting_is_exit_2_before_anything_runs(new_db, run_cli, args: list[str], needle: str) -> None:
    target = new_db(HEAD)
    res = run_cli(target, "db", "downgrade", "gate_protocol", *args)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and heads(target) == [HEAD]


def test_an_offline_script_cannot_retry_and_says_so(run_cli) -> None:
    res = run_cli(None, "db", "upgrade", "head", "--sql", "--lock-retries", "5")
    assert res.exit_code == 2
    assert "--sql writes a script and runs nothing: --lock-retries only apply to a run" in res.stderr


def test_the_sleeps_grow_with_jitter_and_the_tries_are_counted() -> None:
    """No database: the schedule alone. Each sleep lies in [cap/2, cap], cap doubling up to MAX_SLEEP_S."""
    retries = LockRetries(opts(lock_retries=9, retry_budget_ms=0), rng=random.Random(7))
    sleeps = []
    for _ in range(9):
        sleeps.append(retries.timed_out(None, "r1", "upgrade"))
        retries.next_try("r1")
    caps = [min(MAX_SLEEP_S, FIRST_SLEEP_S * 2 ** n) for n in range(9)]
    assert all(cap / 2 <= s <= cap for s, cap in zip(sleeps, caps, strict=True)), sleeps
    assert len(set(sleeps)) == 9  # jittered, not a fixed ladder
    with pytest.raises(LockRetriesExhausted) as exc:
        retries.timed_out(None, "r1", "upgrade")
    assert exc.value.data["tries"] == 10 and "10 of 10 tries (--lock-retries 9)" in exc.value.message
    assert "a lock whose holder was not seen" in exc.value.message
