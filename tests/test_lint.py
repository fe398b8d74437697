"""Static gates: each rule sees a bad file fail, and the repository passes them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from iu_core.release.lint import (
    HISTORIC_TRUSTED_SCHEMAS,
    TRUSTED_FROM,
    Chain,
    Finding,
    check_grant_public,
    check_hardcode,
    check_hidden_ddl,
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


def sql_file(tmp_path: Path, body: str, name: str = "x.sql") -> Path:
    """A migration file whose @body is `body`: its first line is line 4."""
    return write(tmp_path, OK_HEAD + body + OK_TAIL, name)


def got(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.rule, f.line) for f in findings]


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
    [("", False), ("SET search_path = pg_catalog", False), ("SET search_path = pg_temp, pg_catalog", False),
     ("SET search_path = pg_catalog, pg_temp", True), ("SET search_path TO pg_catalog, pg_temp", True),
     ("SET search_path = public, pg_temp", False)],
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
    from iu_core.config import RunOptions
    from iu_core.framework import migrate

    from .conftest import PROJECTS

    target = new_db()
    seen: list[tuple[str, str]] = []

    def hook(conn, stmt, i):
        if i == 0:
            seen.append(conn.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')").fetchone())

    migrate.upgrade(target, "a1", project=PROJECTS / "sample", before_statement=hook,
                    options=RunOptions(lock_timeout_ms=1234, statement_timeout_ms=56789))
    assert seen == [("1234ms", "56789ms")]


# ---------------------------------------------------------------- SECURITY DEFINER search_path
@pytest.mark.parametrize(
    ("setting", "rules"),
    [pytest.param("SET search_path = pg_temp, pg_catalog", ["secdef-path"], id="pg_temp-first"),
     pytest.param("SET search_path = pg_catalog", ["secdef-path"], id="pg_temp-absent"),
     pytest.param('SET search_path = pg_catalog, "PG_TEMP"', ["secdef-path", "secdef-schema"],
                  id="quoted-PG_TEMP-is-another-schema"),
     pytest.param("SET search_path = 'pg_catalog, pg_temp'", ["secdef-path", "secdef-schema"],
                  id="one-string-is-one-schema-name"),
     pytest.param('SET search_path = "$user", pg_catalog, pg_temp', ["secdef-schema"], id="dollar-user"),
     pytest.param("SET search_path = staging, pg_catalog, pg_temp", ["secdef-schema"], id="untrusted-schema"),
     pytest.param("SET search_path = public, pg_temp", ["secdef-schema"], id="public-is-shared-with-directus"),
     pytest.param("SET search_path = pg_catalog, cutter_governance, pg_temp", ["secdef-schema"],
                  id="an-iu-core-schema-is-not-the-catalog"),
     pytest.param("SET search_path FROM CURRENT", ["secdef-path"], id="from-current"),
     pytest.param("SET search_path TO DEFAULT", ["secdef-path"], id="to-default"),
     pytest.param("SET search_path = pg_catalog, pg_temp", [], id="trusted-only"),
     pytest.param("SET search_path = PG_CATALOG, PG_TEMP", [], id="unquoted-names-fold-to-lower-case")],
)
def test_a_security_definer_path_is_a_literal_trusted_list_ending_in_pg_temp(
        tmp_path: Path, setting: str, rules: list[str]) -> None:
    p = sql_file(tmp_path, f"CREATE FUNCTION public.fn_x(p uuid) RETURNS int LANGUAGE sql SECURITY DEFINER {setting}"
                           " AS $$ SELECT 1 $$;\n")
    found = check_secdef(p)
    assert got(found) == [(r, 4) for r in rules]
    if "$user" in setting:
        assert "named after the role" in found[0].message


def test_the_files_of_earlier_revisions_are_judged_by_the_rule_they_were_written_under(tmp_path: Path) -> None:
    """History (DESIGN §3) pinned public, pg_temp; it still lints clean, and nothing looser does."""
    historic = sql_file(tmp_path, "CREATE FUNCTION public.fn_x(p uuid) RETURNS int LANGUAGE sql SECURITY DEFINER "
                                  "SET search_path = public, cutter_governance, pg_catalog, pg_temp AS $$ SELECT 1 $$;\n")
    assert check_secdef(historic, trusted=HISTORIC_TRUSTED_SCHEMAS) == []
    found = check_secdef(historic)
    assert got(found) == [("secdef-schema", 4), ("secdef-schema", 4)]
    assert f"from revision {TRUSTED_FROM} on" in found[0].message and "Directus" in found[0].message
    untrusted = sql_file(tmp_path, "CREATE FUNCTION public.fn_x(p uuid) RETURNS int LANGUAGE sql SECURITY DEFINER "
                                   "SET search_path = staging, public, pg_temp AS $$ SELECT 1 $$;\n", "y.sql")
    assert got(check_secdef(untrusted, trusted=HISTORIC_TRUSTED_SCHEMAS)) == [("secdef-schema", 4)]


def _copy_project(tmp_path: Path) -> Path:
    import shutil

    project = tmp_path / "project"
    for part in ("migrations", "rollbacks", "selftests", "runtime"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", project / "alembic.ini")
    return project


def test_from_least_privilege_on_a_definer_searches_pg_catalog_only(tmp_path: Path) -> None:
    """The rule follows the state a file leaves: least_privilege's own files are strict, the
    rollback that restores gate_protocol's paths and the files before it are history."""
    project = _copy_project(tmp_path)
    split = "public.fn_iu_piece_split(uuid, jsonb, uuid, text, boolean)"  # SECURITY DEFINER since substrate
    repin = f"ALTER FUNCTION {split} SET search_path = public, pg_temp;\n"
    forward = project / "migrations" / "sql" / f"{TRUSTED_FROM}.sql"
    text = forward.read_text()
    assert text.count("-- @postcheck\n") == 1
    forward.write_text(text.replace("-- @postcheck\n", repin + "-- @postcheck\n"))
    line = forward.read_text().splitlines().index(repin.strip()) + 1
    dispatcher = project / "migrations" / "sql" / "functions" / TRUSTED_FROM / "fn_dot_iu_execute.sql"
    dispatcher.write_text(dispatcher.read_text().replace("SET search_path = pg_catalog, pg_temp",
                                                         "SET search_path = public, pg_temp"))
    # the same ALTER in the rollback of the revision before: it restores history, and passes
    before = project / "rollbacks" / "gate_protocol.sql"
    text = before.read_text()
    assert text.count("-- @assert\n") == 1
    before.write_text(text.replace("-- @assert\n", repin + "-- @assert\n"))
    found = sorted((f.rule, f.file, f.line) for f in lint_project(project))
    assert [(r, f) for r, f, _ in found] == [
        ("secdef-schema", f"migrations/sql/functions/{TRUSTED_FROM}/fn_dot_iu_execute.sql"),
        ("secdef-schema", f"migrations/sql/{TRUSTED_FROM}.sql"),
    ]
    assert found[1][2] == line


