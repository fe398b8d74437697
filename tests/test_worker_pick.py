"""Revision worker_pick: the route worker's pick stops at its limit.

Its self-test measures where a run stops by the outbox rows the transaction
read (pg_stat_xact_user_tables), so it must fail on the worker it replaces,
also in a session that ran the worker before (a worker loop's, with whatever
plan PL/pgSQL kept); its rollback drops and re-creates the function, so it
refuses where that would lose something.
"""

from __future__ import annotations

import re
import uuid

import pytest

from iu_core.errors import RevisionRefused
from iu_core.framework import migrate, selftest

from .conftest import ROOT, connect, refused

SELFTEST = ROOT / "selftests" / "worker_pick.sql"
WORKER = "public.fn_iu_route_worker_run(text,integer)"


def _selftest_error(target, *, worker_ran_before: bool = False) -> str | None:
    """Replay the self-test; `worker_ran_before`: in a session that already ran the
    worker once (a worker loop's), so PL/pgSQL may have kept a plan for its pick."""
    with connect(target) as conn:
        conn.autocommit = True
        if worker_ran_before:
            conn.execute("BEGIN")
            conn.execute("SELECT public.fn_iu_route_worker_run('iu_outbound_default', 1)")
            conn.execute("ROLLBACK")
        _lines, error = selftest.replay(conn, selftest.load(SELFTEST))
        if conn.info.transaction_status != 0:
            conn.execute("ROLLBACK")
    return None if error is None else str(error.get("message"))


def _body_md5(target) -> str:
    with connect(target) as conn:
        row = conn.execute("SELECT md5(prosrc) FROM pg_proc WHERE oid = %s::regprocedure", (WORKER,)).fetchone()
    assert row
    return str(row[0])


def test_the_selftest_passes_at_worker_pick(new_db) -> None:
    target = new_db("worker_pick")
    assert _selftest_error(target) is None
    assert _selftest_error(target, worker_ran_before=True) is None


def test_the_selftest_fails_on_the_substrates_worker_for_reading_past_its_limit(new_db) -> None:
    # least_privilege: the substrate's pick, ordered by (created_at, event_id)
    target = new_db("least_privilege")
    for warm in (False, True):
        error = _selftest_error(target, worker_ran_before=warm)
        assert error and "T2:" in error and "read on past its limit" in error, (warm, error)


def test_the_upgrade_refuses_a_worker_changed_outside_the_chain(new_db) -> None:
    target = new_db("least_privilege")
    with connect(target) as conn:
        src = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = %s::regprocedure", (WORKER,)).fetchone()
        assert src
        # A DBA's hand edit: same behaviour, other text.
        conn.execute("SELECT set_config('iucore.body', %s, false)", (src[0] + "\n-- edited by hand\n",))
        conn.execute("""DO $$ BEGIN EXECUTE format(
            'CREATE OR REPLACE FUNCTION public.fn_iu_route_worker_run(route_code text, p_limit integer) '
            'RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
            current_setting('iucore.body')); END $$""")
        conn.commit()
    edited = _body_md5(target)
    with pytest.raises(RevisionRefused, match="not the substrate's text") as exc:
        migrate.upgrade(target, "worker_pick")
    assert exc.value.data.get("revision") == "worker_pick", exc.value.data
    assert _body_md5(target) == edited


FN = "public.fn_iu_route_worker_run(text, integer)"


def test_the_upgrade_refuses_attributes_its_create_or_replace_would_reset(new_db) -> None:
    """CREATE OR REPLACE resets STRICT, COST …: a DBA's STRICT makes a NULL limit answer NULL
    instead of invalid_input, and replacing the function would silently undo it."""
    target = new_db("least_privilege")
    with connect(target) as conn:
        conn.execute(f"ALTER FUNCTION {FN} STRICT COST 5000")
        conn.commit()
    message = refused(migrate.upgrade, target, "worker_pick")
    assert "was changed outside the chain (strict t," in message and "cost 5000" in message, message


@pytest.mark.parametrize(("case", "setup", "needle"), [
    ("a grant to another role", [f"GRANT EXECUTE ON FUNCTION {FN} TO {{role}}"], "{role} hold\\(s\\) a privilege"),
    ("default privileges for the functions it creates",
     ["ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {role}"],
     "default privileges of .* give {role} EXECUTE"),
    ("another owner", [f"ALTER FUNCTION {FN} OWNER TO {{role}}"], "belongs to {role}"),
    ("a comment", [f"COMMENT ON FUNCTION {FN} IS 'called by the nightly job'"], "was changed since worker_pick \\(a comment\\)"),
    ("a setting", [f"ALTER FUNCTION {FN} SET statement_timeout = '5s'"], "settings .*statement_timeout=5s"),
    ("STRICT and a cost", [f"ALTER FUNCTION {FN} STRICT COST 5000"], "STRICT, COST 5000"),
    ("a view that calls it", ["CREATE VIEW public.wp_caller AS SELECT public.fn_iu_route_worker_run('x', 1) AS r"],
     "view public.wp_caller depend"),
    ("a SQL function whose body calls it", [
        "CREATE FUNCTION public.wp_caller() RETURNS jsonb LANGUAGE sql "
        "BEGIN ATOMIC SELECT public.fn_iu_route_worker_run('x', 1); END"], "function public.wp_caller\\(\\) depend"),
])
def test_the_rollback_refuses_what_dropping_and_creating_the_worker_would_lose(
        new_db, case: str, setup: list[str], needle: str) -> None:
    target = new_db("worker_pick")
    role = f"iu_wp_{uuid.uuid4().hex[:8]}"
    with connect(target) as conn:
        conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
        for sql in setup:
            conn.execute(sql.format(role=f'"{role}"'))
        conn.commit()
    try:
        message = refused(migrate.downgrade, target, "least_privilege")
        assert re.search(needle.format(role=role), message), (case, message)
        assert message.startswith("worker_pick downgrade refused by its rollback guard"), message
    finally:
        with connect(target) as conn:
            conn.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
            conn.commit()
