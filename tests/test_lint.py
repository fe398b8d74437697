"""Static gates: each rule sees a bad file fail, and the repository passes them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from iu_core.lint import (
    check_hardcode,
    check_parse,
    check_plpgsql,
    check_revoke,
    check_secdef,
    check_timeouts,
    lint_project,
)

from .conftest import ROOT

OK_HEAD = "-- @preflight\nSELECT 1;\n-- @body\n"
OK_TAIL = "-- @postcheck\nSELECT 1;\n"


def write(tmp_path: Path, text: str, name: str = "x.sql") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_the_repository_passes_every_static_gate() -> None:
    assert [str(f) for f in lint_project(ROOT)] == []


def test_parse_rule(tmp_path: Path) -> None:
    bad = write(tmp_path, OK_HEAD + "CREATE TABLE t (a int;\n" + OK_TAIL)
    assert [f.rule for f in check_parse(bad, "migration")] == ["parse"]
    assert check_parse(write(tmp_path, OK_HEAD + "CREATE TABLE t (a int);\n" + OK_TAIL), "migration") == []


def test_plpgsql_rule_sees_inside_bodies_the_sql_parser_cannot(tmp_path: Path) -> None:
    bad_fn = write(tmp_path, OK_HEAD + "CREATE FUNCTION public.f() RETURNS int LANGUAGE plpgsql AS $$\n"
                   "BEGIN RETRUN 1; END $$;\n" + OK_TAIL)
    bad_do = write(tmp_path, OK_HEAD + "DO $$ BEGIN IF true THEN PERFORM 1; END $$;\n" + OK_TAIL, "y.sql")
    assert check_parse(bad_fn, "migration") == []  # the SQL parser is happy…
    assert [f.rule for f in check_plpgsql(bad_fn)] == ["plpgsql"]  # …the PL/pgSQL one is not
    assert [f.line for f in check_plpgsql(bad_do)] == [4]
    good = write(tmp_path, OK_HEAD + "DO $$ BEGIN PERFORM 1; END $$;\n" + OK_TAIL, "z.sql")
    assert check_plpgsql(good) == []


@pytest.mark.parametrize(
    ("setting", "ok"),
    [("", False), ("SET search_path = public", False), ("SET search_path = pg_temp, public", False),
     ("SET search_path = public, pg_temp", True), ("SET search_path TO public, pg_catalog, pg_temp", True)],
)
def test_security_definer_must_pin_search_path_ending_in_pg_temp(tmp_path: Path, setting: str, ok: bool) -> None:
    p = write(tmp_path, OK_HEAD + f"CREATE FUNCTION public.fn_x() RETURNS int LANGUAGE sql SECURITY DEFINER {setting}"
              " AS $$ SELECT 1 $$;\n" + OK_TAIL)
    assert (check_secdef(p) == []) is ok


def test_a_created_mutating_function_must_be_revoked_from_public(tmp_path: Path) -> None:
    body = ("CREATE FUNCTION public.fn_w(a int) RETURNS void LANGUAGE sql AS $$ SELECT $$;\n"
            "CREATE FUNCTION public.fn_r(a int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;\n"
            "CREATE FUNCTION public.fn_t() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n")
    p = write(tmp_path, OK_HEAD + body + OK_TAIL)
    found = check_revoke(p, {"fn_w", "fn_r", "fn_t"})
    assert [(f.rule, f.line) for f in found] == [("revoke-public", 4)]
    assert check_revoke(p, {"fn_r", "fn_t"}) == []  # a replaced (not created) function is not this file's
    fixed = write(tmp_path, OK_HEAD + body + "REVOKE EXECUTE ON FUNCTION public.fn_w(int) FROM PUBLIC;\n" + OK_TAIL,
                  "fixed.sql")
    assert check_revoke(fixed, {"fn_w", "fn_r", "fn_t"}) == []


def test_files_do_not_set_the_framework_timeouts(tmp_path: Path) -> None:
    p = write(tmp_path, OK_HEAD + "SET statement_timeout = 0;\nSET LOCAL lock_timeout = '1h';\n" + OK_TAIL)
    assert [f.rule for f in check_timeouts(p)] == ["framework-timeouts", "framework-timeouts"]


@pytest.mark.parametrize(
    "line",
    ["url = 'postgresql://app:hunter2@db.internal/iu'", "password = 'hunter2'", "PGPASSWORD=hunter2 psql",
     "host = 10.1.2.3", "connect to db.internal" + ":" + "5432", "SELECT 'postgres+psycopg://u:p@h/d'"],
)
def test_no_hardcode_scan(tmp_path: Path, line: str) -> None:
    assert [f.rule for f in check_hardcode(write(tmp_path, line + "\n", "c.py"))] == ["no-hardcode"]


@pytest.mark.parametrize("line", ["PostgreSQL 16.13 is production", "postgresql://USER@HOST/DB",
                                  "version = '1.2.3'", "password: read from ~/.pgpass"])
def test_no_hardcode_scan_leaves_honest_text_alone(tmp_path: Path, line: str) -> None:
    assert check_hardcode(write(tmp_path, line + "\n", "c.md")) == []


def test_every_run_sets_the_framework_timeouts(new_db) -> None:
    """Not per file: the framework's lock_timeout/statement_timeout are in force inside a revision."""
    from iu_core import migrate
    from iu_core.config import RunOptions

    from .conftest import PROJECTS

    target = new_db()
    seen: list[tuple[str, str]] = []

    def hook(conn, stmt, i):
        if i == 0:
            seen.append(conn.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')").fetchone())

    migrate.upgrade(target, "a1", project=PROJECTS / "sample", before_statement=hook,
                    options=RunOptions(lock_timeout_ms=1234, statement_timeout_ms=56789))
    assert seen == [("1234ms", "56789ms")]
