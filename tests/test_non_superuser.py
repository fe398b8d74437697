"""What `workflow_admin` needs: the whole lifecycle as an ordinary login role (issue 10, DESIGN §7a).

Production's write identity is `workflow_admin`, an owner role, not a
superuser (seed 002 A2); its read identity `context_pack_readonly`. Every test
here creates real roles with the session's superuser (the DBA), then runs the
real CLI with each role's own URL. The roles iucore grants to are created by
the DBA beforehand; iucore never creates a role.

What the DBA gives workflow_admin, as these tests prove it:

- LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE is enough. No membership in, and
  no ADMIN OPTION on, the roles it grants to: an object's owner grants
  privileges on its objects to any role.
- Either ownership of the database (the first test), or, in a database
  another role owns (production: Directus's `directus`, the last test):
  CONNECT and CREATE on the database (schemas `iucore` and
  `cutter_governance`), CREATE on schema `public` (the IU Core objects live
  there, beside Directus's), and, if PUBLIC's USAGE on `public` was revoked,
  USAGE on `public` WITH GRANT OPTION (so `db grant` can pass it on).
- Ownership of every IU Core object: revisions replace functions of earlier
  ones (CREATE OR REPLACE), which only the owner may do. Objects applied by
  hand as another role are given to workflow_admin first (ALTER … OWNER TO,
  or REASSIGN OWNED BY that role TO workflow_admin).
- `pg_read_all_data` (PostgreSQL 14+) when the database holds tables of other
  roles: `db backup` dumps the whole database, Directus's tables included.
- `pg_read_all_stats` (or `pg_monitor`): without it the preflight cannot see
  other roles' transactions, and fails closed rather than pass blind.
- EXECUTE on `pg_control_system()` (PUBLIC has it by default): a backup is
  tied to the cluster's system identifier (tests/test_backup.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from iu_core.domain.registry import COMPOSER, OPERATOR_RUNTIME
from iu_core.pg.target import Target

from .conftest import Databases, ok
from .directus import build as build_directus_like

_ORDINARY = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


@dataclass
class Site:
    """A database and the roles the DBA made for it; `as_(role)` is that role's Target."""

    databases: Databases
    name: str
    admin: str  # workflow_admin
    operator: str
    readonly: str
    owner: str  # who owns the database

    def as_(self, role: str) -> Target:
        return Target.parse(self.databases.server.url(self.name).replace("postgres@", f"{role}@", 1))

    def dba(self) -> psycopg.Connection[Any]:
        """The superuser, in this database."""
        return psycopg.connect(self.databases.server.url(self.name), autocommit=True)


@pytest.fixture
def site(databases: Databases) -> Iterator[Callable[..., Site]]:
    """site() → workflow_admin owns a fresh database; site(owned_by_workflow_admin=False) → a
    Directus-like database owned by `directus`, where workflow_admin has only CONNECT."""
    made: list[tuple[str, list[str]]] = []

    def make(owned_by_workflow_admin: bool = True) -> Site:
        tag = uuid.uuid4().hex[:8]
        roles = {k: f"{k}_{tag}" for k in ("workflow_admin", "operator", "context_pack_readonly", "directus")}
        for r in roles.values():
            databases.admin.execute(f'CREATE ROLE "{r}" {_ORDINARY}')
        owner = roles["workflow_admin"] if owned_by_workflow_admin else roles["directus"]
        name = databases.create()
        databases.admin.execute(f'ALTER DATABASE "{name}" OWNER TO "{owner}"')
        made.append((name, list(roles.values())))
        return Site(databases, name, roles["workflow_admin"], roles["operator"], roles["context_pack_readonly"],
                    owner)

    yield make
    for name, roles in made:
        databases.drop(name)
        for r in roles:
            databases.admin.execute(f'DROP ROLE IF EXISTS "{r}"')


