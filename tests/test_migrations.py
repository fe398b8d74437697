"""The real revision chain, on a real server: pytest-alembic's built-in tests,
catalog snapshots (what autogenerate cannot see), rehearsal, guards."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pytest_alembic.tests import (  # noqa: F401  (collected as tests of this module)
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy.engine import Engine

from iu_core.config import RunOptions
from iu_core.errors import ChecksumGate, RevisionFailed, RevisionRefused
from iu_core.framework import layout, migrate
from iu_core.framework.alembic_env import engine
from iu_core.framework.fingerprint import diff, fingerprint
from iu_core.framework.session import SESSION_KEY, MigrationSession
from iu_core.pg.target import Target

from .conftest import ROOT, chain, connect, parent_of, snap


@pytest.fixture
def alembic_engine(empty_db: Target) -> Iterator[Engine]:
    eng = engine(empty_db, app="pytest-alembic")
    yield eng
    eng.dispose()


@pytest.fixture
def alembic_config(empty_db: Target) -> object:
    session = MigrationSession(project=ROOT, target=empty_db, options=RunOptions(actor="pytest-alembic"))
    cfg = layout.alembic_config(ROOT)
    cfg.attributes[SESSION_KEY] = session
    return cfg


@pytest.mark.parametrize("revision", chain())
def test_upgrade_then_downgrade_restores_the_exact_prior_catalog(new_db, revision: str) -> None:
    """Functions, views, triggers, indexes, grants, config rows: all restored."""
    parent = parent_of(revision)
    target = new_db(parent) if parent else new_db()
    before = snap(target, counts=False)
    migrate.upgrade(target, revision)
    after_up = snap(target, counts=False)
    assert diff(before, after_up), f"{revision} changed nothing in the catalog"
    migrate.downgrade(target, parent or "base")
    after_down = snap(target, counts=False)
    assert diff(before, after_down) == []
    assert fingerprint(after_down) == fingerprint(before)


def test_substrate_downgrade_returns_the_database_to_empty(new_db) -> None:
    target = new_db("substrate")
    migrate.downgrade(target, "base")
    with connect(target) as c:
        objs = c.execute(
            """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('public', 'cutter_governance')"""
        ).fetchone()
        procs = c.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        ).fetchone()
        gov = c.execute("SELECT to_regnamespace('cutter_governance')").fetchone()
    assert objs == (0,) and procs == (0,) and gov == (None,)


def test_rehearsal_of_the_whole_chain_leaves_the_fingerprint_and_version(empty_db: Target) -> None:
    before = snap(empty_db, counts=False)
    result = migrate.upgrade(empty_db, "head", options=RunOptions(rehearse=True))
    assert [r["revision"] for r in result.revisions] == chain()
    assert result.fingerprint_before == result.fingerprint_after == fingerprint(before)
    assert snap(empty_db, counts=False) == before


def test_substrate_rollback_refuses_while_data_rows_exist(new_db) -> None:
    target = new_db("substrate")
    with connect(target) as c:
        c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.composer_enabled'")
        r = c.execute(
            "SELECT public.fn_iu_create('test/piece-1', 'piece', 'A piece', 'pytest')"
        ).fetchone()
        assert r is not None and r[0]["status"] == "created"
        c.execute("UPDATE public.dot_config SET value = 'false' WHERE key = 'iu_core.composer_enabled'")
    before = snap(target, counts=False)
    with pytest.raises(RevisionRefused) as exc:
        migrate.downgrade(target, "base")
    assert "substrate rollback refused" in exc.value.message
    assert "information_unit" in exc.value.message
    assert snap(target, counts=False) == before


def test_substrate_preflight_refuses_to_apply_over_itself(new_db) -> None:
    target = new_db("substrate")
    with connect(target) as c:
        c.execute("DELETE FROM iucore.alembic_version")  # pretend the bookkeeping was lost
    with pytest.raises(RevisionRefused) as exc:
        migrate.upgrade(target, "substrate")
    assert "substrate preflight" in exc.value.message


def test_substrate_security_definer_functions_pin_search_path(conn_at) -> None:
    conn: psycopg.Connection = conn_at("substrate")
    bad = conn.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname IN ('public', 'cutter_governance') AND p.prosecdef
              AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) s
                               WHERE s LIKE 'search_path=%' AND s LIKE '%pg_temp')"""
    ).fetchall()
    assert bad == []
    n = conn.execute(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'public' AND p.prosecdef"
    ).fetchone()
    assert n is not None and n[0] >= 3  # the logger, split and merge at least


# ------------------------------------------------ every revision, generically
def at(new_db, revision: str | None) -> Target:
    return new_db(revision) if revision else new_db()


def stamp(target: Target, revision: str) -> None:
    """Make alembic_version claim `revision` without running it (bookkeeping lost or forged)."""
    with connect(target) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS iucore")
        c.execute("CREATE TABLE IF NOT EXISTS iucore.alembic_version (version_num varchar(32) PRIMARY KEY)")
        c.execute("DELETE FROM iucore.alembic_version")
        c.execute("INSERT INTO iucore.alembic_version VALUES (%s)", (revision,))


