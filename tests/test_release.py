"""Release engineering: self-tests, backups, the mandatory-gates preflight, checksums."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from iu_core.config import RunOptions
from iu_core.errors import SqlFileError
from iu_core.framework import migrate
from iu_core.framework.backup import BackupInvalid, verify_backup
from iu_core.framework.selftest import available, load
from iu_core.pg.target import Target

from .conftest import PG_MAJOR, ROOT, chain, connect, fp, head, restore, snap


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the project, to edit files without touching the repo."""
    dst = tmp_path / "project"
    dst.mkdir()
    shutil.copy(ROOT / "alembic.ini", dst)
    for d in ("migrations", "rollbacks", "selftests"):
        shutil.copytree(ROOT / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


# ---------------------------------------------------------------- self-tests
def test_every_revision_has_a_selftest_and_a_recorded_transcript() -> None:
    assert sorted(available(ROOT)) == sorted(chain())
    for rev in chain():
        assert (ROOT / "selftests" / f"{rev}.expected").is_file(), rev


def test_selftests_match_their_recorded_transcripts_at_head(new_db, run_cli) -> None:
    target = new_db(head())
    before = snap(target)
    res = run_cli(target, "selftest")
    assert res.exit_code == 0, res.output
    for rev in available(ROOT):
        assert f"selftest {rev}: PASSED" in res.stdout
    assert snap(target) == before


def test_a_transcript_mismatch_exits_4_with_a_unified_diff(new_db, run_cli, project: Path) -> None:
    target = new_db("substrate")
    expected = project / "selftests" / "substrate.expected"
    lines = expected.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("NOTICE:  T4 validate ok="))
    lines[i] = "NOTICE:  T4 validate ok=false, members=3"
    expected.write_text("\n".join(lines) + "\n")
    res = run_cli(target, "selftest", "substrate", project=project)
    assert res.exit_code == 4, res.output
    assert "--- selftests/substrate.expected" in res.stdout and "+++ substrate (this run)" in res.stdout
    assert "-NOTICE:  T4 validate ok=false, members=3" in res.stdout
    assert "+NOTICE:  T4 validate ok=true, members=3" in res.stdout


def test_a_selftest_that_raises_fails_and_leaves_nothing(new_db, run_cli, project: Path) -> None:
    target = new_db("substrate")
    (project / "selftests" / "substrate.sql").write_text(
        "BEGIN;\nUPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.composer_enabled';\n"
        "DO $$ BEGIN RAISE EXCEPTION 'T1: deliberate failure'; END $$;\nROLLBACK;\n"
    )
    before = snap(target)
    res = run_cli(target, "selftest", "substrate", project=project)
    assert res.exit_code == 1, res.output
    assert "ERROR:  T1: deliberate failure" in res.stdout
    assert "selftest substrate: FAILED — line 3: T1: deliberate failure" in res.stdout
    assert "nothing persisted" in res.stdout
    assert snap(target) == before


def test_a_failure_in_a_file_the_selftest_includes_names_that_file_and_line(
        new_db, run_cli, project: Path) -> None:
    target = new_db("substrate")
    (project / "selftests" / "lib" / "part.sql").write_text(
        "-- @guard\nSELECT 1;\n-- @body\nDO $$ BEGIN RAISE EXCEPTION 'T1: deliberate failure'; END $$;\n")
    (project / "selftests" / "substrate.sql").write_text("BEGIN;\n\\ir lib/part.sql\nROLLBACK;\n")
    res = run_cli(target, "selftest", "substrate", project=project)
    assert res.exit_code == 1, res.output
    assert "selftest substrate: FAILED — selftests/lib/part.sql:4: T1: deliberate failure" in res.stdout


@pytest.mark.parametrize("stmt", ["COMMIT;", "END;", "ROLLBACK;\nBEGIN;", "PREPARE TRANSACTION 'x';"])
def test_a_selftest_that_could_persist_is_rejected_before_it_runs(tmp_path: Path, stmt: str) -> None:
    p = tmp_path / "t.sql"
    p.write_text(f"BEGIN;\nINSERT INTO t VALUES (1);\n{stmt}\nSELECT 1;\nROLLBACK;\n")
    with pytest.raises(SqlFileError) as exc:
        load(p)
    assert "would end its transaction" in exc.value.message


