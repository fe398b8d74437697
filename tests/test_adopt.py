"""`iucore db adopt` and audited stamps, on databases migrated by hand with psql only.

Production's chain was applied with `psql -v ON_ERROR_STOP=1` (seeds 002 to 004)
beside Directus's own objects: here too. Adopt must prove the chain at REV
object by object, refuse (exit 3) naming every difference and change
nothing, or record REV in one transaction with the evidence and checksums so
that `db upgrade`, `db verify` and `inventory --check` carry on from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iu_core.framework.fingerprint import current_heads
from iu_core.framework.sqlfiles import expand
from iu_core.pg.target import Target

from . import directus
from .conftest import ROOT, Databases, chain, connect, project_copy, snap, upto
from .directus import GATEWAY_ACK, GATEWAY_GUARD, audit_rows, foreign

_TEMPLATES: dict[str, str] = {}


@pytest.fixture
def by_hand(databases: Databases) -> Iterator[Callable[[str], Target]]:
    """by_hand("034") → a fresh Directus-like database with substrate … 034 applied by psql only."""
    made: list[str] = []

    def make(rev: str) -> Target:
        if rev not in _TEMPLATES:
            name = databases.create()
            target = databases.target(name)
            directus.build(target)
            directus.apply_by_hand(target, upto(rev))
            _TEMPLATES[rev] = name
        name = databases.create(_TEMPLATES[rev])
        made.append(name)
        return databases.target(name)

    yield make
    for name in made:
        databases.drop(name)


def state(target: Target) -> tuple:
    """Everything a refused adopt must leave as it was: IU Core's catalog and rows,
    Directus's objects, and the (empty) version: iucore's bookkeeping tables may
    exist (the refusal is audited in them), no version row may."""
    with connect(target) as c:
        heads = current_heads(c)
    return snap(target), foreign(target), heads


def sha(rel: str) -> str:
    """What iucore records for a file: the sha256 of the text psql runs (`\\ir` includes inlined)."""
    return expand(ROOT / rel).sha256


# ---------------------------------------------------------------- adopt
def test_adopt_takes_over_a_hand_migrated_database_then_upgrade_verify_inventory_pass(by_hand, run_cli) -> None:
    target = by_hand("034")
    neighbour = foreign(target)
    res = run_cli(target, "--json", "--actor", "dba-adopt", "db", "adopt", "034")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outcome"] == "adopted" and out["vouched_for"] == upto("034")
    assert {c["status"] for c in out["checks"]} == {"PASS"} and len(out["checks"]) == 5
    with connect(target) as c:
        assert current_heads(c) == ["034"]
    rows = audit_rows(target)
    assert [(r["revision"], r["direction"], r["mode"], r["outcome"], r["actor"]) for r in rows] == [
        (r, "upgrade", "real", "adopted", "dba-adopt") for r in upto("034")]
    for r in rows:  # every file of every revision vouched for, as it is on disk
        assert r["checksums"][f"migrations/sql/{r['revision']}.sql"] == sha(f"migrations/sql/{r['revision']}.sql")
        assert r["checksums"][f"rollbacks/{r['revision']}.sql"] == sha(f"rollbacks/{r['revision']}.sql")
    evidence = rows[-1]["evidence"]
    assert "public.fn_iu_auto_instantiate_rollback_by_actor(text, boolean)" in evidence["verified"]["function"]
    assert [c["check"] for c in evidence["checks"]][-1].startswith("gate keys present")
    assert set(evidence["checksums"]) == set(upto("034"))

    assert run_cli(target, "db", "verify").exit_code == 0
    up = run_cli(target, "db", "upgrade", "head")
    assert up.exit_code == 0, up.output
    assert run_cli(target, "inventory", "--check").exit_code == 0
    assert run_cli(target, "db", "verify").exit_code == 0
    assert foreign(target) == neighbour


@pytest.mark.parametrize(("case", "setup", "needles"), [
    ("one function missing",
     ["DROP FUNCTION public.fn_iu_healthcheck()"],
     ["missing function public.fn_iu_healthcheck()"]),
    ("a wrong signature",
     ["DROP FUNCTION public.fn_iu_healthcheck()",
      "CREATE FUNCTION public.fn_iu_healthcheck(integer) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$"],
     ["missing function public.fn_iu_healthcheck() (present with another signature: "
      "public.fn_iu_healthcheck(integer))"]),
    ("an unacknowledged extra",
     [GATEWAY_GUARD],
     ["extra function public.fn_iu_gateway_write_guard() (IU-Core-named, not in the chain, not acknowledged"]),
    ("an open gate",
     ["UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.composer_enabled'"],
     ["open: iu_core.composer_enabled"]),
    ("a catalog row that differs from the registry",
     ["UPDATE public.dot_iu_command_catalog SET mutating = false WHERE command_name = 'dot_iu_reorder_piece'"],
     ["catalog row dot_iu_reorder_piece differs"]),
])
def test_adopt_refuses_naming_each_difference_and_changes_nothing(
        by_hand, run_cli, case: str, setup: list[str], needles: list[str]) -> None:
    target = by_hand("034")
    with connect(target) as c:
        for stmt in setup:
            c.execute(stmt)
    before = state(target)
    res = run_cli(target, "db", "adopt", "034")
    assert res.exit_code == 3, res.output
    for needle in needles:
        assert needle in res.stderr, case
    assert "Nothing was changed" in res.stderr
    assert state(target) == before
    last = audit_rows(target)[-1]
    assert (last["revision"], last["outcome"]) == ("034", "refused")
    assert any(needles[0] in d for d in last["evidence"]["differences"])


def test_adopt_refuses_a_later_revisions_objects_and_catalog_rows(by_hand, run_cli) -> None:
    later = chain()[chain().index("034") + 1]
    target = by_hand(later)  # the database went further than the revision claimed
    before = state(target)
    res = run_cli(target, "--json", "db", "adopt", "034")
    assert res.exit_code == 3
    differences = json.loads(res.stdout)["differences"]
    assert f"table public.iu_gate_transition (revision {later}) is present" in differences
    assert f"function public.fn_iu_gate_open(text, uuid, text, text, integer) (revision {later}) is present" \
        in differences
    assert f"catalog row dot_iu_gate_open (revision {later}) is present" in differences
    assert state(target) == before


@pytest.mark.parametrize(("rev", "weaken", "needle"), [
    # worker_pick declares no object: every name is the substrate's, only the worker's body differs
    ("worker_pick", None, "worker_pick post-check: public.fn_iu_route_worker_run is not worker_pick's text"),
    # least_privilege's tables and new functions are all there, a function it hardened in place is not
    ("least_privilege", "ALTER FUNCTION public.fn_dot_iu_execute(text, text, jsonb, text) SECURITY INVOKER",
     "least_privilege post-check: not SECURITY DEFINER with search_path = pg_catalog, pg_temp: "
     "public.fn_dot_iu_execute(text,text,jsonb,text)"),
])
def test_adopting_a_revision_that_replaces_in_place_runs_its_post_check(
        by_hand, run_cli, rev: str, weaken: str | None, needle: str) -> None:
    """What a revision replaces in place keeps its name and signature, so no declared object
    proves it: adopt runs the revision's post-check. Claimed over a database that lacks what
    it replaced, adopt is refused, naming the post-check's file and line, nothing changed;
    where the revision's files were applied, it passes and records REV."""
    short = by_hand("least_privilege")
    if weaken:
        with connect(short) as c:
            c.execute(weaken)
    before = state(short)
    res = run_cli(short, "--json", "db", "adopt", rev)
    assert res.exit_code == 3, res.output
    differences = json.loads(res.stdout)["differences"]
    assert len(differences) == 1 and differences[0].startswith(f"migrations/sql/{rev}.sql:"), differences
    assert needle in differences[0], differences
    assert state(short) == before

    full = by_hand(rev)
    res = run_cli(full, "--json", "db", "adopt", rev)
    assert res.exit_code == 0, res.output
    checks = {c["check"]: c["status"] for c in json.loads(res.stdout)["checks"]}
    assert checks[f"{rev}'s post-check holds (what it replaces in place, no declared object proves)"] == "PASS"
    with connect(full) as c:
        assert current_heads(c) == [rev]