@pytest.mark.parametrize("revision", [r for r in chain() if parent_of(r)])
def test_preflight_refuses_when_the_parent_is_missing(new_db, revision: str) -> None:
    parent = parent_of(revision)
    assert parent is not None
    target = at(new_db, parent_of(parent))  # the grandparent's state…
    stamp(target, parent)  # …claiming to be at the parent
    before = snap(target, counts=False)
    # The checksum gate refuses first (the parent was never applied, so
    # nothing was recorded): past it, the revision's own preflight must refuse.
    with pytest.raises(ChecksumGate) as gate:
        migrate.upgrade(target, revision)
    assert "no checksum recorded at apply" in gate.value.message
    with pytest.raises(RevisionRefused) as exc:
        migrate.upgrade(target, revision, allow_checksum_drift="test: parent stamped, not applied")
    assert exc.value.data["section"] == "preflight"
    assert f"{revision} preflight" in exc.value.message
    assert snap(target, counts=False) == before


@pytest.mark.parametrize("revision", chain())
def test_preflight_refuses_to_apply_over_itself(new_db, revision: str) -> None:
    target = new_db(revision)
    parent = parent_of(revision)
    if parent:
        stamp(target, parent)
    else:
        with connect(target) as c:
            c.execute("DELETE FROM iucore.alembic_version")
    before = snap(target, counts=False)
    if revision == "034":
        # Seed 004: 034 is idempotent. Over itself (rows present with the same
        # values) it is a no-op that only records itself; see tests/test_ssot.py.
        migrate.upgrade(target, revision)
        after = snap(target, counts=False)
        assert after.pop("alembic_version") != before.pop("alembic_version") and after == before
        return
    with pytest.raises(RevisionRefused) as exc:
        migrate.upgrade(target, revision)
    assert f"{revision} preflight" in exc.value.message
    assert snap(target, counts=False) == before


def _sabotage_sql(revision: str) -> str:
    """One statement that undoes something the revision's body did."""
    from iu_core.domain.registry import COMMANDS
    from iu_core.release.inventory import declared_delta

    module = layout.script_directory(ROOT).get_revision(revision).module
    adds, _ = declared_delta(module)
    if adds["function"]:
        return f"DROP FUNCTION {sorted(adds['function'])[-1]} CASCADE"
    if adds["view"]:
        return f"DROP VIEW {sorted(adds['view'])[-1]} CASCADE"
    if adds["table"]:
        return f"DROP TABLE {sorted(adds['table'])[-1]} CASCADE"
    if adds["route"]:
        return f"DELETE FROM public.iu_outbound_route WHERE route_code = '{sorted(adds['route'])[-1]}'"
    if adds["event_type"]:
        dom, typ = sorted(adds["event_type"])[-1].split(".", 1)
        return f"DELETE FROM public.event_type_registry WHERE event_domain = '{dom}' AND event_type = '{typ}'"
    if adds["config"]:
        return f"DELETE FROM public.dot_config WHERE key = '{sorted(adds['config'])[-1]}'"
    if revision == "worker_pick":  # replaces a function in place: undo what it keeps
        return "ALTER FUNCTION public.fn_iu_route_worker_run(text, integer) RESET search_path"
    rows = [c.name for c in COMMANDS if c.revision == revision]
    assert rows, f"{revision} declares nothing to sabotage"
    return f"DELETE FROM public.dot_iu_command_catalog WHERE command_name = '{rows[-1]}'"


@pytest.mark.parametrize("revision", chain())
def test_postcheck_catches_a_broken_body_and_nothing_persists(new_db, revision: str) -> None:
    """A deliberately broken database: just before the post-check, something the
    body made disappears. The post-check must notice, and roll everything back."""
    parent = parent_of(revision)
    target = at(new_db, parent)
    before = snap(target, counts=False)
    sabotage = _sabotage_sql(revision)
    done: list[str] = []

    def hook(conn, stmt, i) -> None:
        if stmt.section == "postcheck" and not done:
            conn.execute(sabotage)
            done.append(sabotage)

    with pytest.raises(RevisionFailed) as exc:
        migrate.upgrade(target, revision, before_statement=hook)
    assert done, "the revision has no post-check statement"
    assert exc.value.data["section"] == "postcheck", exc.value.message
    assert snap(target, counts=False) == before


@pytest.mark.parametrize("revision", chain())
@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_rehearsal_of_each_revision_leaves_nothing(new_db, revision: str, direction: str) -> None:
    parent = parent_of(revision)
    target = at(new_db, parent) if direction == "upgrade" else new_db(revision)
    before = snap(target, counts=False)
    opts = RunOptions(rehearse=True)
    if direction == "upgrade":
        result = migrate.upgrade(target, revision, options=opts)
    else:
        result = migrate.downgrade(target, parent or "base", options=opts)
    assert [r["revision"] for r in result.revisions] == [revision]
    assert result.fingerprint_before == result.fingerprint_after
    assert snap(target, counts=False) == before


def test_the_light_revision_graph_equals_alembics() -> None:
    """`db current` reads revisions without importing them; it must see what Alembic sees."""
    script = layout.script_directory(ROOT)
    assert layout.revision_graph(ROOT) == {r.revision: tuple(r._all_down_revisions) for r in script.walk_revisions()}
    from .conftest import PROJECTS

    for project in (PROJECTS / "sample", PROJECTS / "broken_postcheck"):
        s = layout.script_directory(project)
        assert layout.revision_graph(project) == {r.revision: tuple(r._all_down_revisions) for r in s.walk_revisions()}