def _selftest_with_an_intruder(target: Target, run_cli, project: Path,
                               selftest: str = "BEGIN;\nSELECT pg_sleep(1.5);\nROLLBACK;\n", after_s: float = 0.5,
                               sql: str = "INSERT INTO public.dot_config (key, value) VALUES ('iu_core.leak', 'x')"):
    """Record SELFTEST as substrate's self-test, then run it (--json) while another session
    commits SQL AFTER_S seconds in (by default: a 1.5 s self-test, a new dot_config row)."""
    (project / "selftests" / "substrate.sql").write_text(selftest)
    assert run_cli(target, "selftest", "substrate", "--record", project=project).exit_code == 0

    def intruder() -> None:
        time.sleep(after_s)
        with connect(target) as c:
            c.execute(sql)

    t = threading.Thread(target=intruder)
    t.start()
    res = run_cli(target, "--json", "selftest", "substrate", project=project)
    t.join()
    return res


def test_production_writing_during_a_selftest_does_not_fail_it(new_db, run_cli, project: Path) -> None:
    """Another session's commit moves a row count while the self-test runs: with
    nothing installed through which SQL commits elsewhere, a rolled-back
    transaction cannot have made it, so the self-test passes and says so."""
    target = new_db("substrate")
    res = _selftest_with_an_intruder(target, run_cli, project)
    assert res.exit_code == 0, res.output
    [r] = json.loads(res.stdout)
    assert r["status"] == "passed" and r["moved_by_others"] == ["public.dot_config"], r
    assert "moved by other sessions meanwhile: public.dot_config" in r["reason"]


def test_the_worker_selftests_pass_over_a_backlog_larger_than_the_worker_limit(new_db, run_cli) -> None:
    """Production may hold more pending events than one worker run takes (its
    limit is 10,000): on the default route and on a composer route, older than
    anything a self-test writes. The self-tests that run the worker take their
    own events only, so they pass there."""
    target = new_db(head())
    with connect(target) as conn:
        conn.execute(
            "INSERT INTO public.event_outbox (event_domain, event_type, event_stream, delivery_lane,"
            "                                 event_subject_ref, payload, actor, created_at)"
            " SELECT 'iu', 'piece_reordered', 'composer', 'delayed', 'backlog:' || g,"
            "        jsonb_build_object('collection_id', gen_random_uuid(), 'iu_id', gen_random_uuid(),"
            "                           'old_order', 0, 'new_order', 1),"
            "        'backlog', now() - interval '1 day' + g * interval '1 millisecond'"
            "   FROM generate_series(1, 10050) AS g")
    before = snap(target)
    res = run_cli(target, "selftest", "substrate", "260")
    assert res.exit_code == 0, res.output
    assert "selftest substrate: PASSED" in res.stdout and "selftest 260: PASSED" in res.stdout
    assert snap(target) == before


def test_a_worker_selftest_refuses_when_production_holds_events_older_than_its_own(new_db, run_cli) -> None:
    """260's worker checks put the self-test's own events first by dating them
    1970. An event of production's dated earlier would be taken first, so it
    refuses rather than take it (fail closed)."""
    target = new_db(head())
    with connect(target) as conn:
        conn.execute("INSERT INTO public.event_outbox (event_domain, event_type, event_stream, delivery_lane,"
                     "                                 event_subject_ref, actor, created_at)"
                     " VALUES ('iu', 'structure_op_applied', 'structure', 'immediate', 'old', 'backlog',"
                     "         timestamptz '1969-07-20 20:17:40+00')")
    res = run_cli(target, "selftest", "260")
    assert res.exit_code == 1, res.output
    assert "the outbox holds events dated before 1971" in res.output


def test_with_an_untrusted_language_installed_a_moved_row_count_fails_the_selftest(
        new_db, run_cli, project: Path) -> None:
    """Fail closed: an untrusted language (its own client library) lets SQL commit
    through another session, so a count that moved cannot be told from the
    self-test's own escape. The language here is real, and untrusted: plpgsql's
    call handler under another name (every server has that handler)."""
    target = new_db("substrate")
    with connect(target) as c:
        c.execute("CREATE FUNCTION public.bench_untrusted_handler() RETURNS language_handler "
                  "AS 'plpgsql', 'plpgsql_call_handler' LANGUAGE c")
        c.execute("CREATE LANGUAGE pluntrusted HANDLER public.bench_untrusted_handler")
    res = _selftest_with_an_intruder(target, run_cli, project)
    assert res.exit_code == 1, res.output
    [r] = json.loads(res.stdout)
    assert r["status"] == "failed" and "~ count public.dot_config" in r["reason"], r
    assert "language pluntrusted installed" in r["reason"], r


