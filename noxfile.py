"""nox sessions: tests per server major, lint (bench and demo come with their issues).

`nox -s tests` runs the suite on PostgreSQL 16 (production's major) and on the
newest major the embedded wheels ship (18).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests-16", "tests-18", "lint"]
nox.options.error_on_missing_interpreters = True


def _tests(session: nox.Session, major: str) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"IUCORE_TEST_PG_MAJOR": major})


@nox.session(name="tests-16", tags=["tests"])
def tests_16(session: nox.Session) -> None:
    """The full test suite on PostgreSQL 16 (production's major)."""
    _tests(session, "16")


@nox.session(name="tests-18", tags=["tests"])
def tests_18(session: nox.Session) -> None:
    """The full test suite on PostgreSQL 18 (the newest the wheels ship)."""
    _tests(session, "18")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the Python."""
    session.install("-e", ".[test]")
    session.run("ruff", "check", "src", "tests", "migrations", "noxfile.py")
