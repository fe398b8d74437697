"""Security review of the first wave (issue 9): each finding as the behaviour the product must have.

Written as strict-xfail tests while the findings were open; each marker went
with its fix. Finding 2 is a design decision, pinned as such (docs/security.md,
"Who can do what"). Real roles on the session's embedded PostgreSQL, never a mock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from iu_core.config import RunOptions
from iu_core.framework import migrate
from iu_core.pg.target import Target

from .conftest import ROOT, connect, head, logins

NEVER_FLIP = "iu_core.vector_sync_enabled"
OPERATOR_RUNTIME = "iu_core.operator_runtime_enabled"
COMPOSER = "iu_core.composer_enabled"


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
    with logins(conn, "rv") as make:
        yield make


def gate_value(c: psycopg.Connection[Any], key: str) -> str:
    row = c.execute("SELECT value FROM public.dot_config WHERE key = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


# ---------------------------------------------------------------- finding 1
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
def test_an_operator_opening_a_gate_is_recorded_bounded_and_expires(owner, login) -> None:
    """By design (seed 002: approval_id references an approval made outside the database, Điều 32;
    seed 000: the operator runtime's proof opens its own gates for the mutating window), the
    operator may open a governable gate through the dispatcher. What holds it: an approval id and
    a TTL of at most an hour are required, the transition and the ledger name the session user
    beside the claimed actor, the open expires by itself, and no path opens a never-flip gate.
    docs/security.md ("Who can do what") says why, the risk left, and how to take it away."""
    _, conn = owner
    role, op = login("op")
    approval = str(uuid.uuid4())
    ans = dispatch(op, "dot_iu_gate_open", "apply", [COMPOSER, approval, "self-approved", "someone-else", 3600])
    assert ans["status"] == "applied", ans
    row = conn.execute(
        "SELECT t.approval_id::text, t.ttl_seconds, t.expires_at - t.created_at <= interval '3600 seconds',"
        "       t.actor, r.actor, r.session_user_name"
        "  FROM public.iu_gate_transition t JOIN public.dot_iu_command_run r ON r.run_id = t.run_id"
        " WHERE t.gate_key = %s AND t.action = 'open'", (COMPOSER,)).fetchone()
    assert row == (approval, 3600, True, "someone-else", "someone-else", role)
    assert conn.execute("SELECT public.fn_iu_gate_state(%s)", (COMPOSER,)).fetchone() == ("open",)
    # bounded: no approval, no TTL or a TTL over an hour, a never-flip gate — refused, nothing opened
    for args in ([OPERATOR_RUNTIME, None, "r", "op", 60], [OPERATOR_RUNTIME, approval, "r", "op", 3601],
                 [OPERATOR_RUNTIME, approval, "r", "op", None], [NEVER_FLIP, approval, "r", "op", 60]):
        refused = dispatch(op, "dot_iu_gate_open", "apply", args)
        assert refused["status"] == "refused" and refused["answer"]["sqlstate"] in ("23514", "42501"), (args, refused)
    assert gate_value(conn, OPERATOR_RUNTIME) == "false" and gate_value(conn, NEVER_FLIP) == "false"
    # it expires by itself: once its TTL has run, every check reads it shut, watchdog or not
    conn.execute("UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 second'"
                 " WHERE gate_key = %s AND action = 'open'", (COMPOSER,))
    assert conn.execute("SELECT public.fn_iu_gate_state(%s), public.fn_iu_gate_is_open(%s)",
                        (COMPOSER, COMPOSER)).fetchone() == ("expired", False)
    dispatch(op, "dot_iu_gate_open", "apply", [OPERATOR_RUNTIME, approval, "r", "op", 60])
    late = dispatch(op, "dot_iu_clone_piece", "apply", ["self/approved", "piece", "T", "op"])
    assert (late["status"], late["closed_gates"]) == ("refused", [COMPOSER])


# ---------------------------------------------------------------- finding 3
def test_least_privilege_revokes_writes_on_cutter_governance_too(new_db) -> None:
    target = new_db("gate_protocol")
    with connect(target) as owner_conn, logins(owner_conn, "rv") as login:
        role, _ = login("none")
        owner_conn.execute(f"GRANT USAGE ON SCHEMA cutter_governance TO {role}")
        owner_conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA cutter_governance TO {role}")
        migrate.upgrade(target, "least_privilege", project=ROOT, options=RunOptions(actor="review"))
        left = owner_conn.execute(
            "SELECT c.oid::regclass::text || ' ' || a.privilege_type FROM pg_class c,"
            " aclexplode(c.relacl) a WHERE c.relnamespace = 'cutter_governance'::regnamespace"
            " AND c.relkind = 'r' AND a.grantee = %s::regrole AND a.privilege_type <> 'SELECT'"
            " ORDER BY 1", (role,)).fetchall()
        # with INSERT on review_decision the role forges the "real review decision" that
        # split/merge require (the never-flip iu_enact.allow_no_review_decision stands for)
        assert left == [], left


# ---------------------------------------------------------------- finding 4
def test_a_close_does_not_wait_for_an_open_transaction_and_stops_its_next_apply(owner, login) -> None:
    target, conn = owner
    _, op = login("op")
    for gate in (OPERATOR_RUNTIME, COMPOSER):
        conn.execute("SELECT public.fn_iu_gate_open(%s, %s, 'review', 'lead', 600)", (gate, str(uuid.uuid4())))
    op.execute("BEGIN")  # READ COMMITTED, the default
    try:
        assert dispatch(op, "dot_iu_clone_piece", "apply", ["stall/1", "piece", "T", "op"])["status"] == "applied"
        with connect(target) as closer:
            # A close that had to wait for the operator's transaction fails here instead of hanging
            # the test; one that waits for nothing never meets the timeout.
            closer.execute("SET lock_timeout = '2s'")
            closed = closer.execute("SELECT public.fn_iu_gate_close(%s, 'emergency', 'lead')",
                                    (COMPOSER,)).fetchone()
        assert closed is not None and closed[0]["status"] == "closed"
        # committed while the operator's transaction is still open: its next call reads it
        second = dispatch(op, "dot_iu_clone_piece", "apply", ["stall/2", "piece", "T", "op"])
        op.execute("COMMIT")
    finally:
        if op.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            op.execute("ROLLBACK")
    assert (second["status"], second["reason"], second["closed_gates"]) == ("refused", "gate_closed", [COMPOSER])
    assert conn.execute("SELECT canonical_address FROM public.information_unit WHERE canonical_address LIKE"
                        " 'stall/%%' ORDER BY 1").fetchall() == [("stall/1",)]


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_the_dispatcher_refuses_a_transaction_that_would_keep_reading_an_old_open(owner, login,
                                                                                  isolation: str) -> None:
    _, conn = owner
    _, op = login("op")
    for gate in (OPERATOR_RUNTIME, COMPOSER):
        conn.execute("SELECT public.fn_iu_gate_open(%s, %s, 'review', 'lead', 600)", (gate, str(uuid.uuid4())))
    runs = conn.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone()
    op.execute(f"BEGIN ISOLATION LEVEL {isolation}")
    try:
        for mode, args in (("apply", ["snap/1", "piece", "T", "op"]), ("plan", ["snap/2", "piece", "T", "op"])):
            ans = dispatch(op, "dot_iu_clone_piece", mode, args)
            assert (ans["status"], ans["reason"], ans["next_action"]) == (
                "refused", "isolation_not_read_committed", "use_read_committed"), ans
            assert isolation.lower() in ans["guidance"] and "READ COMMITTED" in ans["guidance"]
        op.execute("COMMIT")
    finally:
        if op.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            op.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM public.information_unit WHERE canonical_address LIKE 'snap/%%'"
                        ).fetchone() == (0,)
    logged = conn.execute("SELECT run_mode, run_status, evidence FROM public.dot_iu_command_run"
                          " ORDER BY created_at DESC LIMIT 2").fetchall()
    assert conn.execute("SELECT count(*) FROM public.dot_iu_command_run").fetchone() == (runs[0] + 2,)
    assert sorted(logged) == [("apply", "refused", {"reason": "isolation_not_read_committed"}),
                              ("plan", "refused", {"reason": "isolation_not_read_committed"})]


# ---------------------------------------------------------------- finding 5
@pytest.mark.parametrize("kind", ["none", "ro", "op"])
@pytest.mark.parametrize("args", [("db", "preflight"), ("inventory",), ("selftest",), ("dot", "list")],
                         ids=lambda a: " ".join(a))
def test_a_role_without_privileges_gets_a_clean_error(owner, login, run_cli, kind: str, args: tuple[str, ...]) -> None:
    target, _ = owner
    role, _ = login(kind)
    as_role = Target.parse(conninfo.make_conninfo(target.libpq, user=role))
    res = run_cli(as_role, *args)  # catch_exceptions=False: a traceback raises here
    if (kind, args) == ("op", ("dot", "list")):  # the operator's own job: it reads the catalog
        assert res.exit_code == 0 and "dot_iu_clone_piece" in res.output, res.output
        return
    assert res.exit_code == 2, res.output
    message = res.output.strip().splitlines()[-1]
    # which privilege was denied (PostgreSQL names the object), and what to grant
    assert message.startswith("iucore: error: cannot read ") and "permission denied for " in message, message
    assert "GRANT" in message, message


# ---------------------------------------------------------------- finding 6
@pytest.mark.parametrize("source", ["flag", "env"])
@pytest.mark.parametrize("args", [("dot", "apply", "dot_iu_gate_watchdog"), ("db", "upgrade", "head", "--sql"),
                                  ("db", "upgrade", "substrate")], ids=lambda a: " ".join(a))
def test_an_actor_that_is_not_utf8_is_bad_input(new_db, run_cli, args: tuple[str, ...], source: str) -> None:
    target = new_db(head()) if args[0] == "dot" else new_db()
    bad = "a\udcff"  # how Python hands over the argv / environment byte 0xff
    try:
        if source == "flag":
            res = run_cli(target, "--actor", bad, *args)
        else:
            res = run_cli(target, *args, env={"IUCORE_ACTOR": bad})
    except UnicodeError as exc:
        raise AssertionError(f"traceback: {exc!r}") from None
    assert res.exit_code == 2, res.output
    assert ("--actor" if source == "flag" else "IUCORE_ACTOR") + ": the actor is not valid UTF-8" in res.output
    with connect(target) as c:  # refused before anything connected: nothing ran, nothing was written
        if args[0] == "dot":
            assert c.execute("SELECT count(*) FROM public.dot_iu_command_run"
                             " WHERE command_name = 'dot_iu_gate_watchdog'").fetchone() == (0,)
        else:  # not even the bootstrap of iucore's own schema
            assert c.execute("SELECT to_regnamespace('iucore'), to_regclass('public.dot_config')").fetchone() == (
                None, None)


@pytest.mark.parametrize(("actor", "why"), [
    ("alice\x00", "U+0000"), ("alice\nbob", "U+000A"), ("\x1b[31mred", "U+001B"), ("zero\u200bwidth", "U+200B"),
    ("   ", "blank"), ("x" * 129, "at most 128"),
])
def test_an_actor_that_cannot_name_someone_is_bad_input(new_db, run_cli, actor: str, why: str) -> None:
    target = new_db()
    res = run_cli(target, "--actor", actor, "db", "upgrade", "substrate")
    assert res.exit_code == 2 and why in res.output, res.output
    assert actor not in res.output
    with connect(target) as c:
        assert c.execute("SELECT to_regnamespace('iucore')").fetchone() == (None,)
    ok = run_cli(target, "--actor", "Nguyễn Văn A (DBA)", "db", "upgrade", "substrate")
    assert ok.exit_code == 0, ok.output
