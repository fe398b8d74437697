"""nox sessions: tests per server major, lint (bench and demo come with their issues).

`nox -s tests` runs the suite on PostgreSQL 16 (production's major) and on the
newest major the embedded wheels ship (18).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = True

MAJORS = ["16", "18"]


@nox.session
@nox.parametrize("major", MAJORS, ids=MAJORS)
def tests(session: nox.Session, major: str) -> None:
    """The full test suite against an embedded PostgreSQL of one major."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"IUCORE_TEST_PG_MAJOR": major})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the Python."""
    session.install("-e", ".[test]")
    session.run("ruff", "check", "src", "tests", "migrations", "noxfile.py")
