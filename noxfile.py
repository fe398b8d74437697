"""nox sessions: tests per server major, lint (bench and demo come with their issues).

`nox -s tests` runs the suite on PostgreSQL 16 (production's major) and on the
newest major the embedded wheels ship (18).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests-16", "tests-18", "lint"]
nox.options.error_on_missing_interpreters = True


def _tests(session: nox.Session, major: str, *args: str) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *args, *session.posargs, env={"IUCORE_TEST_PG_MAJOR": major})


@nox.session(name="tests-16", tags=["tests"])
def tests_16(session: nox.Session) -> None:
    """The full test suite on PostgreSQL 16 (production's major), stress rounds included."""
    _tests(session, "16")


@nox.session(name="tests-18", tags=["tests"])
def tests_18(session: nox.Session) -> None:
    """The full test suite on PostgreSQL 18 (the newest the wheels ship); the 8-process
    stress rounds run once, on 16, to keep the whole run well under 10 minutes."""
    _tests(session, "18", "-m", "not stress")


@nox.session
def lint(session: nox.Session) -> None:
    """Static gates: ruff, mypy (src), iucore lint (SQL, PL/pgSQL, security rules, no-hardcode), sqlfluff."""
    session.install("-e", ".[test]")
    session.run("ruff", "check", "src", "tests", "migrations", "bench", "noxfile.py")
    session.run("mypy", "src/iu_core")
    session.run("iucore", "lint")
    session.run("sqlfluff", "lint", "migrations/sql", "rollbacks", "selftests")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (not a default session): ratios against same-run baselines, writes bench/RESULTS.md.

    IUCORE_PG_MAJOR picks the server (default 16); extra arguments go to
    bench/run.py (e.g. `nox -s bench -- --only worker --reps 3`).
    """
    session.install("-e", ".")
    session.run("python", "bench/run.py", *session.posargs)