def one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------- the lifecycle
def test_workflow_admin_owning_its_database_runs_the_whole_lifecycle(site, run_cli, tmp_path: Path) -> None:
    s = site()
    admin, op, ro = s.as_(s.admin), s.as_(s.operator), s.as_(s.readonly)
    with s.dba() as dba:
        assert dba.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
                           " FROM pg_roles WHERE rolname = %s", (s.admin,)).fetchone() == (False,) * 5
        # no membership in anything, no ADMIN on the roles it will grant to
        assert one(dba, "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole"
                        " OR roleid = %s::regrole", (s.admin, s.admin)) == 0

    # upgrade, prove, verify, back up, preflight
    ok(run_cli(admin, "db", "upgrade", "head"))
    ok(run_cli(admin, "selftest"))
    ok(run_cli(admin, "inventory", "--check"))
    ok(run_cli(admin, "db", "verify"))
    backup = json.loads(ok(run_cli(admin, "--json", "db", "backup", "--out", str(tmp_path))).stdout)
    assert backup["database"] == s.name and backup["toc_entries"] > 100 and backup["system_identifier"]
    blind = run_cli(admin, "--json", "db", "preflight", "--backup-dir", str(tmp_path),
                    "--expect-database", s.name, "--expect-user", s.admin)
    pre = json.loads(blind.stdout)  # no read identity proven yet: everything else passes
    assert blind.exit_code == 3 and pre["passed"] == pre["total"] - 1 == 13, pre
    assert [c["check"] for c in pre["checks"] if c["status"] == "FAIL"] == ["read identity (read-only role)"]

    with s.dba() as dba:  # everything iucore made is workflow_admin's
        strangers = dba.execute(
            """SELECT c.oid::regclass::text FROM pg_class c
                WHERE c.relnamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace,
                                         'iucore'::regnamespace) AND c.relowner <> %(r)s::regrole
               UNION ALL
               SELECT p.oid::regprocedure::text FROM pg_proc p
                WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)
                  AND p.proowner <> %(r)s::regrole
               UNION ALL
               SELECT n.nspname FROM pg_namespace n
                WHERE n.nspname IN ('iucore', 'cutter_governance') AND n.nspowner <> %(r)s::regrole""",
            {"r": s.admin}).fetchall()
        assert strangers == []
        # so the dispatcher runs the governed functions as workflow_admin, never as a superuser
        assert dba.execute("SELECT prosecdef, proowner::regrole::text FROM pg_proc WHERE oid ="
                           " 'public.fn_dot_iu_execute(text, text, jsonb, text)'::regprocedure").fetchone() == (
            True, s.admin)

    # all the way down and up again
    ok(run_cli(admin, "db", "downgrade", "base"))
    assert json.loads(ok(run_cli(admin, "--json", "db", "current")).stdout)["current"] == []
    with s.dba() as dba:
        assert one(dba, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == 0
        assert one(dba, "SELECT to_regnamespace('cutter_governance')") is None
    ok(run_cli(admin, "db", "upgrade", "head"))

    # the privilege policy, to roles the DBA made
    ok(run_cli(admin, "db", "grant", "--readonly", s.readonly, "--operator", s.operator))
    # now the read identity is a real read-only login: all 14 mandatory gates pass as workflow_admin
    ok(run_cli(admin, "db", "backup", "--out", str(tmp_path)))
    pre = json.loads(ok(run_cli(admin, "--json", "db", "preflight", "--backup-dir", str(tmp_path),
                                "--read-url", ro.display, "--expect-database", s.name,
                                "--expect-user", s.admin)).stdout)
    assert pre["ok"] and pre["passed"] == pre["total"] == 14, pre

    # the operator, as itself: gates through the protocol, a governed apply, gates shut again
    approval = str(uuid.uuid4())
    for gate in (OPERATOR_RUNTIME, COMPOSER):
        ok(run_cli(op, "--actor", "alice", "gate", "open", gate, "--approval-id", approval, "--ttl", "300",
                   "--reason", "non-superuser lifecycle"))
    ok(run_cli(op, "--actor", "alice", "dot", "apply", "dot_iu_clone_piece", "canonical_address=ops/piece-1",
               "unit_kind=piece", "title=Piece"))
    ok(run_cli(op, "--actor", "alice", "gate", "close", COMPOSER))
    shut = run_cli(op, "--actor", "alice", "dot", "apply", "dot_iu_clone_piece",
                   "canonical_address=ops/piece-2", "unit_kind=piece", "title=Piece")
    assert shut.exit_code == 3, shut.output
    ok(run_cli(op, "--actor", "alice", "gate", "close", OPERATOR_RUNTIME))
    assert "(10 rows)" in ok(run_cli(op, "--actor", "alice", "gate", "status")).stdout
    with s.dba() as dba:
        assert dba.execute("SELECT command_name, run_status, actor, session_user_name FROM public.dot_iu_command_run"
                           " ORDER BY created_at").fetchall() == [
            ("dot_iu_gate_open", "applied", "alice", s.operator)] * 2 + [
            ("dot_iu_clone_piece", "applied", "alice", s.operator),
            ("dot_iu_gate_close", "applied", "alice", s.operator),
            ("dot_iu_clone_piece", "refused", "alice", s.operator),
            ("dot_iu_gate_close", "applied", "alice", s.operator),
            ("dot_iu_gate_verify_closed", "verified", "alice", s.operator)]
        assert (one(dba, "SELECT public.fn_iu_gate_verify_closed(NULL)") or {}).get("all_safe") is True
    # the operator writes only through the dispatcher
    with psycopg.connect(op.libpq, autocommit=True) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("INSERT INTO public.information_unit (canonical_address, unit_kind, title, created_by)"
                  " VALUES ('ops/direct', 'piece', 'P', 'alice')")
    with psycopg.connect(ro.libpq, autocommit=True) as c:  # the read identity reads the views, not the tables
        assert one(c, "SELECT total_runs FROM public.v_dot_iu_command_run_health") == 7
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT count(*) FROM public.dot_iu_command_run")

    # a runtime data script and its rollback, as workflow_admin
    ok(run_cli(admin, "runtime", "apply", "290", "--approval-id", approval))
    ok(run_cli(admin, "runtime", "rollback", "290", "--approval-id", approval))
    with s.dba() as dba:
        assert dba.execute("SELECT revision, direction, outcome, actor IS NOT NULL FROM iucore.migration_log"
                           " WHERE revision = 'runtime/290' ORDER BY log_id").fetchall() == [
            ("runtime/290", "apply", "applied", True), ("runtime/290", "rollback", "applied", True)]
    # reads that need iucore's schema say so, without a traceback (the operator has no USAGE on it)
    denied = run_cli(op, "inventory")
    assert denied.exit_code == 2 and "permission denied for schema iucore" in denied.stderr, denied.output


# ---------------------------------------------------------------- the preflight cannot pass blind
def test_the_long_transaction_check_fails_closed_without_pg_read_all_stats(site, run_cli) -> None:
    s = site()
    admin = s.as_(s.admin)
    ok(run_cli(admin, "db", "upgrade", "head"))

    def check() -> dict[str, Any]:
        res = run_cli(admin, "--json", "db", "preflight", "--max-xact-age", "0s")
        assert res.exit_code in (0, 3), res.output
        return next(c for c in json.loads(res.stdout)["checks"] if c["check"] == "no long transaction to queue behind")

    assert check()["status"] == "PASS"  # nobody else is here
    with psycopg.connect(s.databases.server.url(s.name)) as other:
        other.execute("SELECT 1")  # another role's session, a transaction left open
        pid = other.info.backend_pid
        hidden = check()
        assert hidden["status"] == "FAIL", hidden
        assert hidden["evidence"] == (
            f"1 session(s) of postgres on this database are hidden from {s.admin}: their transactions cannot be "
            f"seen, so none can be ruled out; GRANT pg_read_all_stats TO {s.admin}")
        s.databases.admin.execute(f'GRANT pg_read_all_stats TO "{s.admin}"')  # a role grant: cluster-wide
        seen = check()
        assert seen["status"] == "FAIL" and seen["evidence"].startswith(f"pid {pid} (postgres, idle in transaction)")
        other.commit()
        assert check()["status"] == "PASS"  # seen, and not in a transaction


# ---------------------------------------------------------------- production: Directus's database
def test_in_a_database_directus_owns_workflow_admin_needs_exactly_these_grants(site, run_cli, tmp_path: Path) -> None:
    s = site(owned_by_workflow_admin=False)
    admin = s.as_(s.admin)
    build_directus_like(s.as_(s.owner))  # Directus's tables, as the database's owner
    with s.dba() as dba:
        # a hardened public schema: PUBLIC may not even look in it
        dba.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        dba.execute(f'GRANT USAGE ON SCHEMA public TO "{s.owner}"')

        def refused(*args: str, code: int, says: str) -> None:
            res = run_cli(admin, *args)
            assert res.exit_code == code and says in res.stderr, res.output

        # CONNECT alone: the bootstrap needs CREATE on the database, and says so
        refused("db", "upgrade", "head", code=2, says="has no CREATE on the database")
        dba.execute(f'GRANT CREATE ON DATABASE "{s.name}" TO "{s.admin}"')
        # then USAGE and CREATE on schema public, where the IU Core objects live: without them the
        # substrate's preflight cannot even look (a guard that could not decide has failed, exit 1)
        refused("db", "upgrade", "head", code=1, says="substrate upgrade failed in @preflight")
        refused("db", "upgrade", "head", code=1, says="permission denied for schema public — the role running")
        dba.execute(f'GRANT USAGE ON SCHEMA public TO "{s.admin}"')
        refused("db", "upgrade", "head", code=1, says="failed in @body (migrations/sql/substrate.sql:108): "
                                                       "permission denied for schema public")
        assert json.loads(ok(run_cli(admin, "--json", "db", "current")).stdout)["current"] == []
        dba.execute(f'GRANT CREATE ON SCHEMA public TO "{s.admin}"')
        ok(run_cli(admin, "db", "upgrade", "gate_protocol"))

        # a revision replaces functions of earlier ones: only their owner can
        dba.execute(f'ALTER FUNCTION public.fn_iu_gate_open(text, uuid, text, text, integer) OWNER TO "{s.owner}"')
        refused("db", "upgrade", "head", code=1, says="must be owner of function fn_iu_gate_open")
        dba.execute(f'ALTER FUNCTION public.fn_iu_gate_open(text, uuid, text, text, integer) OWNER TO "{s.admin}"')
        ok(run_cli(admin, "db", "upgrade", "head"))
        ok(run_cli(admin, "selftest"))
        ok(run_cli(admin, "inventory", "--check"))  # Directus's objects are not drift
        ok(run_cli(admin, "db", "verify"))

        # the backup dumps the whole database, Directus's tables too
        out = tmp_path / "backups"
        refused("db", "backup", "--out", str(out), code=1, says="permission denied for table directus_")
        assert not out.exists() or list(out.iterdir()) == []  # nothing kept
        dba.execute(f'GRANT pg_read_all_data TO "{s.admin}"')
        ok(run_cli(admin, "db", "backup", "--out", str(out)))

        # down and up again: what workflow_admin created, it drops; Directus's tables stay
        directus_tables = one(dba, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                                   " AND relname LIKE 'directus\\_%' AND relkind = 'r'")
        ok(run_cli(admin, "db", "downgrade", "base"))
        assert one(dba, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                        " AND relname LIKE 'directus\\_%' AND relkind = 'r'") == directus_tables > 0
        assert one(dba, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                        " AND relowner = %s::regrole", (s.admin,)) == 0
        ok(run_cli(admin, "db", "upgrade", "head"))

        # db grant: USAGE on public must be passable, or the policy would leave the role without it
        before = dba.execute("SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a"
                             " WHERE a.grantee = %s::regrole", (s.readonly,)).fetchone()
        refused("db", "grant", "--readonly", s.readonly, "--operator", s.operator, code=2,
                says="would leave it without USAGE on schema public")
        assert dba.execute("SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a"
                           " WHERE a.grantee = %s::regrole", (s.readonly,)).fetchone() == before == (0,)
        dba.execute(f'GRANT USAGE ON SCHEMA public TO "{s.admin}" WITH GRANT OPTION')
        ok(run_cli(admin, "db", "grant", "--readonly", s.readonly, "--operator", s.operator))
        op = s.as_(s.operator)
        approval = str(uuid.uuid4())
        ok(run_cli(op, "--actor", "bob", "gate", "open", OPERATOR_RUNTIME, "--approval-id", approval,
                   "--ttl", "60", "--reason", "directus-owned database"))
        ok(run_cli(op, "--actor", "bob", "dot", "verify", "dot_iu_command_run_health"))
        ok(run_cli(op, "--actor", "bob", "gate", "close", OPERATOR_RUNTIME))

    with psycopg.connect(s.as_(s.readonly).libpq, autocommit=True) as c:  # USAGE passed on, views readable
        assert c.execute("SELECT total_runs FROM public.v_dot_iu_command_run_health").fetchone() == (3,)