def test_an_invoker_function_needs_no_pinned_path(tmp_path: Path) -> None:
    p = sql_file(tmp_path, "CREATE FUNCTION public.fn_x() RETURNS int LANGUAGE sql SECURITY INVOKER "
                           "SET search_path = pg_temp, public AS $$ SELECT 1 $$;\n")
    assert check_secdef(p) == []


INVOKER = "CREATE FUNCTION public.fn_x(p uuid) RETURNS int LANGUAGE sql {path}AS $$ SELECT 1 $$;\n"
DEFINER = ("CREATE FUNCTION public.fn_x(p uuid) RETURNS int LANGUAGE sql SECURITY DEFINER "
           "SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;\n")


def test_security_definer_given_by_alter_function_needs_a_pinned_path(tmp_path: Path) -> None:
    unpinned = INVOKER.format(path="")
    bad = sql_file(tmp_path, unpinned + "ALTER FUNCTION public.fn_x(uuid) SECURITY DEFINER;\n", "bad.sql")
    assert got(check_secdef(bad)) == [("secdef-path", 5)]
    pinned_here = sql_file(tmp_path, unpinned + "ALTER FUNCTION public.fn_x(uuid) SECURITY DEFINER "
                                                "SET search_path = pg_catalog, pg_temp;\n", "here.sql")
    assert check_secdef(pinned_here) == []
    pinned_by_create = sql_file(tmp_path, INVOKER.format(path="SET search_path = pg_catalog, pg_temp ")
                                + "ALTER FUNCTION public.fn_x(uuid) SECURITY DEFINER;\n", "create.sql")
    assert check_secdef(pinned_by_create) == []
    # the ALTER names another overload, whose CREATE the linter never saw: fail closed
    other = sql_file(tmp_path, INVOKER.format(path="SET search_path = pg_catalog, pg_temp ")
                     + "ALTER FUNCTION public.fn_x(text) SECURITY DEFINER;\n", "other.sql")
    [finding] = check_secdef(other)
    assert (finding.rule, finding.line) == ("secdef-path", 5)
    assert "public.fn_x(text)" in finding.message and "its CREATE is in no file" in finding.message


