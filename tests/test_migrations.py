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
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from iu_core import migrate
from iu_core.config import RunOptions, Target
from iu_core.errors import RevisionRefused
from iu_core.fingerprint import diff, fingerprint, snapshot
from iu_core.session import MigrationSession

from .conftest import ROOT, connect


@pytest.fixture
def alembic_engine(empty_db: Target) -> Iterator[Engine]:
    engine = create_engine(empty_db.url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def alembic_config(empty_db: Target) -> object:
    session = MigrationSession(project=ROOT, target=empty_db, options=RunOptions(actor="pytest-alembic"))
    return migrate.alembic_config(ROOT, session)


def chain() -> list[str]:
    script = migrate.script_directory(ROOT)
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def snap(target: Target) -> dict[str, dict[str, str]]:
    with connect(target) as c:
        return snapshot(c)


@pytest.mark.parametrize("revision", chain())
def test_upgrade_then_downgrade_restores_the_exact_prior_catalog(new_db, revision: str) -> None:
    """Functions, views, triggers, indexes, grants, config rows: all restored."""
    script = migrate.script_directory(ROOT)
    parent = script.get_revision(revision).down_revision
    target = new_db(parent) if parent else new_db()
    before = snap(target)
    migrate.upgrade(target, revision)
    after_up = snap(target)
    assert diff(before, after_up), f"{revision} changed nothing in the catalog"
    migrate.downgrade(target, parent or "base")
    after_down = snap(target)
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
    before = snap(empty_db)
    result = migrate.upgrade(empty_db, "head", options=RunOptions(rehearse=True))
    assert [r["revision"] for r in result.revisions] == chain()
    assert result.fingerprint_before == result.fingerprint_after == fingerprint(before)
    assert snap(empty_db) == before


def test_substrate_rollback_refuses_while_data_rows_exist(new_db) -> None:
    target = new_db("substrate")
    with connect(target) as c:
        c.execute("UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.composer_enabled'")
        r = c.execute(
            "SELECT public.fn_iu_create('test/piece-1', 'piece', 'A piece', 'pytest')"
        ).fetchone()
        assert r is not None and r[0]["status"] == "created"
        c.execute("UPDATE public.dot_config SET value = 'false' WHERE key = 'iu_core.composer_enabled'")
    before = snap(target)
    with pytest.raises(RevisionRefused) as exc:
        migrate.downgrade(target, "base")
    assert "substrate rollback refused" in exc.value.message
    assert "information_unit" in exc.value.message
    assert snap(target) == before


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
