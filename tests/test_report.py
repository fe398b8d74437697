"""`iucore db report`: one run as the seeds' appendix, checked against the run's REAL figures.

Each test runs something for real (an upgrade, a rehearsal, a downgrade, an
adopt of a hand-migrated database beside Directus, a runtime data script, a
failing revision), measures what it can independently (catalog size and
table counts with its own SQL before and after, the sha256 and md5 of a file
with hashlib, the fingerprint the rehearsal printed), then reads the report,
Markdown and JSON, and holds every section to those figures.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from iu_core.config import RunOptions
from iu_core.framework import layout, migrate
from iu_core.pg.server import bin_dir
from iu_core.pg.target import Target
from iu_core.release.preflight import MANDATORY
from iu_core.release.report import TIMES

from . import directus
from .conftest import PG_MAJOR, PROJECTS, ROOT, chain, connect, ok, upto

GATE_PROTOCOL_TAGS = ["BEGIN", "DO", "DO", "CREATE TABLE", "CREATE INDEX", "COMMENT", "CREATE FUNCTION",
                      "CREATE FUNCTION", "CREATE FUNCTION", "CREATE FUNCTION", "REVOKE", "REVOKE", "REVOKE",
                      "INSERT 0 4", "DO", "SELECT 1", "SELECT 1", "SELECT 1", "SELECT 1"]
NEW_ROWS = ["dot_iu_gate_close|health|mut=true|rev=true|{fn_iu_gate_close}",
            "dot_iu_gate_open|health|mut=true|rev=true|{fn_iu_gate_open}",
            "dot_iu_gate_verify_closed|read|mut=false|rev=true|{fn_iu_gate_verify_closed}",
            "dot_iu_gate_watchdog|health|mut=true|rev=true|{fn_iu_gate_watchdog}"]


def catalog_size(target: Target) -> int:
    with connect(target) as c:
        return c.execute("SELECT count(*) FROM public.dot_iu_command_catalog").fetchone()[0]


def table_counts(target: Target) -> dict[str, int]:
    """Every table of public and cutter_governance (only IU Core's here) with its exact count, own SQL."""
    with connect(target) as c:
        names = [r[0] for r in c.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('public', 'cutter_governance') AND c.relkind = 'r'")]
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in names}


def schema_bytes(target: Target) -> int:
    """The size the report defines, measured with a query of the test's own: on a database
    holding only the chain, IU Core's relations are all of public's and cutter_governance's."""
    with connect(target) as c:
        return int(c.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'cutter_governance')"
            " AND c.relkind IN ('r', 'p', 'm', 'S')").fetchone()[0])


def section(md: str, title: str) -> str:
    """The Markdown between `## <title>…` and the next `## `."""
    m = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", md, re.M | re.S)
    assert m, f"no section {title!r} in:\n{md}"
    return m.group(1)