@pytest.mark.parametrize(
    ("alter", "rules"),
    [pytest.param("RESET search_path", ["secdef-path"], id="reset"),
     pytest.param("RESET ALL", ["secdef-path"], id="reset-all"),
     pytest.param("SET search_path FROM CURRENT", ["secdef-path"], id="from-current"),
     pytest.param("SET work_mem = '64MB'", [], id="another-setting"),
     pytest.param("SET search_path = pg_catalog, pg_temp", [], id="re-pinned")],
)
def test_an_alter_cannot_unpin_a_security_definer_path(tmp_path: Path, alter: str, rules: list[str]) -> None:
    p = sql_file(tmp_path, DEFINER + f"ALTER FUNCTION public.fn_x(uuid) {alter};\n")
    assert got(check_secdef(p)) == [(r, 5) for r in rules]


def test_each_create_or_replace_stands_alone(tmp_path: Path) -> None:
    """CREATE OR REPLACE resets the SET clauses: an earlier file's pin does not carry over."""
    chain: Chain = {}
    assert check_secdef(sql_file(tmp_path, DEFINER, "first.sql"), chain) == []
    later = DEFINER.replace("CREATE", "CREATE OR REPLACE").replace("SET search_path = pg_catalog, pg_temp ", "")
    assert got(check_secdef(sql_file(tmp_path, later, "later.sql"), dict(chain))) == [("secdef-path", 4)]
    repinned = DEFINER.replace("CREATE", "CREATE OR REPLACE")
    assert check_secdef(sql_file(tmp_path, repinned, "repinned.sql"), dict(chain)) == []


def test_a_create_or_replace_drops_the_pin_an_earlier_alter_gave(tmp_path: Path) -> None:
    chain: Chain = {}
    first = INVOKER.format(path="") + "ALTER FUNCTION public.fn_x(uuid) SET search_path = pg_catalog, pg_temp;\n"
    assert check_secdef(sql_file(tmp_path, first, "first.sql"), chain) == []
    alter = "ALTER FUNCTION public.fn_x(uuid) SECURITY DEFINER;\n"
    assert check_secdef(sql_file(tmp_path, alter, "alter.sql"), dict(chain)) == []  # the pin still holds
    replaced = INVOKER.format(path="").replace("CREATE", "CREATE OR REPLACE") + alter
    assert got(check_secdef(sql_file(tmp_path, replaced, "replaced.sql"), dict(chain))) == [("secdef-path", 5)]


@pytest.mark.parametrize(
    ("body", "language", "rules"),
    [pytest.param("PERFORM set_config('search_path', 'public', true);", "plpgsql", ["secdef-path"], id="set_config"),
     pytest.param("SET search_path = pg_temp, public;", "plpgsql", ["secdef-path"], id="set-statement"),
     pytest.param("SELECT set_config('search_path', '', true);", "sql", ["secdef-path"], id="sql-function"),
     pytest.param("PERFORM set_config('application_name', 'x', true);", "plpgsql", [], id="another-setting")],
)
def test_a_security_definer_body_does_not_change_its_search_path(
        tmp_path: Path, body: str, language: str, rules: list[str]) -> None:
    text = body if language == "sql" else f"BEGIN\n{body}\nEND"
    p = sql_file(tmp_path, "CREATE FUNCTION public.fn_x() RETURNS void LANGUAGE " + language
                 + " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n" + text + "\n$$;\n")
    line = 4 if language == "sql" else 6
    assert got(check_secdef(p)) == [(r, line) for r in rules]