def test_an_acknowledged_extra_lets_adopt_through_and_is_in_its_audit(by_hand, run_cli, tmp_path: Path) -> None:
    target = by_hand("034")
    with connect(target) as c:
        c.execute(GATEWAY_GUARD)
    project = project_copy(tmp_path, GATEWAY_ACK)
    res = run_cli(target, "--json", "db", "adopt", "034", project=project)
    assert res.exit_code == 0, res.output
    ack = {"class": "function", "name": "public.fn_iu_gateway_write_guard()",
           "reason": "pre-existing gateway write guard from an earlier macro (seed 002 A4)", "by": "dba on call"}
    assert json.loads(res.stdout)["acknowledged"] == [ack]
    assert audit_rows(target)[-1]["evidence"]["acknowledged"] == [ack]


def test_adopt_refuses_a_database_iucore_already_manages(new_db, run_cli) -> None:
    target = new_db("034")
    before = state(target)
    res = run_cli(target, "db", "adopt", "034")
    assert res.exit_code == 3
    assert "already managed by iucore: iucore.alembic_version is at 034" in res.stderr
    assert state(target) == before
    assert audit_rows(target)[-1]["outcome"] == "refused"


def test_adopt_rehearsal_runs_everything_then_records_nothing(by_hand, run_cli) -> None:
    target = by_hand("034")
    before = state(target)
    res = run_cli(target, "db", "adopt", "034", "--rehearse")
    assert res.exit_code == 0, res.output
    assert "PASS command catalog equals the registry at 034" in res.stdout
    assert "ROLLBACK" in res.stdout and "adopt 034 rehearsed (rolled back)" in res.stdout
    assert state(target) == before
    assert [(r["revision"], r["mode"], r["outcome"]) for r in audit_rows(target)] == [
        ("034", "rehearsal", "rehearsed")]


