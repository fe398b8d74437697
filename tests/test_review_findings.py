"""Security review of the first wave (issue 9): what is still exploitable, as failing tests.

Each test states the behaviour the product must have and fails today; it is
marked xfail(strict=True) with its finding number, so the suite stays green
while the finding is open and turns red (XPASS) the day it is fixed — then
the marker goes. Real roles on the session's embedded PostgreSQL, never a mock.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from iu_core import migrate
from iu_core.config import RunOptions, Target
from iu_core.roles import apply, plan_operator, plan_readonly

from .conftest import ROOT, connect

NEVER_FLIP = "iu_core.vector_sync_enabled"
OPERATOR_RUNTIME = "iu_core.operator_runtime_enabled"
COMPOSER = "iu_core.composer_enabled"
_seq = itertools.count()


def head() -> str:
    return migrate.script_directory(ROOT).get_current_head()


def dispatch(c: psycopg.Connection[Any], command: str, mode: str, args: list[Any], actor: str = "review") -> dict:
    row = c.execute("SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s)",
                    (command, mode, json.dumps(args), actor)).fetchone()
    assert row is not None
    return dict(row[0])


@pytest.fixture
def owner(new_db: Callable[..., Target]) -> Iterator[tuple[Target, psycopg.Connection[Any]]]:
    target = new_db(head())
    with connect(target) as c:
        yield target, c


@pytest.fixture
def login(owner: tuple[Target, psycopg.Connection[Any]]) -> Iterator[Callable[..., tuple[str, Any]]]:
    """login(kind) → (role, autocommit connection as it); kind: op | ro | none | create_on_public."""
    _, conn = owner
    made: list[tuple[str, psycopg.Connection[Any]]] = []

    def make(kind: str) -> tuple[str, psycopg.Connection[Any]]:
        name = f"rv_{kind}_{next(_seq)}_{uuid.uuid4().hex[:6]}"
        conn.execute(f"CREATE ROLE {name} LOGIN")
        if kind == "op":
            apply(conn, plan_operator(conn, name))
        elif kind == "ro":
            apply(conn, plan_readonly(conn, name))
        elif kind == "create_on_public":
            # What Directus's own role holds in the production database (DESIGN §7a):
            # it creates its tables in public. Not PUBLIC: one named role.
            conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {name}")
        c = psycopg.connect(conninfo.make_conninfo(conn.info.dsn, user=name), autocommit=True)
        made.append((name, c))
        return name, c

    yield make
    for name, c in made:
        c.close()
        conn.execute(f"DROP OWNED BY {name} CASCADE")
        conn.execute(f"DROP ROLE {name}")


def gate_value(c: psycopg.Connection[Any], key: str) -> str:
    row = c.execute("SELECT value FROM public.dot_config WHERE key = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


# ---------------------------------------------------------------- finding 1
@pytest.mark.xfail(strict=True, reason="finding 1: a role with CREATE on public (not PUBLIC) plants a better-matching "
                                       "overload that the SECURITY DEFINER dispatcher runs with the owner's rights")
def test_a_role_that_may_create_in_public_cannot_run_code_as_the_owner(owner, login) -> None:
    _, conn = owner
    _, dx = login("create_on_public")
    _, op = login("op")
    # pg_catalog.cardinality(anyarray) is polymorphic: public.cardinality(text[]) is an
    # exact match, so `cardinality(v_cmd.target_functions)` in fn_dot_iu_execute binds to it.
    dx.execute("""CREATE FUNCTION public.cardinality(a text[]) RETURNS integer LANGUAGE plpgsql AS $$
                  BEGIN
                    BEGIN
                      UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.vector_sync_enabled';
                    EXCEPTION WHEN insufficient_privilege THEN NULL;  -- only the owner may
                    END;
                    RETURN pg_catalog.cardinality(a);
                  END $$""")
    dx.execute("GRANT EXECUTE ON FUNCTION public.cardinality(text[]) TO PUBLIC")
    assert dispatch(op, "dot_iu_healthcheck", "verify", [])["status"] == "verified"
    assert gate_value(conn, NEVER_FLIP) == "false", "the planted overload ran as the owner: a never-flip gate flipped"


# ---------------------------------------------------------------- finding 2
@pytest.mark.xfail(strict=True, reason="finding 2: the operator opens every governable gate itself through the "
                                       "dispatcher with an invented approval id, then mutates: gates bind nobody")
def test_an_operator_cannot_approve_its_own_gate_opening(owner, login) -> None:
    _, conn = owner
    _, op = login("op")
    before = conn.execute("SELECT count(*) FROM public.information_unit").fetchone()
    for gate in (OPERATOR_RUNTIME, COMPOSER):  # every gate shut; no approver involved
        dispatch(op, "dot_iu_gate_open", "apply", [gate, str(uuid.uuid4()), "self-approved", "op", 3600])
    ans = dispatch(op, "dot_iu_clone_piece", "apply", ["self/approved", "piece", "T", "op"])
    assert ans["status"] != "applied"
    assert conn.execute("SELECT count(*) FROM public.information_unit").fetchone() == before


# ---------------------------------------------------------------- finding 3
@pytest.mark.xfail(strict=True, reason="finding 3: least_privilege's revoke and post-check skip cutter_governance: "
                                       "a write grant on review_decision survives the upgrade")
def test_least_privilege_revokes_writes_on_cutter_governance_too(new_db) -> None:
    target = new_db("gate_protocol")
    role = f"rv_reviewer_{uuid.uuid4().hex[:8]}"
    with connect(target) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"GRANT USAGE ON SCHEMA cutter_governance TO {role}")
        c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA cutter_governance TO {role}")
    try:
        migrate.upgrade(target, "least_privilege", project=ROOT, options=RunOptions(actor="review"))
        with connect(target) as c:
            left = c.execute(
                "SELECT c.oid::regclass::text || ' ' || a.privilege_type FROM pg_class c,"
                " aclexplode(c.relacl) a WHERE c.relnamespace = 'cutter_governance'::regnamespace"
                " AND c.relkind = 'r' AND a.grantee = %s::regrole AND a.privilege_type <> 'SELECT'"
                " ORDER BY 1", (role,)).fetchall()
            # with INSERT on review_decision the role forges the "real review decision" that
            # split/merge require (the never-flip iu_enact.allow_no_review_decision stands for)
            assert left == [], left
    finally:
        with connect(target) as c:
            c.execute(f"DROP OWNED BY {role} CASCADE")
            c.execute(f"DROP ROLE {role}")


# ---------------------------------------------------------------- finding 4
@pytest.mark.xfail(strict=True, reason="finding 4: an operator's open transaction holds the gate rows FOR SHARE; "
                                       "a protocol close waits while the operator keeps applying")
def test_a_pending_close_stops_further_applies(owner, login) -> None:
    target, conn = owner
    _, op = login("op")
    for gate in (OPERATOR_RUNTIME, COMPOSER):
        conn.execute("SELECT public.fn_iu_gate_open(%s, %s, 'review', 'lead', 600)", (gate, str(uuid.uuid4())))
    op.execute("BEGIN")
    assert dispatch(op, "dot_iu_clone_piece", "apply", ["stall/1", "piece", "T", "op"])["status"] == "applied"
    closer = connect(target)
    closer_pid = closer.info.backend_pid
    done: dict[str, Any] = {}

    def close() -> None:
        done["answer"] = closer.execute(
            "SELECT public.fn_iu_gate_close(%s, 'emergency', 'lead')", (COMPOSER,)).fetchone()

    t = threading.Thread(target=close)
    t.start()
    try:
        while conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                           (closer_pid,)).fetchone() != ("Lock",):
            conn.execute("SELECT pg_sleep(0.05)")
        # the lead's emergency close is pending: nothing gated may run any more
        second = dispatch(op, "dot_iu_clone_piece", "apply", ["stall/2", "piece", "T", "op"])
        op.execute("COMMIT")
    finally:
        if op.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            op.execute("ROLLBACK")
        t.join()
        closer.close()
    assert second["status"] != "applied"


# ---------------------------------------------------------------- finding 5
@pytest.mark.xfail(strict=True, raises=psycopg.errors.InsufficientPrivilege,
                   reason="finding 5: a role without the privileges gets a psycopg traceback, not exit 2/3")
@pytest.mark.parametrize("kind", ["none", "ro"])
@pytest.mark.parametrize("args", [("db", "preflight"), ("inventory",), ("selftest",), ("dot", "list")],
                         ids=lambda a: " ".join(a))
def test_a_role_without_privileges_gets_a_clean_error(owner, login, run_cli, kind: str, args: tuple[str, ...]) -> None:
    target, _ = owner
    role, _ = login(kind)
    as_role = Target.parse(conninfo.make_conninfo(target.libpq, user=role))
    res = run_cli(as_role, *args)  # catch_exceptions=False: a traceback raises here
    assert res.exit_code in (2, 3), res.output


# ---------------------------------------------------------------- finding 6
@pytest.mark.xfail(strict=True, reason="finding 6: an actor that is not UTF-8 (argv/IUCORE_ACTOR bytes) is not "
                                       "refused as bad input: a traceback, or exit 1 with no audit row")
@pytest.mark.parametrize("args", [("dot", "apply", "dot_iu_gate_watchdog"), ("db", "upgrade", "head", "--sql"),
                                  ("db", "upgrade", "substrate")], ids=lambda a: " ".join(a))
def test_an_actor_that_is_not_utf8_is_bad_input(new_db, run_cli, args: tuple[str, ...]) -> None:
    target = new_db(head()) if args[0] == "dot" else new_db()
    bad = "a\udcff"  # how Python hands over the argv / environment byte 0xff
    try:
        res = run_cli(target, "--actor", bad, *args)
    except UnicodeError as exc:
        raise AssertionError(f"traceback: {exc!r}") from None
    assert res.exit_code == 2, res.output