# ---------------------------------------------------------------- owners
def test_a_security_definer_function_stays_with_the_migration_owner(tmp_path: Path) -> None:
    give = "ALTER FUNCTION public.fn_x(uuid) OWNER TO {role};\n"
    assert got(check_secdef(sql_file(tmp_path, DEFINER + give.format(role="iu_operator"), "a.sql"))) == [
        ("secdef-owner", 5)]
    assert check_secdef(sql_file(tmp_path, DEFINER + give.format(role="CURRENT_USER"), "b.sql")) == []
    invoker = INVOKER.format(path="SET search_path = pg_catalog, pg_temp ")
    assert check_secdef(sql_file(tmp_path, invoker + give.format(role="iu_operator"), "c.sql")) == []
    # given away first, made SECURITY DEFINER after: the owner is what runs it
    later = invoker + give.format(role="iu_operator") + "ALTER FUNCTION public.fn_x(uuid) SECURITY DEFINER;\n"
    assert got(check_secdef(sql_file(tmp_path, later, "d.sql"))) == [("secdef-owner", 5)]


def test_create_or_replace_keeps_an_owner_given_in_an_earlier_file(tmp_path: Path) -> None:
    chain: Chain = {}
    first = INVOKER.format(path="") + "ALTER FUNCTION public.fn_x(uuid) OWNER TO iu_operator;\n"
    assert check_secdef(sql_file(tmp_path, first, "first.sql"), chain) == []
    replaced = DEFINER.replace("CREATE", "CREATE OR REPLACE")
    assert got(check_secdef(sql_file(tmp_path, replaced, "later.sql"), chain)) == [("secdef-owner", 4)]


@pytest.mark.parametrize(
    ("stmt", "rules"),
    [pytest.param("SET ROLE iu_operator;", ["secdef-owner"], id="set-role"),
     pytest.param("SET SESSION AUTHORIZATION iu_operator;", ["secdef-owner"], id="session-authorization"),
     pytest.param("REASSIGN OWNED BY CURRENT_USER TO iu_operator;", ["secdef-owner"], id="reassign-owned"),
     pytest.param("SET ROLE NONE;", [], id="set-role-none"),
     pytest.param("RESET ROLE;", [], id="reset-role")],
)
def test_a_file_does_not_create_as_another_role(tmp_path: Path, stmt: str, rules: list[str]) -> None:
    p = sql_file(tmp_path, stmt + "\n" + DEFINER)
    assert got(check_secdef(p)) == [(r, 4) for r in rules]


def test_a_self_test_may_set_role_to_test_a_privilege(tmp_path: Path) -> None:
    """BEGIN … ROLLBACK: nothing it creates lasts, so SET ROLE there is not an owner change."""
    p = write(tmp_path, "BEGIN;\nSET LOCAL ROLE iu_operator;\nSELECT public.fn_x(NULL);\nROLLBACK;\n")
    assert check_secdef(p, rolled_back=True) == []
    assert got(check_secdef(p)) == [("secdef-owner", 2)]


# ---------------------------------------------------------------- privileges
W = "CREATE FUNCTION public.fn_w(p_id uuid) RETURNS void LANGUAGE sql AS $$ SELECT $$;\n"
REVOKE_W = "REVOKE EXECUTE ON FUNCTION public.fn_w(uuid) FROM PUBLIC;\n"


@pytest.mark.parametrize(
    ("body", "line"),
    [pytest.param(W + REVOKE_W, None, id="revoked"),
     pytest.param(W + REVOKE_W + "GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO PUBLIC;\n", 4, id="granted-back"),
     pytest.param(W + REVOKE_W + "GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO iu_operator;\n", None,
                  id="granted-to-a-role"),
     pytest.param(REVOKE_W + W, 5, id="revoked-before-the-create"),
     pytest.param(W + "REVOKE GRANT OPTION FOR EXECUTE ON FUNCTION public.fn_w(uuid) FROM PUBLIC;\n", 4,
                  id="grant-option-only"),
     pytest.param(W + REVOKE_W + "DROP FUNCTION public.fn_w(uuid);\n" + W, 7, id="dropped-and-created-again"),
     pytest.param(W + "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;\n", None, id="all-in-schema")],
)
def test_revoke_public_is_order_aware(tmp_path: Path, body: str, line: int | None) -> None:
    found = check_revoke(sql_file(tmp_path, body), {"public.fn_w(uuid)"})
    assert got(found) == ([] if line is None else [("revoke-public", line)])


