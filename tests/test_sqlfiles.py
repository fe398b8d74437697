"""SQL written once: psql's `\\ir` in the SQL reader, checksums over the expanded text,
statements that keep the file and line they were written at, and psql running the
files by hand exactly as iucore does."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from iu_core.errors import RevisionFailed, SqlFileError
from iu_core.framework import layout, migrate
from iu_core.framework.fingerprint import snapshot
from iu_core.framework.selftest import load
from iu_core.framework.session import RevisionFiles
from iu_core.framework.sqlfiles import MIGRATION_SECTIONS, ROLLBACK_SECTIONS, expand, parse_script

from .conftest import PROJECTS, ROOT, connect

# sha256 of the EXPANDED text (what psql runs, includes inlined) of every migration, rollback and
# runtime data script of the released chain, as applied (DESIGN §3: applied history does not
# change): substrate.sql with its seed 002 A3 correction (commit c7499c9, docs/seeds.md) and
# its seed 001 §3 / 003 §2 correction with runtime/270 and 290 (the birth gate emits no event),
# gate_protocol.sql as applied (commit 3e5fc21), worker_pick's as first released, the rest as
# of commit 52f15fd. Moving a
# definition or a seed into an included file keeps these; editing what runs does not.
RELEASED_SHA256 = {
    "migrations/sql/016.sql": "f3c4d4376e2dd4bafe7b95bda4ba3a5741a82f39d2603bd215e5f66e9fa86aee",
    "migrations/sql/017.sql": "a82b3b5cfd9c8ff0a79beb210416c912034293a10d48d857303110994680bd27",
    "migrations/sql/033.sql": "9addd8f9ac5338f9963064a59b3b5cd22bb8dcd57d31e97b6eca726c51c18003",
    "migrations/sql/034.sql": "e979b1c74a0d84772b3f0c2587871bf4c67e222a03dd2cd7322a0f3311838678",
    "migrations/sql/260.sql": "57e90149af9b0c588f69f3295e28a0343654e184ee448e1f76baf40a04aadd8b",
    "migrations/sql/280.sql": "9bf634b762f66b7f9628d6f3476462a5209b1260bab5fa99883a5c65c09f7acc",
    "migrations/sql/gate_protocol.sql": "1d9848b5c6bf7d7e417f30a9060193f1c806c9d48bbf14812d0e07d01ae2c20d",
    "migrations/sql/least_privilege.sql": "6e08f8dc6ddd2f22a1ea905fc95748e246350a1c1d3da51f11f62ef9cbbd5055",
    "migrations/sql/substrate.sql": "57d8fb13b1f6f05cf45495fd2694c1956dadcf0306e5d62ef589e82466a66e24",
    "migrations/sql/worker_pick.sql": "03583c5eeb2dcbc9c00b29b8ce1ed9214a7bd7eed4db86c7e1f7c8d5c9d1f58f",
    "rollbacks/016.sql": "c0cfd083e86f9517698b4406e766a0f28f8afda52eb0ab5f9cbdab2d35730565",
    "rollbacks/017.sql": "781abe6ec991e8a3447c184d45b081846369521a9a1003e26277bbde4b5fa77b",
    "rollbacks/033.sql": "0716985e1f4809870b8206cfdb79a2ff89181a13552b5347fc3c8899d168afd2",
    "rollbacks/034.sql": "1408bd99ce229b92a2f997780d02323528a5e7f9e875f5bbd84fc73a18dce7ec",
    "rollbacks/260.sql": "e5c9389e6fae5950503b3108a78fbcb5bb68cd3c0343ac973a9ea25d632d3119",
    "rollbacks/280.sql": "c09a2da894196dfc4463622de059f3c9b76a4fb9ae8313b876ddff02020c2111",
    "rollbacks/gate_protocol.sql": "6f4376b302ee251b9ddc4c54081282bb782e552c202e4df6ca51f0084ee8bc66",
    "rollbacks/least_privilege.sql": "34e1a5cfb5f99929dc4eb74fac340499390c13ef6ceded8681c22c70adf94c03",
    "rollbacks/substrate.sql": "6e393e055d7232881c7e7baccda23c47d5cdd4bab1569f091e1b277d6b023889",
    "rollbacks/worker_pick.sql": "e690a5294f982689ed41abc219b0a82211937e126bda16caef90a1ce2ddf7f29",
    "runtime/270.sql": "11d9cf2c5715cf14715dbbf1d537e28302b2edd62ad7e2f56aca08b85e55fd18",
    "runtime/290.sql": "bc494efad8625b87cf5c57ce0c9fbb780b2ef5b95ca04f2b55af485780ab21c8",
    "runtime/rollback/270.sql": "655103839323115da4cfccf626c19b62d414c126a659081c8729cdf6c7d6e197",
    "runtime/rollback/290.sql": "284e271a3811c761f598b4c3bfd0dee5866aa491b504a058bd4376794674c3c5",
}
# The released files that `\\ir` part of their text from migrations/sql/functions/ or data/.
INCLUDING = ("migrations/sql/substrate.sql", "migrations/sql/gate_protocol.sql", "migrations/sql/280.sql",
             "migrations/sql/least_privilege.sql", "rollbacks/least_privilege.sql",
             "migrations/sql/worker_pick.sql", "rollbacks/worker_pick.sql")


@pytest.mark.parametrize("rel", sorted(RELEASED_SHA256))
def test_a_released_file_runs_exactly_the_text_that_was_applied(rel: str) -> None:
    assert expand(ROOT / rel).sha256 == RELEASED_SHA256[rel], f"{rel}: what runs changed (DESIGN §3)"
    if rel.startswith(("migrations/", "rollbacks/")):
        rev = Path(rel).stem
        assert RevisionFiles(ROOT, rev).checksums()[rel] == RELEASED_SHA256[rel]


@pytest.mark.parametrize("rel", INCLUDING)
def test_moving_a_definition_into_an_included_file_changes_nothing_that_runs(rel: str) -> None:
    path = ROOT / rel
    raw = path.read_bytes()
    assert b"\n\\ir " in raw  # the file does include
    assert hashlib.sha256(raw).hexdigest() != RELEASED_SHA256[rel]  # so its own bytes are not what runs
    assert expand(path).sha256 == RELEASED_SHA256[rel]


def test_280s_seed_is_written_once_and_is_what_db_verify_re_runs() -> None:
    """The catalog seed lives in one file, included by 280's migration (and by the 280 and 034
    self-tests); the SSOT re-run of `db verify` parses the very same INSERT out of 280.sql."""
    from iu_core.release.ssot import catalog_seed_insert

    seed = ROOT / "migrations" / "sql" / "data" / "280" / "dot_iu_command_catalog.sql"
    assert seed.resolve() in expand(ROOT / "migrations" / "sql" / "280.sql").includes
    insert = catalog_seed_insert(ROOT / "migrations" / "sql" / "280.sql")
    assert insert in seed.read_text() and insert.startswith("INSERT INTO public.dot_iu_command_catalog")


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

    # worker_pick's rollback: the substrate's worker, from the file substrate.sql includes
    ex = expand(ROOT / "rollbacks" / "worker_pick.sql")
    worker = ROOT / "migrations" / "sql" / "functions" / "substrate" / "fn_iu_route_worker_run.sql"
    assert {p.relative_to(ROOT).as_posix() for p in ex.includes} == {
        worker.relative_to(ROOT).as_posix(), "migrations/sql/functions/worker_pick/search_path_restore.sql"}
    assert worker.resolve() in expand(ROOT / "migrations" / "sql" / "substrate.sql").includes


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


@pytest.mark.parametrize("rev", ["034", "280"])
def test_the_034_and_280_selftests_run_the_real_migration_and_rollback(rev: str) -> None:
    """No copy of the revision's SQL in its self-test: every statement that writes the catalog comes
    from the migration, its seed, or the rollback — the files that run."""
    steps = load(ROOT / "selftests" / f"{rev}.sql")
    files = {s.file for s in steps}
    assert {f"migrations/sql/{rev}.sql", f"rollbacks/{rev}.sql",
            "migrations/sql/data/280/dot_iu_command_catalog.sql"} <= files
    own = [s.sql for s in steps if s.file is None]
    assert not [q for q in own if q.lstrip().upper().startswith("INSERT INTO PUBLIC.DOT_IU_COMMAND_CATALOG")]
    assert not any("rollback refused" in q.lower() for q in own)  # no guard re-typed inside a DO block
    # the rollback's guard, body and assert all run, from the rollback file itself
    rb = parse_script(ROOT / "rollbacks" / f"{rev}.sql", ROLLBACK_SECTIONS)
    ran = [s.sql for s in steps if s.file == f"rollbacks/{rev}.sql"]
    assert ran == [s.sql for s in rb.statements]


# ---------------------------------------------------------------- psql runs the files by hand
def _psql() -> str:
    from iu_core.framework.backup import newest

    return str(Path(newest("pg_dump")).with_name("psql"))


def _by_hand(dsn: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_psql(), "-X", "-1", "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path), dsn],
                          capture_output=True, text=True)


def test_psql_runs_the_chain_and_the_rollback_by_hand_as_iucore_does(new_db) -> None:
    """DESIGN §7a: every file runs with `psql -X -1 -v ON_ERROR_STOP=1 -f`, includes and all; the
    catalog it builds is the one iucore builds."""
    chain = [r.revision for r in reversed(list(layout.script_directory(ROOT).walk_revisions()))]
    assert chain[-2:] == ["least_privilege", "worker_pick"]
    hand = new_db()
    with connect(hand) as c:
        dsn = c.info.dsn
    for rev in chain:
        proc = _by_hand(dsn, ROOT / "migrations" / "sql" / f"{rev}.sql")
        assert proc.returncode == 0, (rev, proc.stderr)
    tool = new_db("worker_pick")

    def snap(t):  # alembic_version is iucore's bookkeeping, not the schema
        with connect(t) as c:
            s = snapshot(c)
        s.pop("alembic_version")
        return s

    assert snap(hand) == snap(tool)
    for rev, parent in (("worker_pick", "least_privilege"), ("least_privilege", "gate_protocol")):
        proc = _by_hand(dsn, ROOT / "rollbacks" / f"{rev}.sql")
        assert proc.returncode == 0, (rev, proc.stderr)
        assert snap(hand) == snap(new_db(parent)), rev
