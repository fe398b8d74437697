"""Backups a DBA can rely on (issues 9, 10, 12): exclusive 0600 files, no stray file after a
failure or an interrupt, of THIS database, restorable by the server's own major, parallel
directory format — all against the real embedded server and the real pg_dump/pg_restore."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from iu_core.errors import Failed
from iu_core.framework import migrate
from iu_core.framework.backup import (
    BackupInvalid,
    candidates,
    create_exclusive,
    verify_backup,
)
from iu_core.pg.target import Target

from .conftest import PG_MAJOR, ROOT, connect, dbname, files_under, fp, head, restore, run_preflight

SIDECAR_KEYS = {
    "iucore_backup", "name", "format", "jobs", "size", "sha256", "sha256_of", "toc_entries", "created_at",
    "database", "database_oid", "system_identifier", "server_version", "server_version_num",
    "pg_dump", "pg_dump_version", "archive_version", "restorable_by",
}


def live_identity(target: Target) -> tuple[str, int, str]:
    with connect(target) as c:
        row = c.execute("SELECT current_database(), (SELECT oid::bigint FROM pg_database"
                        " WHERE datname = current_database()),"
                        " (SELECT system_identifier::text FROM pg_control_system())").fetchone()
    return row[0], row[1], row[2]


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def build_directus_like(target: Target) -> None:
    """A database with no IU Core at all: a few Directus-style tables, a view, a function, a trigger."""
    with connect(target) as c:
        c.execute("""
            CREATE TABLE public.directus_users (id uuid PRIMARY KEY, email text UNIQUE, status text);
            CREATE TABLE public.directus_activity (id serial PRIMARY KEY, action text, ts timestamptz DEFAULT now());
            CREATE VIEW public.directus_active_users AS SELECT id, email FROM public.directus_users WHERE status = 'active';
            CREATE FUNCTION public.directus_touch() RETURNS trigger LANGUAGE plpgsql AS
              $$BEGIN INSERT INTO public.directus_activity (action) VALUES (TG_OP); RETURN NEW; END$$;
            CREATE TRIGGER directus_users_touch AFTER INSERT ON public.directus_users
              FOR EACH ROW EXECUTE FUNCTION public.directus_touch();
            INSERT INTO public.directus_users VALUES (gen_random_uuid(), 'a@example.org', 'active');
        """)


@pytest.fixture
def login_role(databases) -> Iterator[Any]:
    """Factory: a Target for a non-superuser LOGIN role that owns a fresh empty database."""
    made: list[tuple[str, str]] = []

    def make() -> Target:
        role = f"iu_owner_{uuid.uuid4().hex[:8]}"
        databases.admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        name = databases.create()
        databases.admin.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
        made.append((name, role))
        url = databases.server.url(name).replace("postgres@", f"{role}@", 1)
        return Target.parse(url)

    yield make
    for name, role in made:
        databases.drop(name)
        databases.admin.execute(f'DROP ROLE IF EXISTS "{role}"')


# ---------------------------------------------------------------- what every backup is
@pytest.mark.parametrize("shape", ["empty", "directus_only"])
def test_a_database_without_iu_core_backs_up_verifies_and_records_its_identity(
        new_db, run_cli, tmp_path: Path, shape: str) -> None:
    target = new_db()
    if shape == "directus_only":
        build_directus_like(target)
    out = tmp_path / "backups"
    res = run_cli(target, "--json", "db", "backup", "--out", str(out))
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)
    dump, side = Path(b["path"]), Path(b["sidecar"])
    assert files_under(out) == sorted([dump.name, side.name])
    assert dump.read_bytes()[:5] == b"PGDMP" and b["size"] == dump.stat().st_size
    assert (b["toc_entries"] == 0) if shape == "empty" else (b["toc_entries"] >= 5)
    assert mode(dump) == mode(side) == 0o600
    record = json.loads(side.read_text())
    assert set(record) == SIDECAR_KEYS
    assert (record["database"], record["database_oid"], record["system_identifier"]) == live_identity(target)
    assert record["sha256"] == b["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert record["restorable_by"].endswith(f") {record['server_version']}")  # the server's own pg_restore


def test_a_first_deploy_on_an_empty_database_takes_its_backup(new_db, run_cli, tmp_path: Path) -> None:
    target = new_db()
    res = run_cli(target, "db", "upgrade", "head", "--backup-dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    dump = next(tmp_path.glob("*.dump"))
    with connect(target) as c:
        recorded = {r[0]["path"] for r in c.execute(
            "SELECT backup FROM iucore.migration_log WHERE outcome = 'applied'")}
    assert recorded == {str(dump)}
    assert verify_backup(dump, server_major=PG_MAJOR).toc_entries == 0  # of the empty database


def test_the_jobs_option_dumps_a_verified_private_directory_that_restores(
        new_db, run_cli, tmp_path: Path) -> None:
    source = new_db(head())
    res = run_cli(source, "--json", "db", "backup", "--out", str(tmp_path), "--jobs", "2")
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)
    d = Path(b["path"])
    assert b["format"] == "directory" and b["jobs"] == 2 and d.is_dir() and d.name.endswith(".dir")
    assert mode(d) == 0o700 and {mode(f) for f in d.iterdir()} == {0o600}
    assert len(list(d.glob("*.dat.gz"))) > 5  # table data in their own files: the parallel layout
    # the documented digest: `cd DIR && LC_ALL=C sha256sum * | sha256sum`, computed by coreutils
    listing = subprocess.run("sha256sum *", shell=True, cwd=d, capture_output=True, check=True,
                             env={**os.environ, "LC_ALL": "C"}).stdout
    assert b["sha256"] == hashlib.sha256(listing).hexdigest()
    assert b["size"] == sum(f.stat().st_size for f in d.iterdir())
    restored = new_db()
    restore(d, restored, "-j", "2")
    assert fp(restored) == fp(source)


@pytest.mark.parametrize("damage", ["truncated data file", "extra file", "symlink inside"])
def test_a_damaged_directory_backup_fails_verification(new_db, tmp_path: Path, damage: str) -> None:
    b = migrate.backup(new_db("substrate"), tmp_path / "out", jobs=2)
    d = Path(b.path)
    assert verify_backup(d, server_major=PG_MAJOR).sha256 == b.sha256
    if damage == "truncated data file":
        data = max(d.glob("*.dat.gz"), key=lambda f: f.stat().st_size)
        data.write_bytes(data.read_bytes()[:-20])
    elif damage == "extra file":
        (d / "notes.txt").write_text("x")
    else:
        (tmp_path / "elsewhere.dat").write_bytes(b"x")
        (d / "9999.dat.gz").symlink_to(tmp_path / "elsewhere.dat")
    with pytest.raises(BackupInvalid):
        verify_backup(d, server_major=PG_MAJOR)


# ---------------------------------------------------------------- created exclusively
@pytest.mark.parametrize("planted", ["symlink to a victim file", "dangling symlink", "existing file"])
def test_the_backup_file_is_created_exclusively_never_through_what_is_planted(
        tmp_path: Path, planted: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o644)
    name = "db-pre-iucore-20250101T000000Z-00000000.dump"
    if planted == "symlink to a victim file":
        (out / name).symlink_to(victim)
    elif planted == "dangling symlink":
        (out / name).symlink_to(tmp_path / "would-be-created")
    else:
        (out / name).write_bytes(b"an older dump")
    before = {p: (p.lstat().st_mode, p.read_bytes() if p.exists() else None) for p in (out / name, victim)}
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Failed, match="already exists"):
            create_exclusive(fd, name, out_dir=out)
        with pytest.raises(Failed, match="already exists"):
            create_exclusive(fd, name, out_dir=out, directory=True)
    finally:
        os.close(fd)
    assert {p: (p.lstat().st_mode, p.read_bytes() if p.exists() else None) for p in (out / name, victim)} == before
    assert not (tmp_path / "would-be-created").exists()


def test_created_files_are_0600_and_directories_0700_whatever_the_umask(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    old = os.umask(0)
    try:
        os.close(create_exclusive(fd, "a.dump", out_dir=tmp_path))
        os.close(create_exclusive(fd, "a.dir", out_dir=tmp_path, directory=True))
    finally:
        os.umask(old)
        os.close(fd)
    assert (mode(tmp_path / "a.dump"), mode(tmp_path / "a.dir")) == (0o600, 0o700)


def test_a_hostile_database_name_cannot_place_the_backup_elsewhere(databases, tmp_path: Path) -> None:
    name = f"../../x {uuid.uuid4().hex[:6]}/.."
    databases.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        out = tmp_path / "a" / "b" / "out"
        target = databases.server.target(name)
        b = migrate.backup(target, out)
        assert Path(b.path).parent == out and b.database == name
        assert len(files_under(out)) == 2
        assert set(files_under(tmp_path)) == {"a", "a/b", "a/b/out", *(f"a/b/out/{f}" for f in files_under(out))}
    finally:
        databases.drop(name)


@pytest.mark.parametrize("out", ["/dev/null", "a regular file", "under a regular file"])
def test_a_backup_directory_that_is_not_one_is_bad_input(new_db, run_cli, tmp_path: Path, out: str) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    path = {"/dev/null": "/dev/null", "a regular file": str(f), "under a regular file": str(f / "sub")}[out]
    res = run_cli(new_db(), "db", "backup", "--out", path)
    assert res.exit_code == 2, res.output
    assert "is not a directory" in res.stderr and "Traceback" not in res.output
    assert files_under(tmp_path) == ["file"] and f.read_text() == "x"


# ---------------------------------------------------------------- no stray file
@pytest.mark.skipif(not any(m > PG_MAJOR for m, _ in candidates("pg_dump")),
                    reason="needs a pg_dump newer than the server's major")
def test_a_dump_the_servers_pg_restore_cannot_read_fails_and_leaves_nothing(new_db, tmp_path: Path) -> None:
    newer = max(candidates("pg_dump"))[1]  # e.g. pg_dump 18 against the 16 server
    target = new_db("substrate")
    with pytest.raises(BackupInvalid, match=r"the server's pg_restore .* cannot read it: .*unsupported version"):
        migrate.backup(target, tmp_path, pg_dump=newer)
    assert files_under(tmp_path) == []
    # the same archive, made outside iucore, fails verify too: it is not restorable on this server
    made = tmp_path / "by-newer.dump"
    subprocess.run([newer, "-Fc", "-f", str(made), "-d", target.libpq], check=True)
    with pytest.raises(BackupInvalid, match="cannot read it"):
        verify_backup(made, server_major=PG_MAJOR)
    assert verify_backup(made, server_major=max(candidates("pg_restore"))[0]).toc_entries > 50


def test_a_failing_pg_dump_leaves_nothing(login_role, databases, run_cli, tmp_path: Path) -> None:
    target = login_role()
    with psycopg.connect(databases.server.url(dbname(target)), autocommit=True) as su:
        su.execute("CREATE TABLE public.not_yours (x int)")  # owned by postgres: the role cannot read it
    res = run_cli(target, "db", "backup", "--out", str(tmp_path))
    assert res.exit_code == 1, res.output
    assert "pg_dump failed" in res.stderr and "permission denied" in res.stderr
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_backup_leaves_nothing_and_no_pg_dump_running(
        new_db, tmp_path: Path, sig: signal.Signals) -> None:
    target = new_db("substrate")
    out = tmp_path / "out"
    # Activity is read on its own connection: inside the holder's transaction it would be a snapshot.
    with connect(target) as holder, connect(target) as watch:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE public.dot_config IN ACCESS EXCLUSIVE MODE")  # pg_dump waits for it
        proc = subprocess.Popen(
            [sys.executable, "-m", "iu_core.cli", "--project", str(ROOT), "--url", target.libpq,
             "db", "backup", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(600):  # until pg_dump is blocked on the lock, with its file created
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
                    " AND wait_event_type = 'Lock'").fetchone()[0]
                if waiting and list(out.glob("*.dump")):
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            else:
                pytest.fail("pg_dump never reached the lock")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            # Still holding the lock: a pg_dump that survived its parent would be waiting right now.
            survivors = pg_dump_processes_for(dbname(target))
        finally:
            if proc.poll() is None:
                proc.kill()
            holder.execute("ROLLBACK")
    assert proc.returncode != 0, err
    assert "Traceback" not in err
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
    assert files_under(out) == []
    assert survivors == []


def pg_dump_processes_for(database: str) -> list[int]:
    """pids of pg_dump processes whose command line names DATABASE (read from /proc)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_dump") and any(database.encode() in a for a in argv):
            found.append(int(d.name))
    return found