def test_a_selftest_that_commits_through_dblink_is_caught(new_db, run_cli, project: Path) -> None:
    """The escape the row counts exist for: an autonomous write that outlives the ROLLBACK."""
    target = new_db("substrate")
    with connect(target) as c:
        if not c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'dblink'").fetchone():
            pytest.skip("this server build has no dblink (the PostgreSQL 18 build has it)")
        c.execute("CREATE EXTENSION dblink")
        dsn = f"host={c.info.host} port={c.info.port} dbname={c.info.dbname} user={c.info.user}"
    (project / "selftests" / "substrate.sql").write_text(
        "BEGIN;\n"
        f"SELECT public.dblink_exec('{dsn}', 'INSERT INTO public.dot_config (key, value) VALUES (''iu_core.leak'', ''x'')');\n"
        "ROLLBACK;\n")
    res = run_cli(target, "selftest", "substrate", project=project)
    assert res.exit_code == 1, res.output
    assert "PERSISTED after ROLLBACK: ~ count public.dot_config; ~ rows public.dot_config (extension dblink installed" in res.stdout
    with connect(target) as c:
        assert c.execute("SELECT value FROM public.dot_config WHERE key = 'iu_core.leak'").fetchone() == ("x",)


def test_a_selftest_that_meets_a_concurrent_update_is_replayed_whole(new_db, run_cli, project: Path) -> None:
    """At REPEATABLE READ, updating a row another session changed after the
    snapshot is a serialization failure: the self-test is replayed, and passes."""
    target = new_db("substrate")
    update = "UPDATE public.dot_config SET value = value WHERE key = 'iu_core.composer_enabled'"
    res = _selftest_with_an_intruder(
        target, run_cli, project,
        f"BEGIN;\nSET transaction_isolation = 'repeatable read';\nSELECT pg_sleep(1.0);\n{update};\nROLLBACK;\n",
        after_s=0.4, sql=update)  # after the self-test's snapshot, before its UPDATE
    assert res.exit_code == 0, res.output
    [r] = json.loads(res.stdout)
    assert r["status"] == "passed" and r["conflict_retries"] == 1, r
    assert "replayed 1x after a serialization failure" in r["reason"]


def test_a_ledger_run_committed_under_the_catalog_selftests_replays_them(new_db) -> None:
    """280 and 034 set the ledger and the catalog aside in their transaction. A governed command
    logged by production after their snapshot is invisible to them, and deleting the catalog row
    it references broke the ledger's foreign key: the self-test FAILED on a busy database (the
    live bench's `selftest` scenario, 16:26 UTC). The set-aside reports it as a serialization
    failure, and the self-test is replayed on a new snapshot and passes; the run stays."""
    target = new_db(head())
    for name in ("280", "034"):
        writer = psycopg.connect(target.libpq)  # a transaction, left open
        pid = writer.info.backend_pid
        writer.execute(
            "SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', c.category, 'verify', 'verified', false,"
            " md5('production'), '{}'::jsonb, '{}'::jsonb, 'production-' || %s) FROM public.dot_iu_command_catalog c"
            " WHERE c.command_name = 'dot_iu_healthcheck'", (name,))

        def commit_once_waited_on(writer: psycopg.Connection = writer, pid: int = pid) -> None:
            # the self-test's DELETE of the catalog row waits for the run's key-share lock: commit then
            with connect(target) as watch:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not watch.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchone():
                    time.sleep(0.02)
            writer.commit()

        committer = threading.Thread(target=commit_once_waited_on)
        committer.start()
        try:
            [result] = migrate.selftest(target, [name], project=ROOT,
                                        options=RunOptions(lock_timeout_ms=30_000, actor="dba-jane"))
        finally:
            committer.join()
            writer.close()
        assert (result.status, result.conflict_retries) == ("passed", 1), (name, result.reason)
        assert "replayed 1x after a serialization failure" in result.reason
        with connect(target) as c:
            assert c.execute("SELECT count(*) FROM public.dot_iu_command_run WHERE actor = %s",
                             (f"production-{name}",)).fetchone() == (1,)


def test_a_selftest_of_an_unapplied_revision_is_skipped_with_a_reason(new_db, run_cli, project: Path) -> None:
    target = new_db("substrate")
    later = [r for r in available(project) if r != "substrate"]
    assert later, "the chain has self-tests beyond substrate"
    res = run_cli(target, "--json", "selftest", later[-1], project=project)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == [{"name": later[-1], "status": "skipped", "diff": "",
                    "reason": f"revision {later[-1]} is not applied (database at substrate)"}]


