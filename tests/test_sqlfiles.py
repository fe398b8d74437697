"""SQL written once: psql's `\\ir` in the SQL reader, checksums over the expanded text,
statements that keep the file and line they were written at, and psql running the
files by hand exactly as iucore does."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from iu_core import migrate
from iu_core.errors import RevisionFailed, SqlFileError
from iu_core.fingerprint import snapshot
from iu_core.selftest import load
from iu_core.session import RevisionFiles
from iu_core.sqlfiles import MIGRATION_SECTIONS, ROLLBACK_SECTIONS, expand, parse_script

from .conftest import PROJECTS, ROOT, connect

# sha256 of substrate.sql and gate_protocol.sql as they were before their
# function definitions moved into migrations/sql/functions/: gate_protocol.sql
# as applied (commit 3e5fc21), substrate.sql with its seed 002 A3 correction
# (commit c7499c9, docs/seeds.md). What runs today is exactly that text.
APPLIED_SHA256 = {
    "migrations/sql/substrate.sql": "3464a7b32052e6dee6291a30d65a1b7b4aa784036f08243b1a443996cf432960",
    "migrations/sql/gate_protocol.sql": "1d9848b5c6bf7d7e417f30a9060193f1c806c9d48bbf14812d0e07d01ae2c20d",
}


@pytest.mark.parametrize("rel", sorted(APPLIED_SHA256))
def test_moving_a_definition_into_an_included_file_changes_nothing_that_runs(rel: str) -> None:
    path = ROOT / rel
    raw = path.read_bytes()
    assert b"\n\\ir functions/" in raw  # the file does include
    assert hashlib.sha256(raw).hexdigest() != APPLIED_SHA256[rel]
    assert expand(path).sha256 == APPLIED_SHA256[rel]
    rev = Path(rel).stem
    assert RevisionFiles(ROOT, rev).checksums()[rel] == APPLIED_SHA256[rel]


def test_the_rollback_restores_from_the_very_files_the_revisions_ran() -> None:
    """rollbacks/least_privilege.sql re-types no function: it includes substrate's and gate_protocol's
    (and, for the search_path of the functions least_privilege only ALTERed, its own restore list)."""
    ex = expand(ROOT / "rollbacks" / "least_privilege.sql")
    included = {p.relative_to(ROOT).as_posix() for p in ex.includes}
    restore = "migrations/sql/functions/least_privilege/search_path_restore.sql"
    assert included == {f"migrations/sql/functions/substrate/{f}.sql"
                        for f in ("fn_iu_gate_is_open", "fn_dot_iu_command_log", "fn_iu_healthcheck")} | {
        f"migrations/sql/functions/gate_protocol/{f}.sql"
        for f in ("fn_iu_gate_open", "fn_iu_gate_close", "fn_iu_gate_verify_closed", "fn_iu_gate_watchdog")} | {
        restore}
    for p in ex.includes:
        if p.relative_to(ROOT).as_posix() != restore:
            assert p.read_text() in expand(ROOT / "migrations" / "sql" / f"{p.parent.name}.sql").text


def test_statements_keep_the_file_and_line_they_were_written_at() -> None:
    script = parse_script(ROOT / "migrations" / "sql" / "least_privilege.sql", MIGRATION_SECTIONS)
    by_file = {}
    for st in script.statements:
        by_file.setdefault(script.rel(st.file), []).append(st)
    execute = by_file["migrations/sql/functions/least_privilege/fn_dot_iu_execute.sql"]
    assert len(execute) == 1 and execute[0].line == 1 and execute[0].section == "body"
    assert execute[0].sql.startswith("CREATE OR REPLACE FUNCTION public.fn_dot_iu_execute(")
    own = by_file["migrations/sql/least_privilege.sql"]
    text = (ROOT / "migrations" / "sql" / "least_privilege.sql").read_text().splitlines()
    for st in own:  # the line given is where the statement starts in the file itself
        assert text[st.line - 1].strip() and st.sql.split()[0] in text[st.line - 1], st
    rb = parse_script(ROOT / "rollbacks" / "least_privilege.sql", ROLLBACK_SECTIONS)
    restored = [st for st in rb.statements if "functions/gate_protocol/fn_iu_gate_open.sql" in rb.rel(st.file)]
    assert [(st.section, st.line) for st in restored] == [("body", 1)]


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "alembic.ini").write_text("[alembic]\n")
    (tmp_path / "sql").mkdir()
    return tmp_path


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


HEAD = "-- @preflight\nSELECT 1;\n-- @body\n"
TAIL = "-- @postcheck\nSELECT 2;\n"


@pytest.mark.parametrize(("files", "needle"), [
    ({"sql/f.sql": HEAD + "\\ir g.sql\n" + TAIL, "sql/g.sql": "\\ir f.sql\n"}, "includes itself"),
    ({"sql/f.sql": HEAD + "\\ir f.sql\n" + TAIL}, "includes itself"),
    ({"sql/f.sql": HEAD + "\\ir ../../outside.sql\n" + TAIL}, "leaves the project"),
    ({"sql/f.sql": HEAD + "\\ir nope.sql\n" + TAIL}, "nope.sql not found"),
    ({"sql/f.sql": HEAD + "SELECT 3\n\\ir g.sql\n;\n" + TAIL, "sql/g.sql": "SELECT 4;\n"},
     "inside an unfinished statement"),
    ({"sql/f.sql": HEAD + "\\ir g.sql\n" + TAIL, "sql/g.sql": "-- @body\nSELECT 4;\n"}, "section marker"),
    ({"sql/f.sql": HEAD + "\\set x 1\n" + TAIL}, "'\\\\set' is not supported"),
    ({"sql/f.sql": HEAD + "\\ir g.sql\n" + TAIL, "sql/g.sql": "SELECT 4;"}, "must end with a newline"),
    ({"sql/f.sql": HEAD + "\\ir g.sql\n" + TAIL, "sql/g.sql": b"SELECT '\xff';\n"}, "not UTF-8"),
])
def test_a_bad_include_is_refused_naming_the_file_and_line(proj: Path, files: dict, needle: str) -> None:
    for rel, text in files.items():
        p = proj / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SqlFileError) as exc:
        parse_script(proj / "sql" / "f.sql", MIGRATION_SECTIONS)
    assert needle in exc.value.message, exc.value.message
    assert "sql/" in exc.value.message and ":" in exc.value.message


def test_an_include_line_inside_a_body_is_text_not_an_include(proj: Path) -> None:
    body = "DO $x$\nBEGIN\n\\ir g.sql\nEND\n$x$;\n"
    write(proj / "sql" / "f.sql", HEAD + body + TAIL)
    script = parse_script(proj / "sql" / "f.sql", MIGRATION_SECTIONS)
    assert "\\ir g.sql" in script.section("body")[0].sql
    assert script.includes == ()


def test_nested_includes_keep_their_origins(proj: Path) -> None:
    write(proj / "sql" / "f.sql", HEAD + "SELECT 'f';\n\\ir lib/g.sql\nSELECT 'f again';\n" + TAIL)
    write(proj / "sql" / "lib" / "g.sql", "-- g\nSELECT 'g';\n\\ir ../h/h.sql\n")
    write(proj / "sql" / "h" / "h.sql", "\n\nSELECT 'h';\n")
    script = parse_script(proj / "sql" / "f.sql", MIGRATION_SECTIONS)
    got = [(script.rel(s.file), s.line, s.sql) for s in script.section("body")]
    assert got == [("sql/f.sql", 4, "SELECT 'f'"), ("sql/lib/g.sql", 2, "SELECT 'g'"),
                   ("sql/h/h.sql", 3, "SELECT 'h'"), ("sql/f.sql", 6, "SELECT 'f again'")]
    assert script.sha256 == hashlib.sha256(expand(proj / "sql" / "f.sql").text.encode()).hexdigest()


def test_a_failure_in_an_included_file_names_that_file_and_line(tmp_path: Path, new_db) -> None:
    project = tmp_path / "sample"
    shutil.copytree(PROJECTS / "sample", project, ignore=shutil.ignore_patterns("__pycache__"))
    a1 = project / "migrations" / "sql" / "a1.sql"
    a1.write_text(a1.read_text().replace("COMMENT ON TABLE public.sample_t IS 'example';\n",
                                         "\\ir parts/broken.sql\n"))
    write(project / "migrations" / "sql" / "parts" / "broken.sql", "-- a part\n\nSELECT 1 / 0;\n")
    target = new_db()
    with pytest.raises(RevisionFailed) as exc:
        migrate.upgrade(target, "a1", project=project)
    assert exc.value.data["file"] == "migrations/sql/parts/broken.sql" and exc.value.data["line"] == 3
    assert "migrations/sql/parts/broken.sql:3" in exc.value.message


def test_a_selftest_may_include_and_reports_its_own_lines() -> None:
    steps = load(ROOT / "selftests" / "substrate.sql")
    helper = [s for s in steps if "pg_temp.selftest_open_gate(p_gate_key" in s.sql]
    assert len(helper) == 1 and helper[0].line == 6  # line 6 of selftests/lib/open_gate.sql
    assert helper[0].file == "selftests/lib/open_gate.sql"


def test_a_selftest_may_include_a_sectioned_file_a_revision_file_may_not(proj: Path) -> None:
    """Section markers belong to the file whose sections are read: a self-test has none, so it may
    include a whole migration or rollback file; a revision file including one is refused."""
    write(proj / "sql" / "part.sql", "-- @guard\nSELECT 1;\n-- @body\nSELECT 2;\n")
    write(proj / "selftests" / "t.sql", "BEGIN;\n\\ir ../sql/part.sql\nROLLBACK;\n")
    steps = load(proj / "selftests" / "t.sql")
    assert [(s.sql, s.file, s.line) for s in steps] == [
        ("BEGIN", None, 1), ("SELECT 1", "sql/part.sql", 2), ("SELECT 2", "sql/part.sql", 4), ("ROLLBACK", None, 3)]
    assert steps[1].comments == ["-- @guard"]
    write(proj / "sql" / "f.sql", HEAD + "\\ir part.sql\n" + TAIL)
    with pytest.raises(SqlFileError) as exc:
        parse_script(proj / "sql" / "f.sql", MIGRATION_SECTIONS)
    assert exc.value.message.startswith("sql/part.sql:1: a section marker in an included file (included from sql/f.sql)")


# ---------------------------------------------------------------- psql runs the files by hand
def _psql() -> str:
    from iu_core.backup import newest

    return str(Path(newest("pg_dump")).with_name("psql"))


def _by_hand(dsn: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_psql(), "-X", "-1", "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path), dsn],
                          capture_output=True, text=True)


def test_psql_runs_the_chain_and_the_rollback_by_hand_as_iucore_does(new_db) -> None:
    """DESIGN §7a: every file runs with `psql -X -1 -v ON_ERROR_STOP=1 -f`, includes and all; the
    catalog it builds is the one iucore builds."""
    chain = [r.revision for r in reversed(list(migrate.script_directory(ROOT).walk_revisions()))]
    assert chain[-1] == "least_privilege"
    hand = new_db()
    with connect(hand) as c:
        dsn = c.info.dsn
    for rev in chain:
        proc = _by_hand(dsn, ROOT / "migrations" / "sql" / f"{rev}.sql")
        assert proc.returncode == 0, (rev, proc.stderr)
    tool = new_db("least_privilege")

    def snap(t):  # alembic_version is iucore's bookkeeping, not the schema
        with connect(t) as c:
            s = snapshot(c)
        s.pop("alembic_version")
        return s

    assert snap(hand) == snap(tool)
    proc = _by_hand(dsn, ROOT / "rollbacks" / "least_privilege.sql")
    assert proc.returncode == 0, proc.stderr
    assert snap(hand) == snap(new_db("gate_protocol"))
