"""Test harness: a real PostgreSQL, never a mock.

One throwaway embedded cluster per test session (major from
IUCORE_TEST_PG_MAJOR, default: the embedded default), a fresh database per
test, cloned from a template migrated once per (project, revision).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import conninfo

from iu_core.cli import cli
from iu_core.config import RunOptions
from iu_core.domain.roles import apply, plan_operator, plan_readonly
from iu_core.errors import RevisionRefused
from iu_core.framework import layout, migrate
from iu_core.framework.backup import restorer
from iu_core.framework.fingerprint import current_heads, diff, fingerprint, snapshot
from iu_core.pg.server import EmbeddedServer, default_major
from iu_core.pg.target import Target

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = Path(__file__).resolve().parent / "projects"
SAMPLE = PROJECTS / "sample"  # three plain revisions a1 → a2 → a3
BROKEN = PROJECTS / "broken_postcheck"  # b2's post-check fails
PG_MAJOR = int(os.environ.get("IUCORE_TEST_PG_MAJOR") or default_major())

# Durability buys nothing in a throwaway cluster and costs seconds per test.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def pytest_report_header(config: pytest.Config) -> str:
    return f"iucore: embedded PostgreSQL {PG_MAJOR} (IUCORE_TEST_PG_MAJOR)"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `pure` every test that reaches no PostgreSQL of IUCORE_TEST_PG_MAJOR.

    The rule is one fixture: `pg_major`. The session cluster (`pg_server`, and so
    every database fixture) depends on it, and so does any test that starts a
    cluster of its own or runs that major's binaries. A test whose fixtures never
    reach it runs the same on every major: CI runs it once, on 16, and deselects
    it on the second major with `-m "not pure"`.
    """
    for item in items:
        if "pg_major" not in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pure)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the fault-injection points survived (summed across xdist workers)."""
    points = runs = 0
    seconds = 0.0
    for rep in terminalreporter.stats.get("passed", []):
        for key, value in getattr(rep, "user_properties", []):
            if key == "fault_points_survived":
                points, runs = points + int(value), runs + 1
            elif key == "fault_seconds":
                seconds += float(value)
    if runs:
        terminalreporter.write_line(
            f"fault injection: {points} statement boundaries killed and survived across {runs} revision runs "
            f"in {seconds:.0f} s (summed over the workers; PostgreSQL {PG_MAJOR})")


class Databases:
    """Creates databases on the session cluster, from templates migrated once."""

    _seq = itertools.count()

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.admin = psycopg.connect(server.url("postgres"), autocommit=True)
        self.templates: dict[tuple[Path, str], str] = {}

    def target(self, name: str) -> Target:
        return Target.parse(self.server.url(name))

    def create(self, template: str | None = None) -> str:
        name = f"t{os.getpid()}_{next(self._seq)}"
        tpl = f' TEMPLATE "{template}"' if template else " TEMPLATE template0"
        self.admin.execute(f'CREATE DATABASE "{name}"{tpl}')
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def template_at(self, revision: str, project: Path = ROOT) -> str:
        """A template database migrated to `revision` (built once per session)."""
        key = (project, revision)
        if key not in self.templates:
            name = f"tpl_{project.name}_{revision}".replace("-", "_").lower()
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            migrate.upgrade(self.target(name), revision, project=project,
                            options=RunOptions(actor="pytest-template"))
            self.templates[key] = name
        return self.templates[key]


@pytest.fixture(scope="session")
def pg_major() -> int:
    """The PostgreSQL major under test. Request it (directly or through pg_server) to
    say the test depends on the server: tests that do not are marked `pure`."""
    return PG_MAJOR


@pytest.fixture(scope="session")
def pg_server(pg_major: int) -> Iterator[EmbeddedServer]:
    # A short path: the unix socket lives in it.
    home = Path(tempfile.mkdtemp(prefix="iucore-test-"))
    server = EmbeddedServer(home=home, major=pg_major, settings=FAST_SETTINGS)
    server.ensure_running()
    yield server
    server.destroy()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def databases(pg_server: EmbeddedServer) -> Iterator[Databases]:
    dbs = Databases(pg_server)
    yield dbs
    dbs.admin.close()


@pytest.fixture
def new_db(databases: Databases) -> Iterator[Callable[..., Target]]:
    """Factory: new_db() → an empty database; new_db("substrate") → one at that revision."""
    made: list[str] = []

    def make(revision: str | None = None, project: Path = ROOT) -> Target:
        tpl = databases.template_at(revision, project) if revision else None
        name = databases.create(tpl)
        made.append(name)
        return databases.target(name)

    yield make
    for name in made:
        databases.drop(name)


@pytest.fixture
def empty_db(new_db: Callable[..., Target]) -> Target:
    return new_db()


@pytest.fixture
def conn_at(new_db: Callable[..., Target]) -> Iterator[Callable[[str], psycopg.Connection[Any]]]:
    """Factory: conn_at("substrate") → an autocommit connection to a fresh database at that revision."""
    conns: list[psycopg.Connection[Any]] = []

    def make(revision: str) -> psycopg.Connection[Any]:
        target = new_db(revision)
        conn = psycopg.connect(target.libpq, autocommit=True)
        conns.append(conn)
        return conn

    yield make
    for c in conns:
        c.close()


@pytest.fixture
def conn(conn_at: Callable[[str], psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
    """An autocommit connection to a fresh database at the chain's head (a module that tests
    an earlier revision defines its own `conn`)."""
    return conn_at(head())


@pytest.fixture
def login(conn: psycopg.Connection[Any]) -> Iterator[Callable[[str], tuple[str, psycopg.Connection[Any]]]]:
    """login(kind) → (role, an autocommit connection logged in as it) on `conn`'s database: `logins`."""
    with logins(conn) as make:
        yield make