@pytest.mark.parametrize(
    ("created", "declared", "revoked", "ok"),
    [pytest.param("fn_x(p_id uuid)", "public.fn_x(uuid)", "public.fn_x(text)", False, id="another-overload"),
     pytest.param("fn_x(p_id uuid)", "public.fn_x(uuid)", "staging.fn_x(uuid)", False, id="another-schema"),
     pytest.param("fn_x(p_n integer, p_s character varying DEFAULT 'x', OUT r int)",
                  "public.fn_x(int, varchar)", "public.fn_x(int4, varchar(20))", True,
                  id="aliases-typmods-defaults-out-arguments"),
     pytest.param("fn_x(p_id uuid)", "public.fn_x(uuid)", "fn_x", True, id="no-argument-list")],
)
def test_revoke_public_matches_signatures_not_names(
        tmp_path: Path, created: str, declared: str, revoked: str, ok: bool) -> None:
    create = f"CREATE FUNCTION public.{created} RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
    assert got(check_revoke(sql_file(tmp_path, create, "bare.sql"), {declared})) == [("revoke-public", 4)]
    p = sql_file(tmp_path, create + f"REVOKE EXECUTE ON FUNCTION {revoked} FROM PUBLIC;\n")
    found = check_revoke(p, {declared})
    assert got(found) == ([] if ok else [("revoke-public", 4)])
    if not ok:
        assert f"names {revoked}" in found[0].message


@pytest.mark.parametrize(
    ("stmt", "ok"),
    [pytest.param("GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO PUBLIC;", False, id="function"),
     pytest.param("GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO iu_operator, PUBLIC;", False,
                  id="public-among-roles"),
     pytest.param("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;", False, id="all-in-schema"),
     pytest.param("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO PUBLIC;", False,
                  id="default-privileges"),
     pytest.param("GRANT CREATE ON SCHEMA public TO PUBLIC;", False, id="create-on-a-trusted-schema"),
     pytest.param("GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO iu_operator;", True, id="a-named-role"),
     pytest.param("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;", True,
                  id="default-revoke"),
     pytest.param("-- lint: allow grant-public (the rollback restores what 9xx revoked)\n"
                  "GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO PUBLIC;", True, id="allowed-with-a-reason"),
     pytest.param("-- lint: allow grant-public ()\nGRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO PUBLIC;", False,
                  id="allowed-without-a-reason")],
)
def test_nothing_is_granted_to_public(tmp_path: Path, stmt: str, ok: bool) -> None:
    p = sql_file(tmp_path, W + stmt + "\n")
    assert got(check_grant_public(p)) == ([] if ok else [("grant-public", 4 + stmt.count("\n") + 1)])


# ---------------------------------------------------------------- DDL the rules cannot read
ALLOW_HIDDEN = "-- lint: allow hidden-ddl (tried: the static checks cannot see it)\n"


@pytest.mark.parametrize(
    "do",
    [pytest.param("DO $$ BEGIN EXECUTE 'CREATE FUNCTION public.fn_y() RETURNS int LANGUAGE sql "
                  "SECURITY DEFINER AS ''SELECT 1'''; END $$;", id="constant-text"),
     pytest.param("DO $$ BEGIN EXECUTE format('CREATE OR REPLACE FUNCTION %I.fn_y() RETURNS int LANGUAGE sql "
                  "AS %L', 'public', 'SELECT 1'); END $$;", id="format"),
     pytest.param("DO $$ DECLARE v text := 'CREATE FUNCTION '; BEGIN EXECUTE v || 'public.fn_y() RETURNS int "
                  "LANGUAGE sql AS $f$ SELECT 1 $f$'; END $$;", id="through-a-variable"),
     pytest.param("DO $do$ BEGIN CREATE FUNCTION public.fn_y() RETURNS int LANGUAGE sql "
                  "AS $f$ SELECT 1 $f$; END $do$;", id="plain-statement-in-the-block"),
     pytest.param("DO $$ BEGIN EXECUTE 'GRANT EXECUTE ON FUNCTION public.fn_w(uuid) TO PUBLIC'; END $$;",
                  id="privileges")],
)
def test_a_function_or_grant_made_inside_a_do_block_is_refused(tmp_path: Path, do: str) -> None:
    """Not even with an allow comment: the other rules would have to read it."""
    p = sql_file(tmp_path, ALLOW_HIDDEN + do + "\n")
    assert check_parse(p, "migration") == [] and check_plpgsql(p) == []
    assert got(check_hidden_ddl(p)) == [("hidden-ddl", 5)]
    assert check_secdef(p) == [] and check_grant_public(p) == []  # …which is why this rule exists


