"""Offline SQL for change review: the script `iucore db upgrade REV --sql` (and
`alembic upgrade A:B --sql`) prints, run by the embedded server's own psql with
ON_ERROR_STOP, reaches the online run's end state; a guard stops it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iu_core.framework.session import RevisionFiles
from iu_core.framework.sqlfiles import expand
from iu_core.pg.server import bin_dir

from .conftest import PG_MAJOR, ROOT, SAMPLE, chain, connect, fp, heads, ok

PSQL = str(bin_dir(PG_MAJOR) / "psql")
ALEMBIC = str(Path(sys.executable).with_name("alembic"))


def psql(target, script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "review.sql"
    f.write_text(script)
    return subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-f", str(f), target.libpq],
                          capture_output=True, text=True, timeout=300)


def log(target) -> list[tuple]:
    with connect(target) as c:
        return c.execute("SELECT revision, direction, mode, outcome, checksums, client FROM iucore.migration_log"
                         " ORDER BY log_id").fetchall()


def test_the_offline_script_of_the_whole_chain_reaches_the_online_end_state(new_db, run_cli, tmp_path) -> None:
    # --sql connects to nothing: an unreachable --url does not matter
    res = run_cli(None, "--url", "postgresql://nobody@127.0.0.1:1/nowhere", "db", "upgrade", "head", "--sql")
    assert res.exit_code == 0, res.output
    script = res.stdout
    revs = chain()
    for rev in revs:  # every file verbatim: no % doubled, no statement re-split
        assert expand(ROOT / "migrations" / "sql" / f"{rev}.sql").text in script  # verbatim, includes inlined
    assert "SET lock_timeout = 200;" in script and "SET statement_timeout = 60000;" in script
    assert "pg_advisory_lock(" in script

    target = new_db()
    ran = psql(target, script, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert run_cli(target, "inventory", "--check").exit_code == 0
    verify = run_cli(target, "db", "verify")
    assert verify.exit_code == 0, verify.output
    cur = json.loads(ok(run_cli(target, "--json", "db", "current")).stdout)
    assert cur["at_head"] and cur["current"] == [revs[-1]]
    assert fp(target) == fp(new_db(revs[-1]))  # same catalog, same reference rows, same alembic_version
    rows = log(target)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(rev, "upgrade", "real", "applied") for rev in revs]
    assert [r[4] for r in rows] == [RevisionFiles(ROOT, rev).checksums() for rev in revs]
    assert {r[5][:15] for r in rows} == {"iucore-offline:"}


def test_plain_alembic_sql_from_empty_then_down_then_a_range(empty_db, run_cli, tmp_path) -> None:
    env = {**os.environ, "IUCORE_ACTOR": "reviewer"}

    def alembic(*args: str) -> str:
        res = subprocess.run([ALEMBIC, *args], cwd=SAMPLE, env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    ran = psql(empty_db, alembic("upgrade", "head", "--sql"), tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert heads(empty_db) == ["a3"]
    down = run_cli(None, "--actor", "reviewer", "db", "downgrade", "a3:a1", "--sql", project=SAMPLE)
    assert down.exit_code == 0, down.output
    ran = psql(empty_db, down.stdout, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert heads(empty_db) == ["a1"]
    with connect(empty_db) as c:
        assert c.execute("SELECT to_regprocedure('public.sample_fn(integer)')").fetchone() == (None,)
    ran = psql(empty_db, alembic("upgrade", "a1:a3", "--sql"), tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert heads(empty_db) == ["a3"]
    assert run_cli(empty_db, "db", "verify", project=SAMPLE).exit_code == 0
    with connect(empty_db) as c:
        assert c.execute("SELECT revision, direction, actor FROM iucore.migration_log ORDER BY log_id").fetchall() == [
            ("a1", "upgrade", "reviewer"), ("a2", "upgrade", "reviewer"), ("a3", "upgrade", "reviewer"),
            ("a3", "downgrade", "reviewer"), ("a2", "downgrade", "reviewer"),
            ("a2", "upgrade", "reviewer"), ("a3", "upgrade", "reviewer")]
    # and it is a normal iucore database afterwards: an online run takes it from here
    assert run_cli(empty_db, "db", "downgrade", "base", project=SAMPLE).exit_code == 0 and heads(empty_db) == []


def test_a_failing_preflight_stops_the_script_and_what_committed_stays(empty_db, run_cli, tmp_path) -> None:
    script = ok(run_cli(None, "db", "upgrade", "--sql", project=SAMPLE)).stdout
    with connect(empty_db) as c:
        c.execute("CREATE VIEW public.sample_v AS SELECT 1 AS id")  # a3's preflight refuses this
    ran = psql(empty_db, script, tmp_path)
    assert ran.returncode == 3, ran.stdout  # psql: an error under ON_ERROR_STOP
    assert "a3 preflight: sample_v exists (already applied?)" in ran.stderr
    assert heads(empty_db) == ["a2"]  # a1 and a2 committed, each in its own transaction
    assert [(r[0], r[3]) for r in log(empty_db)] == [("a1", "applied"), ("a2", "applied")]
    before = fp(empty_db, SAMPLE)
    again = psql(empty_db, script, tmp_path)  # the same script on a database that moved: its position guard
    assert again.returncode == 3
    assert "iucore: a1 upgrade expects the database at base, but it is at a2; nothing of a1 was applied" in again.stderr
    assert fp(empty_db, SAMPLE) == before and len(log(empty_db)) == 2


def test_the_offline_script_keeps_the_checksum_gate(new_db, run_cli, tmp_path) -> None:
    project = tmp_path / "sample"
    shutil.copytree(SAMPLE, project)
    target = new_db("a1", project)
    with (project / "migrations" / "sql" / "a1.sql").open("a") as f:
        f.write("-- edited after it was applied\n")
    script = ok(run_cli(None, "db", "upgrade", "a1:head", "--sql", project=project)).stdout
    before = fp(target, SAMPLE)
    ran = psql(target, script, tmp_path)
    assert ran.returncode == 3
    assert ("iucore checksum gate: the applied revisions' files do not verify against their apply: "
            "a1 (files changed since apply). Nothing was changed") in ran.stderr
    assert fp(target, SAMPLE) == before and heads(target) == ["a1"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["downgrade", "a1", "--sql"], "name the start, FROM:TO"),
        (["upgrade", "--sql", "--rehearse"], "--rehearse only apply to a run"),
        (["upgrade", "a1:nope", "--sql"], "unknown revision 'nope'"),
        (["upgrade", "a3:a1", "--sql"], "From a3 the valid upgrade targets are none"),
        (["upgrade", "a1:a3"], "a range FROM:TO is for --sql"),
    ],
)
def test_bad_sql_requests_are_exit_2(run_cli, args: list[str], needle: str) -> None:
    res = run_cli(None, "--url", "postgresql://nobody@127.0.0.1:1/nowhere", "db", *args, project=SAMPLE)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "Traceback" not in res.output
