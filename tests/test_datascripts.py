"""The runtime data scripts runtime/270 and runtime/290 and their paired
rollbacks (seeds 001 §8, 003 §6 and §11), against a real server at head.

Every path: apply, re-apply refused, rehearse (nothing persisted), rollback,
rollback rehearsed, rollback refused, the audit rows with the files' sha256,
the lock and timeouts of a revision run, and the files run by hand with psql.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid

import psycopg
import pytest

from iu_core.config import RunOptions
from iu_core.domain import proof
from iu_core.errors import LockBusy, RevisionFailed, RevisionRefused
from iu_core.framework.fingerprint import fingerprint
from iu_core.framework.session import LOCK_KEY
from iu_core.pg.server import bin_dir
from iu_core.release import datascripts

from .conftest import PG_MAJOR, ROOT, connect, ok, snap

HEAD = "gate_protocol"
COMPOSER = "iu_core.composer_enabled"
# name → (collection, actor, address prefix, labels, composer events of the apply)
SCRIPTS = {
    "290": ("iu_core.runtime290.file-001", "runtime_290", "iu_core/runtime290/file-001/",
            ["intro", "body", "tail"],
            {"collection_created": 1, "piece_added_to_collection": 3, "collection_rendered": 1}),
    "270": ("iu_core.composer.scratch-file-001", "runtime_270", "iu_core/composer/scratch-file-001/",
            ["intro", "body"],
            {"collection_created": 1, "piece_added_to_collection": 2, "collection_rendered": 1}),
}


def approval() -> str:
    return str(uuid.uuid4())


def opts(**kw) -> RunOptions:
    return RunOptions(actor="dba-jane").with_(**kw)


def counts(target) -> dict[str, int]:
    return {t: int(n) for t, n in snap(target)["count"].items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {t: after[t] - before[t] for t in after if after[t] != before.get(t)}


def audit(target, label):
    with connect(target) as c:
        return c.execute(
            "SELECT direction, mode, outcome, actor, checksums, message, evidence FROM iucore.migration_log"
            " WHERE revision = %s ORDER BY log_id", (label,)).fetchall()


def sha(rel: str) -> str:
    return hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()


def all_safe(c) -> bool:
    return c.execute("SELECT (public.fn_iu_gate_verify_closed(NULL) ->> 'all_safe')::boolean").fetchone()[0]


@pytest.fixture
def head(new_db):
    return new_db(HEAD)


# --------------------------------------------------------------------------- apply


@pytest.mark.parametrize("name", ["290", "270"])
def test_apply_writes_exactly_the_seed_rows_through_the_governed_functions(head, name):
    key, actor, prefix, labels, events = SCRIPTS[name]
    n = len(labels)
    before = counts(head)
    a = approval()
    lines: list[str] = []
    res = datascripts.apply(head, name, approval_id=a, options=opts(), sink=lines.append)
    assert (res.direction, res.mode, res.statements) == ("apply", "real", 11)
    # The forbidden-action ledger: these tables moved by exactly this much, no other did.
    assert delta(before, counts(head)) == {
        "public.information_unit": n, "public.iu_collection": 1, "public.iu_collection_member": n,
        "public.event_outbox": sum(events.values()),   # the composer events; a birth emits none
        "public.iu_gate_transition": 2, "public.dot_iu_command_run": 2,  # the gate open + close
    }
    with connect(head) as c:
        cid, created_by = c.execute("SELECT collection_id, created_by FROM public.iu_collection"
                                    " WHERE collection_key = %s", (key,)).fetchone()
        assert created_by == actor
        members = c.execute(
            """SELECT m.piece_order, m.label, iu.canonical_address, iu.created_by, iu.lifecycle_status
                 FROM public.iu_collection_member m JOIN public.information_unit iu USING (iu_id)
                WHERE m.collection_id = %s ORDER BY m.piece_order""", (cid,)).fetchall()
        assert [(o, lab) for o, lab, *_ in members] == list(enumerate(labels))
        for _, lab, address, by, status in members:
            assert (by, status) == (actor, "active")
            assert address.startswith(f"{prefix}{lab}-")
            uuid.UUID(address.removeprefix(f"{prefix}{lab}-"))  # gen_random_uuid()-suffixed
        births = c.execute("""SELECT count(*) FROM public.event_outbox e JOIN public.iu_collection_member m
                                ON e.event_subject_ref = m.iu_id::text
                               WHERE m.collection_id = %s AND e.event_type = 'iu_created'""", (cid,)).fetchone()
        assert births == (0,)  # the fn_iu_create birth gate emits no event (seed 003 §2, 001 §6)
        got = c.execute("""SELECT event_type, delivery_lane, count(*), count(DISTINCT event_id)
                             FROM public.event_outbox WHERE event_subject_ref = %s
                            GROUP BY 1, 2""", (str(cid),)).fetchall()
        assert {(t, lane, k, d) for t, lane, k, d in got} == {(t, "delayed", k, k) for t, k in events.items()}
        # opened through the protocol with our approval and a short TTL, and closed again
        trans = c.execute("SELECT gate_key, action, approval_id, ttl_seconds, actor FROM public.iu_gate_transition"
                          " ORDER BY created_at").fetchall()
        assert trans == [(COMPOSER, "open", uuid.UUID(a), 300, actor), (COMPOSER, "close", None, None, actor)]
        assert all_safe(c)
    text = "\n".join(lines)
    # only DO blocks and SELECTs of the governed functions: no direct DML in the transcript
    assert not [ln for ln in lines if ln.startswith(("INSERT ", "UPDATE ", "DELETE "))]
    assert " opened    | iu_core.composer_enabled" in text and " closed\n" in text
    (row,) = audit(head, f"runtime/{name}")
    direction, mode, outcome, who, checksums, message, evidence = row
    assert (direction, mode, outcome, who) == ("apply", "real", "applied", "dba-jane")
    assert checksums == {f"runtime/{name}.sql": sha(f"runtime/{name}.sql"),
                         f"runtime/rollback/{name}.sql": sha(f"runtime/rollback/{name}.sql")}
    assert a in message
    check = next(r for r in evidence["assert"]["rows"] if r["check"] == f"runtime_{name}")
    assert (check["memberships"], check["ius_minted"], check["composer_events"], check["gates_all_safe"]) == (
        n, n, sum(events.values()), True)


def test_the_proof_and_demo_collection_is_290s():
    assert datascripts.COLLECTIONS["290"] == proof.DEFAULT_COLLECTION
    for name, (key, *_rest) in SCRIPTS.items():
        assert datascripts.COLLECTIONS[name] == key
        assert key in (ROOT / "runtime" / f"{name}.sql").read_text()


def test_reapply_is_refused_audited_and_changes_nothing(head, run_cli):
    datascripts.apply(head, "290", approval_id=approval(), options=opts())
    before = snap(head)
    res = run_cli(head, "runtime", "apply", "290", "--approval-id", approval())
    assert res.exit_code == 3, res.output
    assert "collection iu_core.runtime290.file-001 already exists" in res.stderr
    assert "roll it back first (iucore runtime rollback 290)" in res.stderr
    assert snap(head) == before
    assert [r[:3] for r in audit(head, "runtime/290")] == [("apply", "real", "applied"), ("apply", "real", "refused")]


def test_refused_without_an_approval_id_and_bad_input_for_a_malformed_one(head, run_cli):
    before = snap(head)
    res = run_cli(head, "runtime", "apply", "290")
    assert res.exit_code == 3, res.output
    assert "runtime/290 refused: no approval id" in res.stderr
    assert [r[:3] for r in audit(head, "runtime/290")] == [("apply", "real", "refused")]
    res = run_cli(head, "runtime", "apply", "290", "--approval-id", "not-a-uuid")
    assert res.exit_code == 2 and "is not a uuid" in res.stderr
    res = run_cli(head, "runtime", "apply", "999", "--approval-id", approval())
    assert res.exit_code == 2 and "unknown runtime script '999'; known: 270, 290" in res.stderr
    assert len(audit(head, "runtime/290")) == 1  # bad input: nothing ran, nothing audited
    assert snap(head) == before


def test_refused_while_a_protocol_gate_is_open(head):
    with connect(head) as c:
        c.execute("SELECT public.fn_iu_gate_open('iu_core.structure_ops_enabled', %s, 'someone else', 'ops', 600)",
                  (approval(),))
    before = snap(head)
    with pytest.raises(RevisionRefused) as exc:
        datascripts.apply(head, "290", approval_id=approval(), options=opts())
    assert "protocol gate(s) open: iu_core.structure_ops_enabled" in exc.value.message
    assert snap(head) == before
    with connect(head) as c:  # the other window is untouched
        assert c.execute("SELECT value FROM public.dot_config WHERE key = 'iu_core.structure_ops_enabled'"
                         ).fetchone() == ("true",)


def test_refused_when_emission_is_stopped(head):
    with connect(head) as c:
        c.execute("UPDATE public.dot_config SET value = 'false' WHERE key = 'piece_event_runtime.emit_enabled'")
    with pytest.raises(RevisionRefused) as exc:
        datascripts.apply(head, "290", approval_id=approval(), options=opts())
    assert "event emission is stopped (piece_event_runtime.emit_enabled" in exc.value.message


def test_refused_below_head(new_db):
    target = new_db("017")
    with pytest.raises(RevisionRefused) as exc:
        datascripts.apply(target, "290", approval_id=approval(), options=opts())
    assert "fn_iu_gate_open" in exc.value.message and "iucore db upgrade head first" in exc.value.message


def test_a_failing_assert_rolls_everything_back_and_is_audited_failed(head, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "runtime", project / "runtime")
    path = project / "runtime" / "290.sql"
    text = path.read_text()
    assert text.count("'0/intro 1/body 2/tail'") == 1
    path.write_text(text.replace("'0/intro 1/body 2/tail'", "'0/intro 1/body 2/tail 3/extra'"))
    before = snap(head)
    with pytest.raises(RevisionFailed) as exc:
        datascripts.apply(head, "290", approval_id=approval(), project=project, options=opts())
    assert "failed in @assert (runtime/290.sql:" in exc.value.message
    assert "runtime/290 assert: memberships 0/intro 1/body 2/tail" in exc.value.message
    assert snap(head) == before  # the gate opening went with it
    assert [r[:3] for r in audit(head, "runtime/290")] == [("apply", "real", "failed")]


# --------------------------------------------------------------------------- rehearsal


def test_rehearse_runs_everything_then_persists_nothing(head, run_cli):
    before = snap(head)
    res = run_cli(head, "runtime", "apply", "290", "--approval-id", approval(), "--rehearse")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "== runtime/290 apply (rehearsal: will ROLLBACK)" in out
    assert " opened    | iu_core.composer_enabled" in out and "runtime_290_events" in out
    assert out.index("-- @assert") < out.rindex("ROLLBACK")
    assert "nothing persisted: catalog fingerprint and the row counts of 16 IU Core tables unchanged" in out
    after = snap(head)
    assert after == before and fingerprint(after) in out
    assert [r[:3] for r in audit(head, "runtime/290")] == [("apply", "rehearsal", "rehearsed")]
    # and the real apply still works afterwards
    datascripts.apply(head, "290", approval_id=approval(), options=opts())


def test_rollback_rehearsed_persists_nothing(head):
    datascripts.apply(head, "290", approval_id=approval(), options=opts())
    before = snap(head)
    res = datascripts.rollback(head, "290", approval_id=approval(), options=opts(rehearse=True))
    assert res.mode == "rehearsal" and res.fingerprint_before == res.fingerprint_after
    assert res.tables_counted == 16
    assert snap(head) == before
    assert [r[:3] for r in audit(head, "runtime/290")] == [("apply", "real", "applied"),
                                                           ("rollback", "rehearsal", "rehearsed")]


def test_a_rehearsal_is_not_failed_by_what_production_commits_meanwhile(head):
    """Another session commits a dot_config row while the rehearsal runs: the
    rehearsal still proves nothing of its own persisted, and names the table
    the other session moved (no extension or language lets the script commit elsewhere)."""
    fired: list[int] = []

    def production_writes(_conn, _stmt, i: int) -> None:
        if not fired:
            fired.append(i)
            with connect(head) as c:
                c.execute("INSERT INTO public.dot_config (key, value) VALUES ('iu_core.meanwhile', 'x')")

    res = datascripts.apply(head, "290", approval_id=approval(), options=opts(rehearse=True),
                            before_statement=production_writes)
    assert fired and res.mode == "rehearsal"
    assert res.moved_by_others == ["public.dot_config"]
    assert res.fingerprint_before != res.fingerprint_after  # the counts are in it: the other session's row
    with connect(head) as c:
        assert c.execute("SELECT value FROM public.dot_config WHERE key = 'iu_core.meanwhile'").fetchone() == ("x",)
        assert c.execute("SELECT count(*) FROM public.iu_collection WHERE collection_key = %s",
                         (SCRIPTS["290"][0],)).fetchone() == (0,)


# --------------------------------------------------------------------------- rollback


@pytest.mark.parametrize("name", ["290", "270"])
def test_rollback_soft_deletes_the_minted_pieces_and_drops_the_collection(head, name):
    key, actor, _prefix, labels, _ = SCRIPTS[name]
    n = len(labels)
    datascripts.apply(head, name, approval_id=approval(), options=opts())
    with connect(head) as c:
        minted = {r[0] for r in c.execute(
            "SELECT m.iu_id FROM public.iu_collection_member m JOIN public.iu_collection c USING (collection_id)"
            " WHERE c.collection_key = %s", (key,))}
    before = counts(head)
    res = datascripts.rollback(head, name, approval_id=approval(), options=opts())
    assert (res.direction, res.mode) == ("rollback", "real")
    assert delta(before, counts(head)) == {
        "public.iu_collection": -1, "public.iu_collection_member": -n,
        "public.event_outbox": 2 * n,  # n piece_removed_from_collection + n piece_soft_deleted
        "public.iu_gate_transition": 4, "public.dot_iu_command_run": 4,  # two gates opened and closed
    }
    with connect(head) as c:
        rows = c.execute("SELECT iu_id, lifecycle_status, deleted_by, delete_reason FROM public.information_unit"
                         " WHERE iu_id = ANY(%s)", (list(minted),)).fetchall()
        assert {(s, by, why) for _, s, by, why in rows} == {("soft_deleted", actor, f"runtime/rollback/{name}")}
        assert len(rows) == n
        assert all_safe(c)
        # restorable: the soft-delete pair of 017
        c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.structure_ops_enabled'")
        restored = c.execute("SELECT public.fn_iu_piece_restore(%s, 'pytest') ->> 'status'",
                             (next(iter(minted)),)).fetchone()
        c.execute("UPDATE public.dot_config SET value = 'false' WHERE key = 'iu_core.structure_ops_enabled'")
        assert restored == ("restored",)
    (row,) = [r for r in audit(head, f"runtime/{name}") if r[0] == "rollback"]
    assert row[:3] == ("rollback", "real", "applied")
    assert row[4][f"runtime/rollback/{name}.sql"] == sha(f"runtime/rollback/{name}.sql")
    # applied again: fresh addresses, nothing collides with the soft-deleted pieces
    datascripts.apply(head, name, approval_id=approval(), options=opts())
    state = next(s for s in datascripts.status(head) if s.name == name)
    assert state.applied is True and state.last_run["direction"] == "apply"


def test_rollback_refused_when_not_applied(head, run_cli):
    before = snap(head)
    res = run_cli(head, "runtime", "rollback", "290", "--approval-id", approval())
    assert res.exit_code == 3, res.output
    assert "290 is not applied; nothing to roll back" in res.stderr
    assert snap(head) == before
    assert [r[:3] for r in audit(head, "runtime/290")] == [("rollback", "real", "refused")]


def _open_composer(c):
    c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.composer_enabled'")


def _close_composer(c):
    c.execute("UPDATE public.dot_config SET value = 'false' WHERE key = 'iu_core.composer_enabled'")


def _cid(c, key="iu_core.runtime290.file-001"):
    return c.execute("SELECT collection_id FROM public.iu_collection WHERE collection_key = %s", (key,)).fetchone()[0]


def _minted(c):
    return [r[0] for r in c.execute(
        "SELECT iu_id FROM public.iu_collection_member WHERE collection_id = %s ORDER BY piece_order", (_cid(c),))]


def _foreign_piece(c):
    _open_composer(c)
    piece = c.execute("SELECT public.fn_iu_create('other/foreign-piece', 'section', 'Foreign', 'someone')"
                      " ->> 'iu_id'").fetchone()[0]
    c.execute("SELECT public.fn_iu_collection_add_piece(%s, %s, 'someone')", (_cid(c), piece))
    _close_composer(c)


def _other_collection(c):
    _open_composer(c)
    c.execute("SELECT public.fn_iu_compose('other.file', 'file', 'Other', %s, 'someone')", (_minted(c)[:1],))
    _close_composer(c)


def _removed_piece(c):
    _open_composer(c)
    c.execute("SELECT public.fn_iu_collection_remove_piece(%s, %s, 'someone')", (_cid(c), _minted(c)[0]))
    _close_composer(c)


def _as_template(c):
    """A provenance row of 033: an auto-instance whose template is the 290 collection."""
    _open_composer(c)
    piece = c.execute("SELECT public.fn_iu_create('other/instance-piece', 'section', 'I', 'o') ->> 'iu_id'"
                      ).fetchone()[0]
    inst = c.execute("SELECT public.fn_iu_compose('inst.file', 'file', 'Instance', %s, 'o') ->> 'collection_id'",
                     ([piece],)).fetchone()[0]
    _close_composer(c)
    c.execute("INSERT INTO public.iu_auto_instance (instance_collection_id, template_collection_id, event_id,"
              " event_type, actor) VALUES (%s, %s, gen_random_uuid(), 'crm.deal_won', 'orchestrator')",
              (inst, _cid(c)))


def _superseded(c):
    _open_composer(c)
    c.execute("SELECT public.fn_iu_create('other/old-piece', 'section', 'Old', 'someone')")
    _close_composer(c)
    c.execute("UPDATE public.information_unit SET superseded_by = ARRAY[%s]::uuid[]"
              " WHERE canonical_address = 'other/old-piece'", (_minted(c)[1],))


@pytest.mark.parametrize("change,needle", [
    (_foreign_piece, "the collection holds piece(s) 290 did not mint or that are no longer active: "
                     "other/foreign-piece (active, by someone)"),
    (_other_collection, "the minted pieces are members of other collection(s): other.file"),
    (_removed_piece, "the collection holds 2 of the 3 pieces 290 minted"),
    (_as_template, "auto-instance(s) provenanced to this collection as their template: inst.file"),
    (_superseded, "unit(s) superseded by the minted pieces: other/old-piece"),
])
def test_rollback_refused_when_it_could_not_put_things_back(head, change, needle):
    datascripts.apply(head, "290", approval_id=approval(), options=opts())
    with connect(head) as c:
        change(c)
    before = snap(head)
    with pytest.raises(RevisionRefused) as exc:
        datascripts.rollback(head, "290", approval_id=approval(), options=opts())
    assert needle in exc.value.message
    assert "refused by its guard (runtime/rollback/290.sql:" in exc.value.message
    assert snap(head) == before
    assert audit(head, "runtime/290")[-1][:3] == ("rollback", "real", "refused")


# --------------------------------------------------------------------------- the runner's guarantees


def test_the_migration_lock_serialises_runtime_runs(head):
    with connect(head) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        with pytest.raises(LockBusy) as exc:
            datascripts.apply(head, "290", approval_id=approval(), options=opts(lock_wait_ms=100))
        assert "another migration run holds the iucore lock" in exc.value.message
    assert next(s for s in datascripts.status(head) if s.name == "290").applied is False


def test_lock_timeout_applies_inside_the_run(head):
    """A writer holding the gate row: with --lock-retries 0 the run fails after lock_timeout instead of queueing."""
    with psycopg.connect(head.libpq) as blocker:
        blocker.execute("SELECT 1 FROM public.dot_config WHERE key = %s FOR UPDATE", (COMPOSER,))
        with pytest.raises(RevisionFailed) as exc:
            datascripts.apply(head, "290", approval_id=approval(), options=opts(lock_timeout_ms=200, lock_retries=0))
        blocker.rollback()
    assert "another transaction holds a lock" in exc.value.message
    assert [r[:3] for r in audit(head, "runtime/290")] == [("apply", "real", "failed")]
    assert next(s for s in datascripts.status(head) if s.name == "290").applied is False


def test_list_shows_state_last_run_and_checksums(head, run_cli):
    data = json.loads(ok(run_cli(head, "--json", "runtime", "list")).stdout)
    assert [(s["name"], s["applied"], s["last_run"]) for s in data] == [("270", False, None), ("290", False, None)]
    assert data[1]["checksums"] == {"runtime/290.sql": sha("runtime/290.sql"),
                                    "runtime/rollback/290.sql": sha("runtime/rollback/290.sql")}
    datascripts.apply(head, "290", approval_id=approval(), options=opts())
    res = run_cli(head, "runtime", "list")
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(" runtime/290"))
    assert "applied" in line and "apply by dba-jane" in line and "as run" in line
    assert sha("runtime/290.sql")[:12] in line
    assert "runtime/290: collection iu_core.runtime290.file-001 present (3 members, by runtime_290" in res.stdout
    data = json.loads(ok(run_cli(head, "--json", "runtime", "list")).stdout)
    assert data[1]["applied"] is True and data[1]["files_as_run"] is True


# --------------------------------------------------------------------------- by hand, with psql


def psql(target, rel, approval_id=None, single=True):
    env = {"PATH": "/usr/bin:/bin"}
    if approval_id:
        env["PGOPTIONS"] = f"-c iucore.approval_id={approval_id}"
    argv = [str(bin_dir(PG_MAJOR) / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-f", str(ROOT / rel), target.libpq]
    if single:
        argv.insert(2, "-1")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_a_dba_runs_the_pair_by_hand_with_psql(head):
    before = snap(head)
    proc = psql(head, "runtime/290.sql")
    assert proc.returncode == 3 and "runtime/290 refused: no approval id" in proc.stderr
    proc = psql(head, "runtime/290.sql", approval(), single=False)
    assert proc.returncode == 3 and "not inside one transaction" in proc.stderr
    assert snap(head) == before
    proc = psql(head, "runtime/290.sql", approval())
    assert proc.returncode == 0, proc.stderr
    assert "runtime_290 | iu_core.runtime290.file-001 |           3 |          3 |               5 | t" in proc.stdout
    assert next(s for s in datascripts.status(head) if s.name == "290").applied is True
    proc = psql(head, "runtime/rollback/290.sql", approval())
    assert proc.returncode == 0, proc.stderr
    assert "soft-deleted iu_core/runtime290/file-001/intro-" in proc.stderr
    assert next(s for s in datascripts.status(head) if s.name == "290").applied is False


def test_runtime_files_are_data_only_sectioned_scripts():
    """CREATE-free by construction (seed 001 §4): every statement is a DO block or a SELECT."""
    from pglast import ast, parse_sql

    from iu_core.framework.sqlfiles import ROLLBACK_SECTIONS, parse_script

    assert [s.name for s in datascripts.scripts(ROOT)] == ["270", "290"]
    for ds in datascripts.scripts(ROOT):
        for path in (ds.forward, ds.rollback):
            script = parse_script(path, ROLLBACK_SECTIONS)
            kinds = {type(parse_sql(st.sql)[0].stmt) for st in script.statements}
            assert kinds <= {ast.DoStmt, ast.SelectStmt}, (path, kinds)


def test_lint_holds_the_runtime_scripts_to_the_rules(tmp_path):
    """iucore lint parses runtime/<N>.sql like a rollback file, wants its pair, scans it for secrets."""
    from iu_core.release.lint import lint_project

    project = tmp_path / "project"
    for part in ("migrations", "rollbacks", "selftests", "runtime"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", project / "alembic.ini")
    assert lint_project(project) == []
    host = ".".join(["10", "0", "0", "7"])
    (project / "runtime" / "300.sql").write_text(
        f"-- @guard\nDO $$ BEGIN PERFORM 1; END $$;\n-- @body\n-- copied from {host}\nSELECT 1;\n-- @assert\nSELECT 1;\n")
    (project / "runtime" / "310.sql").write_text("-- @body\nSELECT 1;\n")
    found = {(f.rule, f.file) for f in lint_project(project)}
    assert found == {("parse", "runtime/rollback/300.sql"), ("no-hardcode", "runtime/300.sql"),
                     ("parse", "runtime/310.sql"), ("parse", "runtime/rollback/310.sql")}
