"""The DOT inventory CI asserts, and the registry ↔ catalog SSOT, at every revision."""

from __future__ import annotations

import json

import pytest

from iu_core.commands import db as db_verbs
from iu_core.domain.registry import COMMANDS, catalog_row
from iu_core.framework import migrate
from iu_core.pg.target import Target
from iu_core.release.inventory import CLASSES, expected, live

from .conftest import ROOT, chain, connect, ok, upto

# What CI asserts: the per-class counts at every revision of the chain.
# A revision that adds or removes an object must change its row here, in the
# same commit as its `inventory` declaration.
#            table view function trigger config event_type route  total
COUNTS = {
    "substrate":     (14, 7, 25, 2, 14,  8,  2),
    "016":           (14, 9, 27, 2, 14,  8,  2),
    "260":           (14, 9, 27, 2, 14, 16, 10),
    "017":           (14, 9, 29, 2, 14, 16, 10),
    "280":           (14, 9, 29, 2, 14, 16, 10),
    "033":           (15, 9, 31, 2, 15, 17, 10),
    "034":           (15, 9, 31, 2, 15, 17, 10),
    "gate_protocol": (16, 9, 35, 2, 15, 17, 10),
    "least_privilege": (18, 9, 37, 2, 15, 17, 10),
    "worker_pick":   (18, 9, 37, 2, 15, 17, 10),
}


def test_every_revision_of_the_chain_has_a_pinned_row() -> None:
    assert list(COUNTS) == chain()


@pytest.mark.parametrize("revision", chain())
def test_live_inventory_matches_the_pinned_counts_and_the_declarations(new_db, revision: str) -> None:
    target = new_db(revision)
    rep = db_verbs.inventory(target)
    assert rep.revision == revision
    assert rep.drift == []
    counts = tuple(len(rep.present[c]) for c in CLASSES)
    assert counts == COUNTS[revision], dict(zip(CLASSES, counts, strict=True))
    # the declarations alone give the same numbers (no live database needed)
    assert tuple(len(expected(ROOT, revision)[c]) for c in CLASSES) == COUNTS[revision]


@pytest.mark.parametrize("revision", chain())
def test_registry_governed_commands_equal_the_catalog_rows(new_db, revision: str) -> None:
    """SSOT (seed 004): the Python registry and the database catalog, row for row."""
    applied = set(upto(revision))
    want = sorted(catalog_row(c) for c in COMMANDS if c.governed and c.revision in applied)
    with connect(new_db(revision)) as c:
        got = sorted(
            (r[0], r[1], r[2], r[3], tuple(r[4]))
            for r in c.execute(
                "SELECT command_name, category, mutating, reversible, target_functions"
                " FROM public.dot_iu_command_catalog"
            )
        )
    assert got == want


def test_registry_revisions_are_in_the_chain() -> None:
    """Every command names a revision of the chain (a renamed or dropped revision must
    not leave registry rows that no revision inserts)."""
    chain_ = set(chain())
    assert [(c.name, c.revision) for c in COMMANDS if c.revision not in chain_] == []


def test_check_names_each_drifting_object_and_exits_4(new_db, run_cli) -> None:
    target: Target = new_db("substrate")
    with connect(target) as c:
        c.execute("CREATE FUNCTION public.fn_iu_rogue(integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'")
        c.execute("DROP VIEW public.v_iu_route_dead_letter_open")
        c.execute("INSERT INTO public.dot_config (key, value) VALUES ('iu_core.surprise', 'true')")
    res = run_cli(target, "inventory", "--check")
    assert res.exit_code == 4, res.output
    assert "extra function public.fn_iu_rogue(integer)" in res.stdout
    assert "missing view public.v_iu_route_dead_letter_open" in res.stdout
    assert "extra config iu_core.surprise" in res.stdout
    assert "inventory drift at substrate: 3 object(s)" in res.stderr
    data = json.loads(ok(run_cli(target, "--json", "inventory")).stdout)  # a report: exit 0 without --check
    assert data["ok"] is False and len(data["drift"]) == 3
    assert {c["class"]: c["ok"] for c in data["classes"]}["trigger"] is True


def test_objects_in_other_schemas_are_not_ours(new_db, run_cli) -> None:
    target = new_db("substrate")
    with connect(target) as c:
        c.execute("CREATE SCHEMA elsewhere")
        c.execute("CREATE TABLE elsewhere.t (a int)")
        c.execute("CREATE FUNCTION elsewhere.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    assert run_cli(target, "inventory", "--check").exit_code == 0


def test_empty_database_has_an_empty_inventory(empty_db: Target, run_cli) -> None:
    res = run_cli(empty_db, "--json", "inventory", "--check")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["revision"] is None and data["present_total"] == 0


def test_live_counts_track_a_real_upgrade(new_db) -> None:
    target = new_db()
    migrate.upgrade(target, "substrate")
    with connect(target) as c:
        inv = live(c)
    assert len(inv["config"]) == 14 and "iu_core.composer_enabled" in inv["config"]