# ---------------------------------------------------------------- of THIS database
def preflight_backup(run_cli, target: Target, backup_dir: Path) -> dict[str, Any]:
    _, rep, _ = run_preflight(run_cli, target, "--backup-dir", str(backup_dir))
    return next(c for c in rep["checks"] if c["check"] == "recent verified backup")


def test_preflight_accepts_only_a_backup_of_this_database(new_db, databases, run_cli, tmp_path: Path) -> None:
    this, other = new_db(head()), new_db(head())
    migrate.backup(other, tmp_path)
    check = preflight_backup(run_cli, this, tmp_path)
    assert check["status"] == "FAIL", check
    assert "other databases only" in check["evidence"] and dbname(other) in check["evidence"]
    mine = migrate.backup(this, tmp_path)
    check = preflight_backup(run_cli, this, tmp_path)
    assert check["status"] == "PASS", check
    assert check["data"]["path"] == mine.path and check["data"]["system_identifier"] == live_identity(this)[2]


def test_a_recreated_database_of_the_same_name_is_not_the_backed_up_one(databases, run_cli, tmp_path: Path) -> None:
    name = databases.create()
    try:
        target = databases.target(name)
        migrate.backup(target, tmp_path)
        assert preflight_backup(run_cli, target, tmp_path)["status"] == "PASS"
        databases.drop(name)
        databases.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        check = preflight_backup(run_cli, target, tmp_path)
        assert check["status"] == "FAIL" and "no backup of database" in check["evidence"], check
    finally:
        databases.drop(name)