def test_a_do_block_may_execute_text_built_from_constants(tmp_path: Path) -> None:
    """The shape of rollbacks/substrate.sql's guard: table names from a constant array."""
    p = sql_file(tmp_path, "DO $$\nDECLARE\n    c text[] := ARRAY['public.t1', 'public.t2'];\n"
                           "    v text;\n    n bigint;\nBEGIN\n    FOREACH v IN ARRAY c LOOP\n"
                           "        EXECUTE format('SELECT count(*) FROM %s', v) INTO n;\n"
                           "    END LOOP;\nEND $$;\n")
    assert check_hidden_ddl(p) == []


@pytest.mark.parametrize(
    ("allow", "fires"),
    [pytest.param("", True, id="no-comment"),
     pytest.param("    -- lint: allow hidden-ddl ()\n", True, id="no-reason"),
     pytest.param("    -- lint: allow dynamic-sql (names from pg_class)\n", True, id="another-rule"),
     pytest.param("    -- lint: allow hidden-ddl (ANALYZE of the IU tables; regclass quotes the names)\n", False,
                  id="a-reason")],
)
def test_a_do_block_executing_text_from_data_must_say_why(tmp_path: Path, allow: str, fires: bool) -> None:
    p = sql_file(tmp_path, "DO $$\nDECLARE v text;\nBEGIN\n"
                           "    SELECT string_agg(format('ANALYZE %s', c.oid::regclass), '; ') INTO v\n"
                           "      FROM pg_class c WHERE c.relname LIKE 'iu_%';\n"
                           + allow + "    EXECUTE v;\nEND $$;\n")
    assert got(check_hidden_ddl(p)) == ([("hidden-ddl", 9 + allow.count("\n"))] if fires else [])


# ---------------------------------------------------------------- dynamic SQL in SECURITY DEFINER functions
def dynamic_fn(body: str, definer: bool = True) -> str:
    """A PL/pgSQL function whose body ends with `body`; the last line of `body` is line 8 + its newlines."""
    return ("CREATE FUNCTION public.fn_d(p_key text, p_schema text, p_table text, p_col text, p_n integer)\n"
            f"RETURNS bigint LANGUAGE plpgsql {'SECURITY DEFINER' if definer else ''} "
            "SET search_path = pg_catalog, pg_temp AS $$\n"
            "DECLARE v text; v_a text[] := '{}'; n bigint; r record; c refcursor;\n"
            "BEGIN\n" + body + "\n    RETURN n;\nEND $$;\n")


@pytest.mark.parametrize(
    "body",
    [pytest.param("    EXECUTE 'SELECT count(*) FROM public.t WHERE k = ''' || p_key || '''' INTO n;",
                  id="concatenated-parameter"),
     pytest.param("    EXECUTE format('SELECT count(*) FROM public.t WHERE k = %s', p_key) INTO n USING p_key;",
                  id="format-s-of-a-parameter-even-with-using"),
     pytest.param("    v := lower(p_key);\n"
                  "    EXECUTE format('SELECT count(*) FROM public.t WHERE k = %s', v) INTO n;",
                  id="laundered-through-an-assignment"),
     pytest.param("    SELECT c.relname INTO v FROM pg_class c WHERE c.relname = p_table;\n"
                  "    EXECUTE format('SELECT count(*) FROM public.%s', v) INTO n;",
                  id="catalog-name-the-caller-chose"),
     pytest.param("    SELECT string_agg(p.proname, ', ') INTO v FROM pg_proc p WHERE p.proname LIKE 'fn_iu_%';\n"
                  "    EXECUTE format('SELECT %s', v) INTO n USING 1;",
                  id="catalog-names-anyone-can-create-in-pg_temp"),
     pytest.param("    EXECUTE format('SELECT count(*) FROM public.%2$I WHERE k = %1$s', p_key, 't') INTO n;",
                  id="positional-format-arguments"),
     pytest.param("    v_a := ARRAY[quote_ident(p_col)];\n    EXECUTE format('SELECT %s FROM public.t', v_a) INTO n;",
                  id="a-whole-array-of-quoted-names"),
     pytest.param("    EXECUTE format('SELECT count(*) FROM public.t WHERE a = 0-%s', p_n) INTO n;",
                  id="an-integer-after-a-minus"),
     pytest.param("    EXECUTE format('SELECT count(*) FROM %s%s', p_table::regclass, p_n) INTO n;",
                  id="an-integer-right-after-another-value"),
     pytest.param("    EXECUTE 'SELECT count(*) FROM public.t LIMIT ' || p_n INTO n;",
                  id="an-integer-concatenated"),
     pytest.param("    FOR r IN EXECUTE 'SELECT * FROM public.t ORDER BY ' || p_col LOOP END LOOP;",
                  id="for-in-execute"),
     pytest.param("    OPEN c FOR EXECUTE 'SELECT ' || p_col || ' FROM public.t';", id="open-for-execute")],
)
def test_dynamic_sql_in_a_security_definer_function_must_be_safe_by_construction(
        tmp_path: Path, body: str) -> None:
    p = sql_file(tmp_path, dynamic_fn(body))
    assert check_plpgsql(p) == []
    assert got(check_secdef(p)) == [("dynamic-sql", 8 + body.count("\n"))]
    assert check_secdef(sql_file(tmp_path, dynamic_fn(body, definer=False), "invoker.sql")) == []