@pytest.mark.parametrize("revision", ["nope", "base", "-1"])
def test_adopt_of_something_that_is_not_a_revision_is_bad_input(empty_db, run_cli, revision: str) -> None:
    res = run_cli(empty_db, "db", "adopt", revision)
    assert res.exit_code == 2, res.output
    with connect(empty_db) as c:  # nothing ran: not even iucore's bookkeeping schema
        assert c.execute("SELECT to_regnamespace('iucore')").fetchone() == (None,)


# ---------------------------------------------------------------- stamp
def _stamp_and_version_xmin(target: Target) -> tuple[str, str]:
    with connect(target) as c:
        v = c.execute("SELECT xmin::text FROM iucore.alembic_version").fetchone()
        a = c.execute("SELECT xmin::text FROM iucore.migration_log WHERE outcome = 'stamped'"
                      " ORDER BY log_id DESC LIMIT 1").fetchone()
    assert v is not None and a is not None
    return v[0], a[0]


def test_db_stamp_is_audited_warns_and_vouches_for_nothing(by_hand, run_cli) -> None:
    target = by_hand("034")
    res = run_cli(target, "--actor", "dba-stamp", "db", "stamp", "034")
    assert res.exit_code == 0, res.output
    assert "WARNING" in res.stdout and "nothing was verified" in res.stdout and "db adopt" in res.stdout
    with connect(target) as c:
        assert current_heads(c) == ["034"]
    (row,) = audit_rows(target)
    assert (row["revision"], row["direction"], row["outcome"], row["actor"]) == ("034", "upgrade", "stamped", "dba-stamp")
    assert row["evidence"]["command"] == "iucore db stamp" and row["evidence"]["verified"] is False
    assert row["evidence"]["from"] == [] and row["evidence"]["stamped"] == ["034"]
    assert row["checksums"] == {}
    version_tx, audit_tx = _stamp_and_version_xmin(target)
    assert version_tx == audit_tx  # one transaction: Alembic's version write and the audit row
    verify = run_cli(target, "db", "verify")  # a stamp vouched for nothing
    assert verify.exit_code == 4 and "no checksum recorded at apply" in verify.stdout
    up = run_cli(target, "db", "upgrade", "head")  # and nothing builds on it unchecked
    assert up.exit_code == 3 and "checksum gate" in up.stderr


def test_db_stamp_of_an_unknown_revision_is_bad_input_and_writes_nothing(by_hand, run_cli) -> None:
    target = by_hand("034")
    res = run_cli(target, "db", "stamp", "nope")
    assert res.exit_code == 2
    assert "unknown revision 'nope'" in res.stderr
    with connect(target) as c:
        assert c.execute("SELECT to_regclass('iucore.alembic_version')").fetchone() == (None,)


def test_plain_alembic_stamp_writes_the_same_audit_row(by_hand) -> None:
    target = by_hand("034")
    env = {**os.environ, "IUCORE_DATABASE_URL": target.libpq, "IUCORE_ACTOR": "plain-alembic"}
    alembic = str(Path(sys.executable).with_name("alembic"))
    done = subprocess.run([alembic, "stamp", "034"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "nothing was verified" in done.stdout
    (row,) = audit_rows(target)
    assert (row["revision"], row["direction"], row["outcome"], row["actor"]) == ("034", "upgrade", "stamped", "plain-alembic")
    assert row["evidence"]["command"] == "alembic stamp" and row["evidence"]["verified"] is False
    version_tx, audit_tx = _stamp_and_version_xmin(target)
    assert version_tx == audit_tx
    back = subprocess.run([alembic, "stamp", "033"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert back.returncode == 0, back.stderr
    last = audit_rows(target)[-1]
    assert (last["revision"], last["direction"], last["outcome"]) == ("033", "downgrade", "stamped")
    assert last["evidence"]["from"] == ["034"]


def test_adopt_by_a_role_that_may_not_create_its_bookkeeping_fails_cleanly(by_hand, run_cli, databases) -> None:
    target = by_hand("034")
    role = f"no_create_{os.getpid()}"
    databases.admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        as_role = Target.of(**{**target.params, "user": role})
        before = state(target)
        res = run_cli(as_role, "db", "adopt", "034")
        assert res.exit_code == 2, res.output  # a privilege the role lacks: bad input, nothing ran
        assert "has no CREATE on the database" in res.stderr
        assert "Traceback" not in res.output
        assert state(target) == before
    finally:
        databases.admin.execute(f"DROP ROLE {role}")