def test_record_writes_the_expected_file_and_refuses_a_failing_run(new_db, run_cli, project: Path) -> None:
    target = new_db("substrate")
    expected = project / "selftests" / "substrate.expected"
    expected.unlink()
    res = run_cli(target, "selftest", "substrate", project=project)
    assert res.exit_code == 4 and "run with --record and review it" in res.stdout
    assert run_cli(target, "selftest", "substrate", "--record", project=project).exit_code == 0
    assert expected.read_text() == (ROOT / "selftests" / "substrate.expected").read_text()
    (project / "selftests" / "substrate.sql").write_text("BEGIN;\nSELECT 1/0;\nROLLBACK;\n")
    assert run_cli(target, "selftest", "substrate", "--record", project=project).exit_code == 1
    assert expected.read_text() == (ROOT / "selftests" / "substrate.expected").read_text()


def test_unknown_selftest_is_bad_input(new_db, run_cli) -> None:
    res = run_cli(new_db("substrate"), "selftest", "nope")
    assert res.exit_code == 2 and "no self-test 'nope'" in res.stderr


# ---------------------------------------------------------------- backups
def test_backup_restores_to_the_same_catalog(new_db, run_cli, tmp_path: Path, databases) -> None:
    source = new_db(head())
    res = run_cli(source, "--json", "db", "backup", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)
    assert b["toc_entries"] > 50 and b["size"] == Path(b["path"]).stat().st_size
    assert Path(b["path"]).read_bytes()[:5] == b"PGDMP"
    restored = new_db()
    restore(b["path"], restored)
    assert fp(restored) == fp(source)


@pytest.mark.parametrize("damage", ["truncate", "header", "flip"])
def test_a_corrupt_or_truncated_backup_is_detected(new_db, tmp_path: Path, damage: str) -> None:
    b = migrate.backup(new_db("substrate"), tmp_path)
    p = Path(b.path)
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    elif damage == "header":
        data[:5] = b"XXXXX"
    else:  # a flipped byte in the compressed data of the last table
        data[-40] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BackupInvalid):
        verify_backup(p, server_major=PG_MAJOR)