@pytest.mark.parametrize(
    "body",
    [pytest.param("    EXECUTE format('SELECT count(*) FROM %I.%I WHERE k = %L', p_schema, p_table, p_key) INTO n;",
                  id="format-I-and-L"),
     pytest.param("    EXECUTE 'SELECT count(*) FROM public.t WHERE k = $1' INTO n USING p_key;", id="using"),
     pytest.param("    EXECUTE 'SELECT count(' || quote_ident(p_col) || ') FROM public.t' INTO n;",
                  id="quote-ident"),
     pytest.param("    v := format('%I', p_col);\n    EXECUTE 'SELECT count(' || v || ') FROM public.t' INTO n;",
                  id="a-variable-holding-only-quoted-text"),
     pytest.param("    EXECUTE format('SELECT %1$I FROM public.t WHERE k = %2$L', p_col, p_key) INTO n;",
                  id="positional-I-and-L"),
     pytest.param("    EXECUTE format('SELECT count(*) FROM public.t LIMIT %s', p_n) INTO n;",
                  id="an-integer-in-format"),
     pytest.param("    EXECUTE format('SELECT NULL::%s', p_key::regtype) INTO n;", id="a-regtype"),
     pytest.param("    FOR i IN 1 .. p_n LOOP\n        v_a := v_a || format('$%s::%s', i, p_key::regtype);\n"
                  "    END LOOP;\n"
                  "    EXECUTE format('SELECT public.%I(%s), %s', p_col, array_to_string(v_a, ', '), v_a[1])\n"
                  "       INTO n USING p_schema, p_table;",
                  id="dispatcher-placeholders-from-integers-and-types"),
     pytest.param("    SELECT string_agg(format('$%s::%s', g::int, 'text'::regtype), ', ') INTO v\n"
                  "      FROM generate_series(1, p_n) g;\n"
                  "    EXECUTE format('SELECT public.%I(%s)', p_col, v) INTO n USING p_schema, p_table;",
                  id="placeholders-aggregated-in-a-select-into")],
)
def test_dynamic_sql_that_quotes_or_binds_passes(tmp_path: Path, body: str) -> None:
    p = sql_file(tmp_path, dynamic_fn(body))
    assert check_plpgsql(p) == []
    assert check_secdef(p) == []


@pytest.mark.parametrize(
    ("allow", "fires"),
    [pytest.param("    -- lint: allow dynamic-sql (p_col is checked against pg_attribute above)\n", False,
                  id="a-reason"),
     pytest.param("    -- lint: allow dynamic-sql ()\n", True, id="no-reason")],
)
def test_dynamic_sql_can_be_allowed_with_a_reason(tmp_path: Path, allow: str, fires: bool) -> None:
    body = allow + "    FOR r IN EXECUTE 'SELECT * FROM public.t ORDER BY ' || p_col LOOP END LOOP;"
    found = check_secdef(sql_file(tmp_path, dynamic_fn(body)))
    assert got(found) == ([("dynamic-sql", 9)] if fires else [])
    if fires:
        assert "-- lint: allow dynamic-sql (reason)" in found[0].message


def test_dynamic_sql_is_reported_when_an_alter_makes_the_function_security_definer(tmp_path: Path) -> None:
    chain: Chain = {}
    body = "    EXECUTE 'SELECT count(*) FROM public.t WHERE k = ''' || p_key || '''' INTO n;"
    first = sql_file(tmp_path, dynamic_fn(body, definer=False), "first.sql")
    assert check_secdef(first, chain) == []
    later = sql_file(tmp_path, "ALTER FUNCTION public.fn_d(text, text, text, text, int) SECURITY DEFINER;\n", "later.sql")
    assert [(Path(f.file).name, f.rule, f.line) for f in check_secdef(later, chain)] == [
        ("first.sql", "dynamic-sql", 8)]