_readonly_roles = itertools.count()


@pytest.fixture
def readonly_role(databases: Databases) -> Iterator[Callable[[Target], Target]]:
    """readonly_role(target) → the same database as a real LOGIN role (not superuser) given
    the read-only policy of `db grant --readonly`. Request it BEFORE new_db: the role is
    dropped after the databases it was granted on."""
    from iu_core.domain.roles import apply, plan_readonly

    made: list[str] = []

    def make(target: Target) -> Target:
        name = f"ro_{os.getpid()}_{next(_readonly_roles)}"
        databases.admin.execute(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        made.append(name)
        with connect(target) as c:
            apply(c, plan_readonly(c, name))
        return Target.of(**{**target.params, "user": name})

    yield make
    for name in made:
        databases.admin.execute(f'DROP ROLE IF EXISTS "{name}"')


# ---------------------------------------------------------------- shared helpers
def connect(target: Target) -> psycopg.Connection[Any]:
    return psycopg.connect(target.libpq, autocommit=True)


def one(conn: psycopg.Connection[Any], sql: str, params: Any = ()) -> Any:
    """The first column of the query's first row (there must be one)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, f"no row: {sql}"
    return row[0]


def count(conn: psycopg.Connection[Any], table: str, where: str = "true", params: Any = ()) -> int:
    """Rows of `table` (a name written in the test, never input) WHERE `where`."""
    return int(one(conn, f"SELECT count(*) FROM {table} WHERE {where}", params))


def set_config(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    """Write a dot_config row (a gate) directly, as an owner may; the row must exist."""
    cur = conn.execute("UPDATE public.dot_config SET value = %s WHERE key = %s", (value, key))
    assert cur.rowcount == 1, key


def open_gates(conn: psycopg.Connection[Any], *keys: str, ttl: int = 600) -> None:
    """Open each gate through the gate protocol (fn_iu_gate_open, a fresh approval id)."""
    for k in keys:
        conn.execute("SELECT public.fn_iu_gate_open(%s, %s, 'test', 'pytest', %s)", (k, str(uuid.uuid4()), ttl))


def create_iu(conn: psycopg.Connection[Any], address: str, title: str | None = None, kind: str = "piece",
              actor: str = "pytest") -> uuid.UUID:
    """A piece through the fn_iu_create birth gate (titled ADDRESS in capitals by default)."""
    answer = one(conn, "SELECT public.fn_iu_create(%s, %s, %s, %s)", (address, kind, title or address.upper(), actor))
    assert answer["status"] == "created", answer
    return uuid.UUID(answer["iu_id"])


def chain(project: Path = ROOT) -> list[str]:
    """The project's revisions, oldest first (as Alembic reads them)."""
    return [r.revision for r in reversed(list(layout.script_directory(project).walk_revisions()))]


def upto(revision: str, project: Path = ROOT) -> list[str]:
    """The chain's revisions up to and including `revision`."""
    revs = chain(project)
    return revs[: revs.index(revision) + 1]


def head(project: Path = ROOT) -> str:
    """The project's head revision."""
    rev = layout.script_directory(project).get_current_head()
    assert rev is not None, f"{project}: no revisions"
    return rev


def parent_of(revision: str, project: Path = ROOT) -> str | None:
    """The revision before `revision` (None for the first)."""
    down = layout.script_directory(project).get_revision(revision).down_revision
    assert down is None or isinstance(down, str), f"{revision}: a merge revision"
    return down


def dbname(target: Target) -> str:
    """The name of the target's database."""
    name = target.dbname
    assert name, target.display
    return name


def project_copy(tmp_path: Path, acknowledged: str | None = None) -> Path:
    """A copy of the project under tmp_path (the real SQL and revisions), with its own acknowledged.toml."""
    root = tmp_path / "project"
    root.mkdir(parents=True)
    for d in ("migrations", "rollbacks", "selftests"):  # copies: a `\\ir` may not leave the project
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", root / "alembic.ini")
    if acknowledged is not None:
        (root / "acknowledged.toml").write_text(acknowledged, encoding="utf-8")
    return root


def files_under(d: Path) -> list[str]:
    """Every file and directory under d, relative, sorted."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def snap(target: Target, *, counts: bool = True, project: Path = ROOT) -> dict[str, dict[str, str]]:
    """The catalog snapshot of the project's objects in `target` (with row counts unless
    counts=False): what must not change when a run is refused, rolled back or rehearsed."""
    with connect(target) as c:
        return snapshot(c, with_counts=counts, project=project)


def refused(run: Callable[..., object], target: Target, *args: Any, **kw: Any) -> str:
    """run(target, *args, **kw) — an upgrade or downgrade a guard must refuse: the
    RevisionRefused's message, once `target` is checked to be exactly as it was (catalog,
    reference rows, every row count, the version row; `snap`)."""
    before = snap(target)
    with pytest.raises(RevisionRefused) as exc:
        run(target, *args, **kw)
    after = snap(target)
    assert after == before, diff(before, after)
    return exc.value.message


def set_version(target: Target, revision: str) -> None:
    """Pretend the bookkeeping says `revision` (to run a rollback or preflight out of order)."""
    with connect(target) as c:
        assert c.execute("UPDATE iucore.alembic_version SET version_num = %s", (revision,)).rowcount == 1


def restore(archive: str | Path, into: Target, *options: str) -> None:
    """pg_restore (the test server's major) of a backup into `into`, with --no-owner."""
    proc = subprocess.run([restorer(PG_MAJOR), "--no-owner", *options, "-d", into.libpq, str(archive)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def heads(target: Target) -> list[str]:
    """The revisions iucore.alembic_version holds ([] when it has none, or no table)."""
    with connect(target) as c:
        return current_heads(c)


def fp(target: Target, project: Path = ROOT) -> str:
    """The catalog fingerprint of the project's objects in `target` (no row counts)."""
    with connect(target) as c:
        return fingerprint(snapshot(c, project=project))


def ok(res: Result) -> Result:
    """Assert a run_cli result exited 0 (its output is the message if not); return it."""
    assert res.exit_code == 0, res.output
    return res


def run_preflight(run_cli: Callable[..., Result], target: Target, *args: str,
                  project: Path = ROOT) -> tuple[int, dict[str, Any], str]:
    """`iucore --json db preflight …` → (exit code, report, output), after asserting that
    the exit code says what the report says: 0 when every gate passed, 3 when one failed."""
    res = run_cli(target, "--json", "db", "preflight", *args, project=project)
    rep = json.loads(res.stdout)
    failed = [c["check"] for c in rep["checks"] if c["status"] != "PASS"]
    assert res.exit_code == (3 if failed else 0), (failed, res.output)
    assert rep["ok"] is (not failed), rep
    return res.exit_code, rep, res.output


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the real click CLI in-process: run_cli(target, "db", "upgrade", project=...)."""

    def invoke(target: Target | None, *args: str, project: Path = ROOT, env: dict[str, str] | None = None) -> Result:
        argv = ["--project", str(project)]
        if target is not None:
            argv += ["--url", target.libpq]
        runner = CliRunner()
        return runner.invoke(cli, [*argv, *args], env=env or {}, catch_exceptions=False)

    return invoke


_login_seq = itertools.count()


@contextmanager
def logins(conn: psycopg.Connection[Any], prefix: str = "iu") -> Iterator[Callable[[str], tuple[str, psycopg.Connection[Any]]]]:
    """login(kind) → (role, an autocommit connection logged in as it) on `conn`'s database;
    the roles are dropped, with what they own, on exit. kind:
      op                what `iucore db grant --operator` gives
      ro                what `iucore db grant --readonly` gives
      none              LOGIN and nothing else
      create_on_public  USAGE and CREATE on public, as Directus's own role holds in production
                        (DESIGN §7a): one named role, not PUBLIC."""
    made: list[tuple[str, psycopg.Connection[Any]]] = []

    def make(kind: str) -> tuple[str, psycopg.Connection[Any]]:
        name = f"{prefix}_{kind}_{next(_login_seq)}_{uuid.uuid4().hex[:6]}"
        conn.execute(f"CREATE ROLE {name} LOGIN")
        if kind == "op":
            apply(conn, plan_operator(conn, name))
        elif kind == "ro":
            apply(conn, plan_readonly(conn, name))
        elif kind == "create_on_public":
            conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {name}")
        elif kind != "none":
            raise ValueError(f"unknown login kind {kind!r}")
        c = psycopg.connect(conninfo.make_conninfo(conn.info.dsn, user=name), autocommit=True)
        assert c.execute("SELECT session_user").fetchone() == (name,)
        made.append((name, c))
        return name, c

    try:
        yield make
    finally:
        for name, c in made:
            c.close()
            conn.execute(f"DROP OWNED BY {name} CASCADE")
            conn.execute(f"DROP ROLE {name}")