@pytest.mark.parametrize("edit", ["system identifier of another cluster", "sha256", "no sidecar"])
def test_a_backup_whose_sidecar_does_not_vouch_for_it_fails_preflight(
        new_db, run_cli, tmp_path: Path, edit: str) -> None:
    target = new_db()
    b = migrate.backup(target, tmp_path)
    side = Path(b.path + ".json")
    record = json.loads(side.read_text())
    if edit == "no sidecar":
        side.unlink()
        needle = "without an iucore sidecar"
    elif edit == "sha256":
        record["sha256"] = "0" * 64
        side.write_text(json.dumps(record))
        needle = "sidecar recorded"
    else:
        record["system_identifier"] = str(int(record["system_identifier"]) + 1)
        side.write_text(json.dumps(record))
        needle = "no backup of database"
    check = preflight_backup(run_cli, target, tmp_path)
    assert check["status"] == "FAIL" and needle in check["evidence"], check


def test_a_stale_backup_fails_preflight(new_db, run_cli, tmp_path: Path) -> None:
    target = new_db()
    b = migrate.backup(target, tmp_path)
    side = Path(b.path + ".json")
    record = json.loads(side.read_text())
    record["created_at"] = "2020-01-01T00:00:00Z"
    side.write_text(json.dumps(record))
    check = preflight_backup(run_cli, target, tmp_path)
    assert check["status"] == "FAIL" and "h old" in check["evidence"], check


def test_a_non_superuser_owner_backs_up_and_preflight_needs_the_system_identifier(
        login_role, databases, run_cli, tmp_path: Path) -> None:
    target = login_role()
    with connect(target) as c:
        assert c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    res = run_cli(target, "--json", "db", "backup", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["system_identifier"] == live_identity(target)[2]
    assert preflight_backup(run_cli, target, tmp_path)["status"] == "PASS"
    # A DBA may revoke pg_control_system() (per database): then no backup can be tied to the cluster.
    with psycopg.connect(databases.server.url(dbname(target)), autocommit=True) as su:
        su.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
    check = preflight_backup(run_cli, target, tmp_path)
    assert check["status"] == "FAIL" and "GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system()" in check["evidence"]
    res = run_cli(target, "--json", "db", "backup", "--out", str(tmp_path / "later"))
    assert res.exit_code == 0 and json.loads(res.stdout)["system_identifier"] is None