# ---------------------------------------------------------------- the driver follows the chain
def test_lint_project_reads_the_files_in_chain_order(tmp_path: Path) -> None:
    """r2 replaces r1's pinned SECURITY DEFINER function without a pin; r2's rollback puts r1's back
    and may ALTER what r2's migration made (it runs on that state)."""
    import shutil

    from .conftest import PROJECTS

    project = tmp_path / "p"
    shutil.copytree(PROJECTS / "sample", project)
    for f in [*(project / "migrations" / "versions").glob("*.py"), *(project / "migrations" / "sql").glob("*"),
              *(project / "rollbacks").glob("*")]:
        f.unlink()
    fn = ("CREATE {verb} FUNCTION public.fn_g(p uuid) RETURNS void LANGUAGE sql {sec} AS $$ SELECT $$;\n")
    pinned = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    files = {
        "r1": (fn.format(verb="", sec=pinned) + "REVOKE EXECUTE ON FUNCTION public.fn_g(uuid) FROM PUBLIC;\n",
               "DROP FUNCTION public.fn_g(uuid);\n", ["public.fn_g(uuid)"]),
        "r2": (fn.format(verb="OR REPLACE", sec="SECURITY DEFINER")
               + "CREATE FUNCTION public.fn_h() RETURNS int LANGUAGE sql SET search_path = pg_catalog, pg_temp "
                 "AS $$ SELECT 1 $$;\nREVOKE EXECUTE ON FUNCTION public.fn_h() FROM PUBLIC;\n",
               fn.format(verb="OR REPLACE", sec=pinned) + "ALTER FUNCTION public.fn_h() SECURITY DEFINER;\n"
               "DROP FUNCTION public.fn_h();\n", ["public.fn_h()"]),
    }
    down = None
    for rev, (forward, rollback, adds) in files.items():
        (project / "migrations" / "versions" / f"{rev}.py").write_text(
            f"from iu_core.revision import sql_revision\nrevision = {rev!r}\ndown_revision = {down!r}\n"
            f"branch_labels = None\ndepends_on = None\nupgrade, downgrade = sql_revision(revision)\n"
            f"inventory = {{'adds': {{'function': {adds!r}}}, 'removes': {{}}}}\n")
        (project / "migrations" / "sql" / f"{rev}.sql").write_text(OK_HEAD + forward + OK_TAIL)
        (project / "rollbacks" / f"{rev}.sql").write_text(
            "-- @guard\nSELECT 1;\n-- @body\n" + rollback + "-- @assert\nSELECT 1;\n")
        down = rev
    assert [(f.file, f.rule, f.line) for f in lint_project(project)] == [
        ("migrations/sql/r2.sql", "secdef-path", 4)]


@pytest.mark.parametrize(
    ("allow", "fires"),
    [pytest.param("", True, id="no-comment"),
     pytest.param("    -- lint: allow hidden-ddl (grants to the role the caller names; %I quotes it)\n", False,
                  id="a-reason")],
)
def test_a_function_that_grants_at_run_time_must_say_why(tmp_path: Path, allow: str, fires: bool) -> None:
    """Run time, not migration time: a reviewer may accept it, with a reason."""
    p = sql_file(tmp_path, "CREATE FUNCTION public.fn_g(p_role text) RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n"
                           + allow + "    EXECUTE format('GRANT SELECT ON public.t TO %I', p_role);\nEND $$;\n")
    assert got(check_hidden_ddl(p)) == ([("hidden-ddl", 6)] if fires else [])


def test_a_revoke_inside_a_do_block_is_not_refused_but_does_not_count(tmp_path: Path) -> None:
    """It only takes privileges away; revoke-public still wants the top-level REVOKE it can read."""
    p = sql_file(tmp_path, W + "DO $$ BEGIN REVOKE EXECUTE ON FUNCTION public.fn_w(uuid) FROM PUBLIC; END $$;\n")
    assert check_hidden_ddl(p) == []
    assert got(check_revoke(p, {"public.fn_w(uuid)"})) == [("revoke-public", 4)]
