"""nox sessions: tests per server major, lint (bench and demo come with their issues).

`nox -s tests` runs the whole suite on PostgreSQL 16 (production's major), then
on the newest major the embedded wheels ship (18) what depends on the server:
not the `pure` tests (no server of the major under test: the same on every
major) nor the `stress` runs (the exhaustive fault sweep and the concurrent
upgrade rounds).
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = True


# The second major runs what depends on the server, once (tests/conftest.py marks `pure`).
SECOND_MAJOR = ("-m", "not stress and not pure")


def _tests(session: nox.Session, major: str, *args: str) -> None:
    # Two workers: the tests wait on subprocesses, locks and the server far more than on CPU.
    session.run("pytest", "-n", "2", "--dist", "load", *args, *session.posargs,
                env={"IUCORE_TEST_PG_MAJOR": major})


@nox.session
def tests(session: nox.Session) -> None:
    """The full suite on PostgreSQL 16 (production's major), then on 18 (the newest the
    wheels ship) every test that talks to the server, in one environment. The pure
    tests and the stress runs (fault sweep, 8-process rounds) run once, on 16."""
    session.install("-e", ".[test]")
    _tests(session, "16")
    _tests(session, "18", *SECOND_MAJOR)


@nox.session(name="tests-16")
def tests_16(session: nox.Session) -> None:
    """The full suite on PostgreSQL 16 only."""
    session.install("-e", ".[test]")
    _tests(session, "16")


@nox.session(name="tests-18")
def tests_18(session: nox.Session) -> None:
    """On PostgreSQL 18 only: what depends on the server (no pure tests, no stress runs)."""
    session.install("-e", ".[test]")
    _tests(session, "18", *SECOND_MAJOR)


@nox.session
def lint(session: nox.Session) -> None:
    """Static gates: ruff, mypy (src), iucore lint (SQL, PL/pgSQL, security rules, no-hardcode), sqlfluff."""
    session.install("-e", ".[test]")
    session.run("ruff", "check", "src", "tests", "migrations", *(["bench"] if Path("bench").is_dir() else []),
                "noxfile.py")
    session.run("mypy", "src/iu_core")
    session.run("iucore", "lint")
    session.run("sqlfluff", "lint", "migrations/sql", "rollbacks", "selftests", "runtime")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (not a default session): ratios against same-run baselines, writes bench/RESULTS.md.

    IUCORE_PG_MAJOR picks the server (default 16); extra arguments go to
    bench/run.py (e.g. `nox -s bench -- --only worker --reps 3`).
    """
    session.install("-e", ".")
    session.run("python", "bench/run.py", *session.posargs)
