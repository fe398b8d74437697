"""Test harness: a real PostgreSQL, never a mock.

One throwaway embedded cluster per test session (major from
IUCORE_TEST_PG_MAJOR, default: the embedded default), a fresh database per
test, cloned from a template migrated once per (project, revision).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from iu_core import migrate
from iu_core.cli import cli
from iu_core.config import RunOptions, Target
from iu_core.server import EmbeddedServer, default_major

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = Path(__file__).resolve().parent / "projects"
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the fault-injection points survived (summed across xdist workers)."""
    points = runs = 0
    for rep in terminalreporter.stats.get("passed", []):
        for key, value in getattr(rep, "user_properties", []):
            if key == "fault_points_survived":
                points, runs = points + int(value), runs + 1
    if runs:
        terminalreporter.write_line(
            f"fault injection: {points} statement boundaries killed and survived across {runs} revision runs "
            f"(PostgreSQL {PG_MAJOR})")


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
def pg_server() -> Iterator[EmbeddedServer]:
    # A short path: the unix socket lives in it.
    home = Path(tempfile.mkdtemp(prefix="iucore-test-"))
    server = EmbeddedServer(home=home, major=PG_MAJOR, settings=FAST_SETTINGS)
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


_readonly_roles = itertools.count()


@pytest.fixture
def readonly_role(databases: Databases) -> Iterator[Callable[[Target], Target]]:
    """readonly_role(target) → the same database as a real LOGIN role (not superuser) given
    the read-only policy of `db grant --readonly`. Request it BEFORE new_db: the role is
    dropped after the databases it was granted on."""
    from iu_core.roles import apply, plan_readonly

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


def connect(target: Target) -> psycopg.Connection[Any]:
    return psycopg.connect(target.libpq, autocommit=True)


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