def test_upgrade_with_backup_dir_records_the_backup_in_the_audit(new_db, run_cli, tmp_path: Path) -> None:
    target = new_db("substrate")
    second = chain()[1]
    res = run_cli(target, "db", "upgrade", second, "--backup-dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "backup verified:" in res.stdout
    with connect(target) as c:
        row = c.execute("SELECT backup FROM iucore.migration_log WHERE revision = %s AND outcome = 'applied'",
                        (second,)).fetchone()
    dump = next(tmp_path.glob("*.dump"))
    assert row[0]["path"] == str(dump) and row[0]["sha256"] == verify_backup(dump, server_major=PG_MAJOR).sha256


# ---------------------------------------------------------------- preflight
def test_preflight_passes_on_a_clean_database_with_a_backup(new_db, run_cli, tmp_path: Path) -> None:
    target = new_db(head())
    migrate.backup(target, tmp_path)
    res = run_cli(target, "--json", "db", "preflight", "--backup-dir", str(tmp_path),
                  "--expect-user", "postgres")
    assert res.exit_code == 3, res.output  # no --read-url: the read identity is unproven (tests/test_preflight.py)
    rep = json.loads(res.stdout)
    assert rep["passed"] == 13 and rep["total"] == 14
    assert [c["check"] for c in rep["checks"] if c["status"] == "FAIL"] == ["read identity (read-only role)"]
    probe = next(c for c in rep["checks"] if c["check"].startswith("write identity"))
    assert "IN_TX | iu_core.composer_enabled | true / ROLLBACK / AFTER_RB | iu_core.composer_enabled | false" in probe["evidence"]
    # Where the time went: each check's own duration, the self-test replay within the prior surface's.
    assert all(isinstance(c["ms"], float) and c["ms"] >= 0 for c in rep["checks"])
    assert sum(c["ms"] for c in rep["checks"]) <= rep["duration_ms"]
    surface = next(c for c in rep["checks"] if c["check"].startswith("prior surface"))
    assert 0 < surface["data"]["selftests_ms"] <= surface["ms"]


def test_preflight_fails_on_an_open_gate_a_long_transaction_and_a_held_lock(new_db, run_cli) -> None:
    from iu_core.framework.session import LOCK_KEY

    target = new_db("substrate")
    with connect(target) as c, connect(target) as holder:
        c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.delivery_enabled'")
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM public.dot_config")
        time.sleep(1.2)
        res = run_cli(target, "--json", "db", "preflight", "--max-xact-age", "1s",
                      "--expect-database", "production")
        holder.execute("ROLLBACK")
    assert res.exit_code == 3, res.output
    failed = {c["check"]: c["evidence"] for c in json.loads(res.stdout)["checks"] if c["status"] == "FAIL"}
    assert set(failed) == {"read identity (read-only role)", "write identity (reversible probe)",
                           "recent verified backup", "gates closed, never-flip intact", "migration lock free",
                           "no long transaction to queue behind", "prior surface verified"}
    assert "iu_core.delivery_enabled" in failed["gates closed, never-flip intact"]
    # the open gate shows in the substrate self-test's transcript too: the surface is not the recorded one
    assert "substrate MISMATCH" in failed["prior surface verified"]
    assert "expected 'production'" in failed["write identity (reversible probe)"]


# ---------------------------------------------------------------- checksums
def test_an_edited_applied_file_fails_verify_and_blocks_upgrade(new_db, run_cli, project: Path) -> None:
    target = new_db("substrate")
    assert run_cli(target, "db", "verify", project=project).exit_code == 0
    rb = project / "rollbacks" / "substrate.sql"
    rb.write_text(rb.read_text() + "\n-- a quiet edit\n")
    res = run_cli(target, "--json", "db", "verify", project=project)
    assert res.exit_code == 4
    problem = json.loads(res.stdout)["problems"][0]
    assert (problem["file"], problem["revision"], problem["status"]) == ("rollbacks/substrate.sql", "substrate", "changed")
    assert problem["recorded"] != problem["current"] and len(problem["current"]) == 64
    before = snap(target)
    res = run_cli(target, "db", "upgrade", project=project)
    assert res.exit_code == 3 and "rollbacks/substrate.sql (revision substrate) changed since apply" in res.stderr
    assert snap(target) == before
    res = run_cli(target, "db", "upgrade", "--allow-checksum-drift", "ticket OPS-42", project=project)
    assert res.exit_code == 0, res.output
    with connect(target) as c:
        overrides = c.execute("SELECT override FROM iucore.migration_log WHERE override IS NOT NULL").fetchall()
    assert overrides and all(o[0]["allow_checksum_drift"] == "ticket OPS-42" for o in overrides)


def test_a_revised_selftest_is_reported_not_drift(new_db, run_cli, project: Path) -> None:
    """A self-test is not applied history (it always rolls back): revising one after apply, as
    making it `\\ir` the real files did, is reported and neither fails verify nor blocks an upgrade."""
    target = new_db("substrate")
    st = project / "selftests" / "substrate.sql"
    st.write_text(st.read_text() + "\n-- a revised self-test\n")
    res = run_cli(target, "--json", "db", "verify", project=project)
    assert res.exit_code == 0, res.output
    files = {f["file"]: f for f in json.loads(res.stdout)["files"]}
    assert files["selftests/substrate.sql"]["status"] == "revised"
    assert files["selftests/substrate.sql"]["recorded"] != files["selftests/substrate.sql"]["current"]
    assert files["migrations/sql/substrate.sql"]["status"] == "ok"
    res = run_cli(target, "db", "verify", project=project)
    assert res.exit_code == 0 and "self-test revised since apply (not part of what ran): selftests/substrate.sql" in res.stdout
    res = run_cli(target, "db", "upgrade", "016", project=project)  # the checksum gate lets it pass
    assert res.exit_code == 0, res.output
    # the same edit to what ran is drift
    rb = project / "rollbacks" / "substrate.sql"
    rb.write_text(rb.read_text() + "\n-- a quiet edit\n")
    res = run_cli(target, "--json", "db", "verify", project=project)
    assert res.exit_code == 4
    assert [p["file"] for p in json.loads(res.stdout)["problems"]] == ["rollbacks/substrate.sql"]


def test_verify_fails_closed_when_nothing_was_recorded(new_db, run_cli) -> None:
    target = new_db("substrate")
    with connect(target) as c:
        c.execute("DELETE FROM iucore.migration_log")
    res = run_cli(target, "db", "verify")
    assert res.exit_code == 4 and "no checksum recorded at apply" in res.stdout
