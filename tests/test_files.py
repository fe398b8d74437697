"""Files and raw input (issue 9, points 6 and 8), through the real CLI on a real server:
`dot render` never writes outside --out, `dot import` refuses bad keys and bad files before
the database, and command parameters that cannot be text or JSON are exit 2, not tracebacks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from iu_core.domain.manifests import MAX_MANIFEST_BYTES, Manifest, Piece, write_manifest
from iu_core.domain.registry import COMPOSER, OPERATOR_RUNTIME
from iu_core.errors import BadInput
from iu_core.pg.target import Target

from .conftest import ROOT, connect, files_under, head

UNREACHABLE = "postgresql://nobody@/nowhere?host=/nonexistent"
GOOD = ("---\ncollection_key: k.1\ncollection_kind: file\ntitle: T\n---\n"
        "0 | intro | a/intro | section | Intro\n1 | body | a/body | section | Body\n")


def add_collection(target: Target, key: str, kind: str = "file") -> None:
    """A collection row as a writer with table access could leave it before least_privilege
    (whose CHECK refuses unsafe keys; fn_iu_compose took `a/../x` before it)."""
    with connect(target) as c:
        c.execute("INSERT INTO public.iu_collection (collection_key, collection_kind, title, created_by)"
                  " VALUES (%s, %s, 'T', 'pytest')", (key, kind))


def state(target: Target) -> tuple[int, int, int]:
    with connect(target) as c:
        row = c.execute("SELECT (SELECT count(*) FROM public.iu_collection),"
                        " (SELECT count(*) FROM public.information_unit),"
                        " (SELECT count(*) FROM public.dot_iu_command_run)").fetchone()
    return row[0], row[1], row[2]


@contextlib.contextmanager
def unwritable(d: Path) -> Iterator[Path]:
    """A directory nobody may create entries in: immutable for root, 0555 for anyone else."""
    d.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
            pytest.skip("needs chattr +i to make a directory unwritable for root")
        try:
            yield d
        finally:
            subprocess.run(["chattr", "-i", str(d)], check=True)
    else:
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)


# ---------------------------------------------------------------- render: keys
@pytest.mark.parametrize(("key", "needle"), [
    ("a/../../../escaped", "'..' path segment"),
    ("/tmp/iucore-abs-{u}/escaped", "absolute path"),
    ("a\\..\\..\\escaped", "backslash"),
    ("a\nb", "control character U+000A"),
    ("a//b", "empty path segment"),
    ("./a", "'.' path segment"),
], ids=["dotdot", "absolute", "backslash", "newline", "empty-segment", "dot-segment"])
def test_render_refuses_a_key_that_is_not_a_plain_relative_path(
        new_db, run_cli, tmp_path: Path, key: str, needle: str) -> None:
    key = key.format(u=uuid.uuid4().hex)
    # The database refuses such keys since least_privilege (a CHECK): render must
    # still refuse a row written before it, so the collection lives at gate_protocol.
    target = new_db("gate_protocol")
    add_collection(target, key)
    out = tmp_path / "deep" / "out"
    res = run_cli(target, "dot", "render", key, "--out", str(out))
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "nothing was written" in res.stderr and "Traceback" not in res.output
    assert files_under(tmp_path) == []
    if key.startswith("/"):
        assert not Path(key).parent.exists()


def test_render_refuses_a_kind_that_is_not_one_of_the_three(tmp_path: Path) -> None:
    m = Manifest("k.1", "../../x", "T", [Piece(0, None, "a/b", "section", "B")])
    with pytest.raises(BadInput, match="collection kind"):
        write_manifest(m, tmp_path)
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------- render: symlinks and existing files
@pytest.fixture
def rendered(new_db) -> Target:
    target = new_db(head())
    add_collection(target, "team/k.1")
    return target


def test_render_refuses_a_symlink_below_out_that_leads_outside(rendered, run_cli, tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / "iu-tree/_collections/file").mkdir(parents=True)
    outside.mkdir()
    (out / "iu-tree/_collections/file/team").symlink_to(outside)
    res = run_cli(rendered, "dot", "render", "team/k.1", "--out", str(out))
    assert res.exit_code == 2, res.output
    assert "outside the output directory" in res.stderr and "Traceback" not in res.output
    assert files_under(outside) == []


def test_render_follows_a_symlink_that_stays_inside_out(rendered, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "shared").mkdir(parents=True)
    (out / "iu-tree").symlink_to(out / "shared")
    res = run_cli(rendered, "dot", "render", "team/k.1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert (out / "shared/_collections/file/team/k.1.md").read_text().startswith("---\ncollection_key: team/k.1\n")


def test_render_replaces_a_symlink_at_the_manifest_path_and_never_writes_its_target(
        rendered, run_cli, tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "iu-tree/_collections/file/team").mkdir(parents=True)
    link = out / "iu-tree/_collections/file/team/k.1.md"
    link.symlink_to(victim)
    res = run_cli(rendered, "dot", "render", "team/k.1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text().startswith("---\ncollection_key: team/k.1\n")


def test_render_replaces_an_existing_manifest_atomically(rendered, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = out / "iu-tree/_collections/file/team/k.1.md"
    path.parent.mkdir(parents=True)
    path.write_text("an older render\n")
    old_inode = path.stat().st_ino
    res = run_cli(rendered, "dot", "render", "team/k.1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert path.read_text().startswith("---\ncollection_key: team/k.1\n")
    assert path.stat().st_ino != old_inode  # a new file renamed into place, not the old one rewritten
    assert files_under(path.parent) == ["k.1.md"]  # no temporary file left


def test_render_refuses_a_directory_at_the_manifest_path(rendered, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "iu-tree/_collections/file/team/k.1.md/inner").mkdir(parents=True)
    res = run_cli(rendered, "dot", "render", "team/k.1", "--out", str(out))
    assert res.exit_code == 2, res.output
    assert "is a directory" in res.stderr
    assert files_under(out / "iu-tree/_collections/file/team") == ["k.1.md", "k.1.md/inner"]


@pytest.mark.parametrize("where", ["/dev/null", "a regular file", "an unwritable directory"])
def test_render_to_an_out_that_cannot_hold_it_is_exit_2(rendered, run_cli, tmp_path: Path, where: str) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with unwritable(tmp_path / "ro") as ro:
        out = {"/dev/null": "/dev/null", "a regular file": str(f), "an unwritable directory": str(ro)}[where]
        res = run_cli(rendered, "dot", "render", "team/k.1", "--out", out)
        assert res.exit_code == 2, res.output
        assert "nothing was written" in res.stderr and "Traceback" not in res.output
        assert files_under(ro) == []
    assert f.read_text() == "x"


# ---------------------------------------------------------------- import: keys and files
@pytest.fixture
def importable(new_db) -> Target:
    """A database at head with the gates import needs open: a good manifest would be imported."""
    target = new_db(head())
    with connect(target) as c:
        for k in (OPERATOR_RUNTIME, COMPOSER):
            c.execute("SELECT public.fn_iu_gate_open(%s, %s, 'test', 'pytest', 600)", (k, str(uuid.uuid4())))
    return target


def test_a_good_manifest_imports_where_the_bad_ones_are_refused(importable, run_cli, tmp_path: Path) -> None:
    good = tmp_path / "good.md"
    good.write_text(GOOD)
    res = run_cli(importable, "dot", "import", str(good))
    assert res.exit_code == 0 and "imported" in res.stdout, res.output


@pytest.mark.parametrize(("key_line", "needle"), [
    ("collection_key: a/../../escaped", "'..' path segment"),
    ("collection_key: /etc/escaped", "absolute path"),
    ("collection_key: a\x00b", "NUL byte"),
], ids=["dotdot", "absolute", "nul"])
def test_import_refuses_a_bad_key_at_parse_naming_the_line(
        importable, run_cli, tmp_path: Path, key_line: str, needle: str) -> None:
    m = tmp_path / "m.md"
    m.write_text(GOOD.replace("collection_key: k.1", key_line))
    before = state(importable)
    res = run_cli(importable, "dot", "import", str(m))
    assert res.exit_code == 2, res.output
    assert f"{m}:2: " in res.stderr and needle in res.stderr and "Traceback" not in res.output
    assert state(importable) == before


def test_import_refuses_an_address_with_a_dotdot_segment(importable, run_cli, tmp_path: Path) -> None:
    m = tmp_path / "m.md"
    m.write_text(GOOD.replace("a/body", "a/../../body"))
    res = run_cli(importable, "dot", "import", str(m))
    assert res.exit_code == 2 and f"{m}:7: " in res.stderr and "'..' path segment" in res.stderr, res.output


def _make(kind: str, path: Path) -> str:
    """Build a real file of KIND at PATH; return what the refusal must say."""
    if kind == "directory":
        path.mkdir()
        return "is a directory"
    if kind == "fifo":
        os.mkfifo(path)
        return "is a FIFO"
    if kind == "not utf-8":
        path.write_bytes(GOOD.replace("title: T", "title: caf\xe9").encode("latin-1"))
        return ":4: not UTF-8 text (byte 0xe9"
    if kind == "binary":
        path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00>\x00")
        return ":1: a NUL byte: this is a binary file"
    if kind == "huge":
        with path.open("wb") as fh:
            fh.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: the size alone must refuse it
        return "a manifest is at most"
    if kind == "missing":
        return "No such file or directory"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["directory", "fifo", "not utf-8", "binary", "huge", "missing"])
def test_import_refuses_what_is_not_a_manifest_file_before_the_database(
        importable, run_cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "m.md"
    needle = _make(kind, path)
    before = state(importable)
    # A safety net, not a timing: if the FIFO open ever blocks again, a writer unblocks it
    # after a while so the test fails on its assertions instead of hanging the suite.
    net = threading.Timer(60, lambda: os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                          if kind == "fifo" else None)
    net.start()
    try:
        res = run_cli(importable, "dot", "import", str(path))
    finally:
        net.cancel()
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "Traceback" not in res.output
    assert state(importable) == before


# ---------------------------------------------------------------- command parameters
@pytest.mark.parametrize(("pair", "needle"), [
    ("title=caf\udce9", "lone surrogate U+DCE9"),
    ("ti\udcfftle=x", "parameter name"),
    ("steps=" + "[" * 5000 + "]" * 5000, "nested deeper than 64 levels"),
    ('steps=[{"title": "\\ud800"}]', "lone surrogate U+D800"),
    ('steps=[{"title": "a\\u0000b"}]', "NUL byte"),
    ("steps=[NaN]", "NaN is not JSON"),
], ids=["surrogate-value", "surrogate-name", "deep-json", "json-escaped-surrogate", "json-nul", "json-nan"])
def test_a_parameter_that_cannot_be_text_or_json_is_exit_2_before_the_database(
        run_cli, pair: str, needle: str) -> None:
    args = {"collection_key=k.1", "title=T", "steps=[]"}
    args = {a for a in args if a.split("=")[0] != pair.split("=")[0]} | {pair}
    res = run_cli(None, "--url", UNREACHABLE, "dot", "apply", "dot_iu_workflow_from_steps", *sorted(args))
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "cannot connect" not in res.stderr and "Traceback" not in res.output
    assert len(res.stderr) < 1000  # a 10,000-character value is not echoed back whole


def test_deep_json_in_an_array_parameter_is_exit_2(run_cli) -> None:
    ids = "[" * 5000 + "]" * 5000
    res = run_cli(None, "--url", UNREACHABLE, "dot", "apply", "dot_iu_merge_pieces", f"iu_ids={ids}",
                  "merged_address=a/b", f"review_decision_id={uuid.uuid4()}")
    assert res.exit_code == 2 and "nested deeper than 64 levels" in res.stderr, res.output


def test_a_non_utf8_byte_in_a_real_argv_is_exit_2(tmp_path: Path) -> None:
    """The way a lone surrogate really arrives: a byte that is not UTF-8 on the command line."""
    argv = [sys.executable.encode(), b"-m", b"iu_core.cli", b"--project", str(ROOT).encode(), b"--url",
            UNREACHABLE.encode(), b"dot", b"apply", b"dot_iu_workflow_from_steps", b"collection_key=k.1",
            b"title=caf\xe9", b"steps=[]"]
    proc = subprocess.run(argv, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"}, cwd=tmp_path)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "lone surrogate U+DCE9" in err and "Traceback" not in err
