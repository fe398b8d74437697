"""Faults and load against a real server: killed backends at every statement
boundary, many concurrent upgrades, gate races, concurrent emitters and workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from iu_core.errors import RevisionFailed
from iu_core.framework import migrate
from iu_core.framework.fingerprint import current_heads, fingerprint, snapshot
from iu_core.framework.sqlfiles import MIGRATION_SECTIONS, ROLLBACK_SECTIONS, parse_script

from .conftest import ROOT, chain, connect, parent_of

pytestmark = pytest.mark.slow
IUCORE = str(Path(sys.executable).with_name("iucore"))


def state(target) -> tuple[str, list[str]]:
    with connect(target) as c:
        return fingerprint(snapshot(c)), current_heads(c)


# The sweep is exhaustive (every statement boundary of every revision, both directions)
# and tests what a killed backend leaves, which no major changes: `stress`, so CI runs it
# once, on 16 (production's major). conftest's summary says how many points it killed
# and how long it took.
@pytest.mark.stress
@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
@pytest.mark.parametrize("revision", chain())
def test_a_killed_backend_at_every_statement_boundary_changes_nothing(
    new_db, record_property, revision: str, direction: str
) -> None:
    """Terminate the migration's backend before each statement in turn; after each kill the
    catalog fingerprint and alembic_version are unchanged; then a clean run succeeds."""
    started = time.monotonic()
    parent = parent_of(revision)
    if direction == "upgrade":
        target = new_db(parent) if parent else new_db()
        script = parse_script(ROOT / "migrations" / "sql" / f"{revision}.sql", MIGRATION_SECTIONS)
        run = lambda **kw: migrate.upgrade(target, revision, **kw)  # noqa: E731
    else:
        target = new_db(revision)
        script = parse_script(ROOT / "rollbacks" / f"{revision}.sql", ROLLBACK_SECTIONS)
        run = lambda **kw: migrate.downgrade(target, parent or "base", **kw)  # noqa: E731
    before = state(target)
    killer = connect(target)
    survived = 0
    try:
        for point in range(len(script.statements)):
            def hook(conn: Any, stmt: Any, i: int, point: int = point) -> None:
                if i == point:
                    killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

            with pytest.raises(RevisionFailed):
                run(before_statement=hook)
            assert state(target) == before, f"{revision} {direction}: changed after a kill before statement {point}"
            survived += 1
    finally:
        killer.close()
    run()  # and a clean re-run succeeds
    assert state(target)[1] == ([revision] if direction == "upgrade" else ([parent] if parent else []))
    record_property("fault_points_survived", survived)  # summed in conftest's terminal summary
    record_property("fault_seconds", time.monotonic() - started)
    assert survived == len(script.statements) > 0


# ---------------------------------------------------------------- concurrency
def _upgrade_processes(target, n: int) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "IUCORE_DATABASE_URL": target.libpq}
    procs = [subprocess.Popen([IUCORE, "--json", "db", "upgrade", "head", "--lock-wait", "60s"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    return [subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate()) for p in procs]


@pytest.mark.stress
@pytest.mark.parametrize("start", ["empty", "behind_head"])
def test_eight_concurrent_upgrades_for_ten_rounds(new_db, start: str) -> None:
    """20 rounds in all (10 from empty, 10 from behind head), 8 processes each."""
    revs = chain()
    for _ in range(10):
        target = new_db() if start == "empty" else new_db(revs[len(revs) // 2])
        before = current_heads(connect(target))
        results = _upgrade_processes(target, 8)
        for r in results:
            assert r.returncode in (0, 3), r.stderr
            assert "UniqueViolation" not in r.stderr and "DuplicateObject" not in r.stderr
            if r.returncode == 3:
                assert "another migration run holds the iucore lock" in r.stderr, r.stderr
        applied = [rev["revision"] for r in results if r.returncode == 0
                   for rev in json.loads(r.stdout)["revisions"]]
        expected = revs[revs.index(before[0]) + 1:] if before else revs
        assert sorted(applied) == sorted(expected)  # each revision applied exactly once
        with connect(target) as c:
            rows = c.execute("SELECT revision, count(*) FROM iucore.migration_log WHERE mode = 'real'"
                             " AND outcome = 'applied' AND actor <> 'pytest-template' GROUP BY 1").fetchall()
            assert dict(rows) == {r: 1 for r in expected}
            assert current_heads(c) == [revs[-1]]


# ---------------------------------------------------------------- gate races
def test_gate_open_close_watchdog_races_leave_one_transition_per_change(conn_at) -> None:
    conn = conn_at(chain()[-1])
    dsn = conn.info.dsn
    gate = "iu_core.delivery_enabled"
    errors: list[str] = []

    def worker(k: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            for i in range(25):
                try:
                    if (i + k) % 3 == 0:
                        c.execute("SELECT public.fn_iu_gate_open(%s, %s, 'race', %s, 1)", (gate, str(uuid.uuid4()), f"w{k}"))
                    elif (i + k) % 3 == 1:
                        c.execute("SELECT public.fn_iu_gate_close(%s, 'race', %s)", (gate, f"w{k}"))
                    else:
                        c.execute("SELECT public.fn_iu_gate_watchdog(%s)", (f"w{k}",))
                except psycopg.Error as exc:  # only serialisation-style refusals are acceptable
                    if exc.sqlstate not in ("40001", "40P01"):
                        errors.append(f"{exc.sqlstate}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = conn.execute("SELECT prev_value, new_value, action FROM public.iu_gate_transition"
                        " WHERE gate_key = %s ORDER BY created_at, transition_id", (gate,)).fetchall()
    changes = [r for r in rows if r[0] != r[1]]
    # the history is a chain: each change starts from the value the previous one left
    value = "false"
    for prev, new, _ in changes:
        assert prev == value, rows
        value = new
    final = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (gate,)).fetchone()[0]
    assert final == value
    ledger = conn.execute("SELECT count(*) FROM public.dot_iu_command_run WHERE command_name IN"
                          " ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog')").fetchone()[0]
    assert ledger >= len(changes)


# ---------------------------------------------------------------- outbox & worker
def test_four_emitters_and_two_workers_on_10000_events(conn_at) -> None:
    conn = conn_at(chain()[-1])
    dsn = conn.info.dsn
    per = 2500
    dup_subjects = 50

    errors: list[BaseException] = []

    def guarded(fn: Any) -> Any:
        def run(*a: Any) -> None:
            try:
                fn(*a)
            except BaseException as exc:  # a thread's failure must fail the test
                errors.append(exc)
        return run

    @guarded
    def emitter(k: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            for i in range(0, per, 250):
                c.execute(
                    "SELECT public.fn_iu_emit_event('iu', 'piece_reordered', 'emitter-' || %s || '-' || n, '{}', 'load')"
                    " FROM generate_series(%s::int, %s::int) AS n", (k, i, i + 249))
            # every emitter also emits the same immediate-lane events: exactly one of each must land
            c.execute("SELECT public.fn_iu_emit_event('iu', 'structure_op_applied', 'dup-' || n, '{}', 'load')"
                      " FROM generate_series(1, %s::int) AS n", (dup_subjects,))

    results: list[dict[str, Any]] = []

    @guarded
    def worker() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            for _ in range(30):
                r = c.execute("SELECT public.fn_iu_route_worker_run('iu_outbound_default', 1000)").fetchone()[0]
                results.append(r)

    threads = [threading.Thread(target=emitter, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    while True:  # drain what the racing workers left
        r = conn.execute("SELECT public.fn_iu_route_worker_run('iu_outbound_default', 10000)").fetchone()[0]
        results.append(r)
        if r["seen"] == 0:
            break
    delayed = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM public.event_outbox"
                           " WHERE event_type = 'piece_reordered'").fetchone()
    assert delayed == (4 * per, 4 * per)  # none lost
    dups = conn.execute("SELECT count(*) FROM public.event_outbox WHERE event_type = 'structure_op_applied'").fetchone()
    assert dups == (dup_subjects,)  # immediate-lane dedupe exact
    events = conn.execute("SELECT count(*) FROM public.event_outbox WHERE NOT (event_domain = 'system')").fetchone()[0]
    attempts = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM public.iu_route_attempt"
                            " WHERE route_code = 'iu_outbound_default'").fetchone()
    assert attempts == (events, events)  # every event attempted, none twice
    assert sum(r["attempts_written"] for r in results) == events
    assert conn.execute("SELECT count(*) FROM public.iu_route_attempt WHERE attempt_status = 'sent'").fetchone() == (0,)