def row(md: str, first_cell: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is `first_cell`."""
    for line in md.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"no row {first_cell!r} in:\n{md}")


def report(run_cli, target: Target, *args: str, project: Path = ROOT) -> tuple[str, dict[str, Any]]:
    md = run_cli(target, "db", "report", *args, project=project)
    assert md.exit_code == 0, md.output
    js = run_cli(target, "--json", "db", "report", *args, project=project)
    assert js.exit_code == 0, js.output
    return md.stdout, json.loads(js.stdout)


# ---------------------------------------------------------------- a real upgrade, end to end
def test_the_report_of_a_real_upgrade_holds_its_real_figures(readonly_role, new_db, run_cli, tmp_path) -> None:
    target = new_db("034")
    ro = readonly_role(target)
    backups = tmp_path / "backups"
    assert run_cli(target, "db", "backup", "--out", str(backups)).exit_code == 0
    pre = run_cli(target, "--actor", "release-eng", "db", "preflight", "--backup-dir", str(backups),
                  "--read-url", ro.libpq)
    assert pre.exit_code == 0, pre.output
    assert run_cli(target, "db", "upgrade", "gate_protocol", "--rehearse").exit_code == 0
    catalog_before, counts_before, size_before = catalog_size(target), table_counts(target), schema_bytes(target)
    up = run_cli(target, "--json", "--actor", "dba-jane", "db", "upgrade", "gate_protocol",
                 "--backup-dir", str(backups))
    assert up.exit_code == 0, up.output
    run_id = json.loads(up.stdout)["run_id"]
    catalog_after, counts_after, size_after = catalog_size(target), table_counts(target), schema_bytes(target)
    assert (catalog_before, catalog_after) == (26, 30)
    assert run_cli(target, "selftest").exit_code == 0

    md, js = report(run_cli, target)  # the default: the last run
    assert js["run_id"] == run_id and js["kind"] == "upgrade" and js["mode"] == "real"
    assert js["outcome"] == "applied" and js["actor"] == "dba-jane" and js["revisions"] == ["gate_protocol"]
    assert md.startswith("# iucore run report — upgrade gate_protocol (real, applied)")
    by_prefix = ok(run_cli(target, "--json", "db", "report", run_id[:8])).stdout
    assert by_prefix == ok(run_cli(target, "--json", "db", "report")).stdout

    # A1: who and where, and every file's checksums as the test computes them
    a1 = section(md, "A1")
    dbname = target.params["dbname"]
    assert f"`postgres | {dbname} |" in a1 and f"`{ro.params['user']} | {dbname} |" in a1
    for rel in ("migrations/sql/gate_protocol.sql", "rollbacks/gate_protocol.sql",
                "migrations/sql/functions/gate_protocol/fn_iu_gate_open.sql", "selftests/gate_protocol.sql"):
        data = (ROOT / rel).read_bytes()
        cells = row(a1, f"`{rel}`")
        assert cells[2:] == [f"{len(data):,}", f"`{hashlib.sha256(data).hexdigest()}`",
                             f"`{hashlib.md5(data).hexdigest()}`"], cells
    step = js["steps"][0]
    assert {a["path"]: a["md5"] for a in step["artifacts"]}["rollbacks/gate_protocol.sql"] == \
        hashlib.md5((ROOT / "rollbacks/gate_protocol.sql").read_bytes()).hexdigest()

    # A2: the checklist that preceded it
    a2 = section(md, "A2")
    assert "**14/14 mandatory gates PASS**" in a2 and "by release-eng" in a2
    assert [c["check"] for c in js["preflight"]["checks"]] == list(MANDATORY)
    assert js["read_identity"]["role"] == ro.params["user"] and js["read_identity"]["status"] == "PASS"

    # A3: every gate, shut before and after
    a3 = section(md, "A3")
    assert row(a3, "`iu_core.composer_enabled`")[1:] == ["governable", "false (shut)", "false (shut)"]
    assert row(a3, "`iu_enact.allow_no_review_decision`")[1:] == ["never_flip", "false (shut)", "false (shut)"]

    # A4: every statement's tag, in order, and the post-check rows
    assert step["tags"] == [*GATE_PROTOCOL_TAGS, "COMMIT"]
    a4 = section(md, "A4")
    x = TIMES
    assert (f"`BEGIN / DO {x}2 / CREATE TABLE / CREATE INDEX / COMMENT / CREATE FUNCTION {x}4 / REVOKE {x}3 / "
            f"INSERT 0 4 / DO / SELECT 1 {x}4 / COMMIT`") in a4
    assert "gate_protocol_catalog | t           |           30" in a4

    # A5: the object diff and the catalog rows, as the catalog says
    a5 = section(md, "A5")
    assert row(a5, "function")[1:] == ["31", "35", "4", "0", "0"] and row(a5, "table")[1:] == ["15", "16", "1", "0", "0"]
    assert f"Catalog `public.dot_iu_command_catalog`: {catalog_before} → {catalog_after};" in a5
    for r in NEW_ROWS:
        assert f"`{r}`" in a5
    assert row(a5, "`public.fn_iu_gate_verify_closed(text)`")[1:4] == ["added", "stable", "no"]
    assert row(a5, "`public.fn_iu_gate_open(text, uuid, text, text, integer)`")[1:4] == ["added", "volatile", "yes"]

    # A6: every table before → after, Δ, the ones not written, the schema size
    a6 = section(md, "A6")
    for t, n in counts_after.items():
        b = counts_before.get(t)
        cells = row(a6, f"`{t}`")
        assert cells[1:4] == [f"{b:,}" if b is not None else "—", f"{n:,}",
                              "—" if b is None else (f"{n - b:+,}" if n != b else "0")], (t, cells)
    assert row(a6, "`public.dot_iu_command_catalog`")[3:5] == ["+4", "4/0/0"]
    not_written = {t["table"] for t in step["tables"]} - {"public.dot_iu_command_catalog", "public.iu_gate_transition"}
    assert set(step["not_written"]) == not_written and "public.dot_iu_command_run" in not_written
    assert f"**Not written** ({len(not_written)} of {len(counts_after)} tables" in a6
    # The run measured inside its own transaction, the test just outside it: autovacuum may
    # have truncated a table or given it its free-space and visibility maps in between
    # (pg_total_relation_size counts them), so the two agree to a few pages, not the byte.
    sb, sa = step["size_bytes"]["before"], step["size_bytes"]["after"]
    assert abs(sb - size_before) <= 8 * 8192 and abs(sa - size_after) <= 8 * 8192, (sb, size_before, sa, size_after)
    assert step["size_bytes"]["delta"] == sa - sb > 0  # gate_protocol adds tables
    assert f"Schema {sb:,} → {sa:,} bytes (Δ {sa - sb:+,})" in a6

    # A7: the backup the run took, the self-test after it
    a7 = section(md, "A7")
    with connect(target) as c:
        backup = c.execute("SELECT backup FROM iucore.migration_log WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert backup["sha256"] in a7 and backup["path"] in a7 and js["backup"] == backup
    assert "**Self-test after the run**: PASSED" in a7 and js["selftest"]["status"] == "passed"
    # Directus-safe and password-free by construction: nothing of another schema, no secret
    assert "directus_" not in md


# ---------------------------------------------------------------- a rehearsal
def test_the_report_of_a_rehearsal_has_the_in_transaction_figures_and_the_proof(new_db, run_cli) -> None:
    target = new_db("034")
    res = run_cli(target, "--json", "db", "upgrade", "gate_protocol", "--rehearse")
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert catalog_size(target) == 26  # rolled back
    md, js = report(run_cli, target)
    assert js["mode"] == "rehearsal" and js["outcome"] == "rehearsed"
    step = js["steps"][0]
    assert step["tags"] == [*GATE_PROTOCOL_TAGS, "ROLLBACK"]
    assert step["catalog"]["before"] == 26 and step["catalog"]["after"] == 30  # real, before the ROLLBACK
    assert row(section(md, "A6"), "`public.dot_iu_command_catalog`")[1:4] == ["26", "30", "+4"]
    proof = js["rehearsal"]
    assert proof["unchanged"] is True
    assert proof["fingerprint_before"] == proof["fingerprint_after"] == printed["fingerprint_after"]
    assert "nothing persisted: PROVEN" in section(md, "A7")
    assert js["selftest"]["status"] == "not applicable"


def test_a_rehearsal_of_a_runtime_script_and_its_real_apply(new_db, run_cli) -> None:
    target = new_db(layout.script_directory(ROOT).get_current_head())
    approval = str(uuid.uuid4())
    before = table_counts(target)
    res = run_cli(target, "runtime", "apply", "290", "--approval-id", approval, "--rehearse")
    assert res.exit_code == 0, res.output
    assert table_counts(target) == before
    _, rehearsed = report(run_cli, target)
    assert rehearsed["kind"] == "runtime apply" and rehearsed["mode"] == "rehearsal"
    assert rehearsed["rehearsal"]["unchanged"] is True and rehearsed["steps"][0]["tags"][-1] == "ROLLBACK"
    res = run_cli(target, "runtime", "apply", "290", "--approval-id", approval)
    assert res.exit_code == 0, res.output
    after = table_counts(target)
    md, js = report(run_cli, target)
    assert js["kind"] == "runtime apply" and js["revisions"] == ["runtime/290"] and js["mode"] == "real"
    step = js["steps"][0]
    by_table = {t["table"]: t for t in step["tables"]}
    for t in ("public.information_unit", "public.iu_collection", "public.iu_collection_member", "public.event_outbox"):
        assert (by_table[t]["before"], by_table[t]["after"]) == (before[t], after[t]), t
        assert by_table[t]["delta"] == after[t] - before[t] > 0
    assert after["public.information_unit"] - before["public.information_unit"] == 3  # issue 11: 3 IUs
    # the rehearsal saw, inside its transaction, exactly what the real apply then did
    assert {t["table"]: t["delta"] for t in rehearsed["steps"][0]["tables"]} == \
        {t["table"]: t["delta"] for t in step["tables"]}
    unchanged = {t for t in before if before[t] == after[t]}
    # the gates are opened and closed inside the window: dot_config is written, its count unchanged
    assert set(step["not_written"]) == unchanged - {"public.dot_config"}
    assert "public.dot_config" in step["written"]
    a3 = section(md, "A3")
    assert row(a3, "`iu_core.composer_enabled`")[2:] == ["false (shut)", "false (shut)"]
    files = {a["path"] for a in step["artifacts"]}
    assert {"runtime/290.sql", "runtime/rollback/290.sql"} <= files
    assert step["tags"][0] == "BEGIN" and step["tags"][-1] == "COMMIT"


# ---------------------------------------------------------------- a downgrade
def test_the_report_of_a_downgrade(new_db, run_cli) -> None:
    target = new_db("gate_protocol")
    res = run_cli(target, "db", "downgrade", "034")
    assert res.exit_code == 0, res.output
    md, js = report(run_cli, target)
    assert js["kind"] == "downgrade" and js["revisions"] == ["gate_protocol"]
    step = js["steps"][0]
    assert step["catalog"]["before"] == 30 and step["catalog"]["after"] == catalog_size(target) == 26
    assert sorted(r["command_name"] for r in step["catalog"]["removed"]) == sorted(r.split("|")[0] for r in NEW_ROWS)
    assert [f["change"] for f in step["functions"]] == ["removed"] * 4
    assert step["objects"]["table"]["removed"] == ["public.iu_gate_transition"]
    tags = step["tags"]
    assert tags[0] == "BEGIN" and tags[-1] == "COMMIT" and "DELETE 4" in tags and tags.count("DROP FUNCTION") == 4
    assert "DROP TABLE" in tags
    a6 = section(md, "A6")
    assert row(a6, "`public.dot_iu_command_catalog`")[1:5] == ["30", "26", "-4", "0/0/4"]
    assert row(a6, "`public.iu_gate_transition`")[1:3] == ["0", "—"]
    assert js["selftest"] == {"status": "not run", "why": "no `iucore selftest` was recorded after this run"}


# ---------------------------------------------------------------- an adopt beside Directus
def test_the_report_of_an_adopt_of_a_hand_migrated_database(databases, run_cli) -> None:
    name = databases.create()
    try:
        target = databases.target(name)
        directus.build(target)
        hand = upto("034")
        directus.apply_by_hand(target, hand)
        counts = table_counts(target)
        res = run_cli(target, "--json", "db", "adopt", "034")
        assert res.exit_code == 0, res.output
        md, js = report(run_cli, target)
        assert js["kind"] == "adopt" and js["revisions"] == hand and js["outcome"] == "adopted"
        a = js["adopt"]
        assert a["vouched_for"] == hand and {c["status"] for c in a["checks"]} == {"PASS"}
        data = (ROOT / "migrations/sql/033.sql").read_bytes()
        assert row(section(md, "A1"), "`migrations/sql/033.sql`")[3:] == [
            f"`{hashlib.sha256(data).hexdigest()}`", f"`{hashlib.md5(data).hexdigest()}`"]
        state = a["state"]
        ours = {t: n for t, n in counts.items() if not t.startswith("public.directus_") and t != "public.articles"}
        assert {t: v[0] for t, v in state["counts"].items()} == ours  # Directus's tables never counted
        assert state["catalog_rows"] == 26
        assert "directus_" not in md
        assert row(section(md, "A3"), "`iu_core.composer_enabled`")[1:] == ["governable", "false (shut)"]
    finally:
        databases.drop(name)


# ---------------------------------------------------------------- a run from empty, to a file
def test_a_whole_chain_upgrade_reports_each_revision_and_the_run(new_db, run_cli, tmp_path) -> None:
    target = new_db()
    assert run_cli(target, "db", "upgrade", "head").exit_code == 0
    out = tmp_path / "report.md"
    res = run_cli(target, "db", "report", "--out", str(out))
    assert res.exit_code == 0 and str(out) in res.stdout
    md = out.read_text()
    js = json.loads(ok(run_cli(target, "--json", "db", "report")).stdout)
    assert js["revisions"] == chain() and [s["revision"] for s in js["steps"]] == chain()
    for s in js["steps"]:
        assert f"### {s['revision']} upgrade — applied" in md
        assert s["tags"][0] == "BEGIN" and s["tags"][-1] == "COMMIT"
    assert js["steps"][0]["before"]["catalog_rows"] is None  # nothing there before substrate
    tot = js["run_totals"]
    assert tot["catalog_rows"] == {"before": None, "after": catalog_size(target)}
    assert tot["size_bytes"]["after"] == js["steps"][-1]["after"]["size_bytes"]
    by_step = {s["revision"]: {t["table"]: t for t in s["tables"]} for s in js["steps"]}
    assert by_step["gate_protocol"]["public.dot_iu_command_catalog"]["delta"] == 4
    assert by_step["016"]["public.dot_iu_command_catalog"]["delta"] == 0
    # 016 re-wires the composer functions: replaced, and said so
    changed = {f["name"] for f in js["steps"][1]["functions"] if f["change"] == "changed"}
    assert changed == {"public.fn_iu_collection_add_piece(uuid, uuid, text, integer, text)",
                       "public.fn_iu_collection_remove_piece(uuid, uuid, text)",
                       "public.fn_iu_collection_reorder_piece(uuid, uuid, integer, text)",
                       "public.fn_iu_compose(text, text, text, uuid[], text, text[])"}
    with connect(target) as c:  # not changed since 016: what pg_proc says now is what 016 left
        vol, secdef = c.execute("SELECT provolatile, prosecdef FROM pg_proc WHERE oid ="
                                " 'public.fn_iu_compose(text, text, text, uuid[], text, text[])'::regprocedure").fetchone()
    volatility = {"v": "volatile", "s": "stable", "i": "immutable"}[vol]
    assert (f"| `public.fn_iu_compose(text, text, text, uuid[], text, text[])` | changed | {volatility} | "
            f"{'yes' if secdef else 'no'} |") in md
    out_json = tmp_path / "report.json"
    assert run_cli(target, "--json", "db", "report", "--out", str(out_json)).exit_code == 0
    assert json.loads(out_json.read_text()) == js


# ---------------------------------------------------------------- a failed run
def test_the_report_of_a_failed_revision_says_where_it_stopped(new_db, run_cli) -> None:
    project = PROJECTS / "broken_postcheck"
    target = new_db()
    res = run_cli(target, "db", "upgrade", "head", project=project)
    assert res.exit_code == 5, res.output
    md, js = report(run_cli, target, project=project)
    assert [s["outcome"] for s in js["steps"]] == ["applied", "failed"]
    assert js["outcome"] == "failed (after b1 committed)"
    failed = js["steps"][1]
    assert failed["tags"][-1] == "ROLLBACK" and failed["tags"][-2].startswith("ERROR (postcheck")
    assert failed["error"]["section"] == "postcheck"
    assert "**Stopped** in @postcheck" in section(md, "A4")


# ---------------------------------------------------------------- bad RUN_IDs
def test_a_run_id_that_does_not_exist_is_exit_2_with_a_clear_message(new_db, run_cli) -> None:
    empty = new_db()
    res = run_cli(empty, "db", "report")
    assert res.exit_code == 2 and "no run is recorded" in res.stderr and "Traceback" not in res.output
    target = new_db("substrate")
    missing = str(uuid.uuid4())
    res = run_cli(target, "db", "report", missing)
    assert res.exit_code == 2 and f"no run {missing!r}" in res.stderr and "db history --json" in res.stderr
    res = run_cli(target, "--json", "db", "report", "'; DROP TABLE x; --")
    assert res.exit_code == 2 and "is not a run id" in res.stderr
    assert json.loads(res.stdout)["error"] == "UnknownRun"
    with connect(target) as c:  # two runs sharing a prefix: ambiguous
        for rid in ("abcd0000-0000-4000-8000-000000000001", "abcd0000-0000-4000-8000-000000000002"):
            c.execute("INSERT INTO iucore.migration_log (run_id, revision, direction, mode, outcome, actor,"
                      " started_at, duration_ms) VALUES (%s, 'substrate', 'upgrade', 'rehearsal', 'rehearsed',"
                      " 'pytest', now(), 1)", (rid,))
    res = run_cli(target, "db", "report", "abcd")
    assert res.exit_code == 2 and "names several runs" in res.stderr
    assert run_cli(target, "db", "report", "abcd0000-0000-4000-8000-000000000002").exit_code == 0
    res = run_cli(target, "db", "report", "--out", str(PROJECTS))
    assert res.exit_code == 2 and "is a directory" in res.stderr


def test_a_preflight_run_renders_as_its_checklist(new_db, run_cli) -> None:
    target = new_db("substrate")
    pre = run_cli(target, "--json", "db", "preflight")
    assert pre.exit_code == 3
    rid = json.loads(pre.stdout)["recorded_run_id"]
    md, js = report(run_cli, target, rid)
    assert js["kind"] == "preflight" and js["outcome"] == "refused"
    assert "mandatory gates PASS**" in md and row(md, "1")[1:3] == ["read identity (read-only role)", "**FAIL**"]
    # a check is not a run of its own: the default report is still the last upgrade
    assert json.loads(ok(run_cli(target, "--json", "db", "report")).stdout)["kind"] == "upgrade"


def test_every_evidence_key_a_revision_records(new_db) -> None:
    """The keys other tools read (docs): evidence.transcript and evidence.observed."""
    target = new_db("034")
    migrate.upgrade(target, "gate_protocol", options=RunOptions(actor="pytest"))
    with connect(target) as c:
        ev = c.execute("SELECT evidence FROM iucore.migration_log WHERE revision = 'gate_protocol'").fetchone()[0]
    assert set(ev) == {"transcript", "preflight", "postcheck", "observed"}
    assert set(ev["transcript"][0]) == {"section", "file", "line", "tag"}
    obs = ev["observed"]
    assert set(obs) == {"version", "identity", "artifacts", "before", "after", "changes"}
    assert set(obs["before"]) == set(obs["after"]) == {"objects", "catalog_rows", "size_bytes", "counts", "gates",
                                                       "gates_source"}
    assert set(obs["changes"]) == {"objects", "functions", "catalog", "tables", "config_values_changed", "size_bytes"}
    assert set(obs["artifacts"][0]) >= {"path", "kind", "bytes", "sha256", "md5"}
    assert obs["before"]["counts"]["public.dot_iu_command_catalog"] == [26, "exact"]


def test_a_run_from_the_offline_script_says_what_was_not_recorded(empty_db, run_cli, tmp_path) -> None:
    """`db upgrade --sql` run by psql writes the audit rows without iucore watching: the report
    says so instead of inventing a transcript or figures."""
    script = run_cli(None, "db", "upgrade", "a2", "--sql", project=PROJECTS / "sample")
    assert script.exit_code == 0, script.output
    path = tmp_path / "review.sql"
    path.write_text(script.stdout)
    ran = subprocess.run([str(bin_dir(PG_MAJOR) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path),
                          empty_db.libpq], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    md, js = report(run_cli, empty_db, project=PROJECTS / "sample")
    assert js["revisions"] == ["a1", "a2"] and all(not s["observed"] and s["tags"] == [] for s in js["steps"])
    assert "`statements not recorded for this row`" in section(md, "A4")
    assert "Not observed (recorded without iucore's run-time observation" in section(md, "A5")
