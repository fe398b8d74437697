"""The privilege policy, applied to roles the DBA names (`iucore db grant`).

Roles are cluster-wide and named by each deployment (production's read-only
role is `context_pack_readonly`), so the policy is applied to given roles
rather than creating roles in a revision. Applying it CONVERGES: whatever the
role held on IU Core objects is revoked first (an older policy gave operators
the mutators, the ledger logger and DML), then exactly the policy is granted,
in one transaction.

- read-only: USAGE on the IU Core schemas, SELECT on the observability views.
- operator: the read-only policy, SELECT on the tables the tool reads for an
  operator (render and import of manifests, the proof's discovery, command
  availability), and EXECUTE on ONE function: the governed entry point
  public.fn_dot_iu_execute (revision least_privilege). No INSERT, UPDATE,
  DELETE, TRUNCATE, REFERENCES or TRIGGER on any IU Core table; no EXECUTE on
  the ledger logger, a mutator or an inner helper. Every change goes through
  the dispatcher, which checks the gates, calls the function as its owner and
  writes the ledger row (with the operator's session_user).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, MissingPrivilege
from ..framework.fingerprint import current_heads

if TYPE_CHECKING:
    import psycopg

SCHEMAS = ("public", "cutter_governance")
# What the tool reads as an operator: manifests (render/import), the proof's
# discovery (collections, members, events, its own ledger rows), availability.
OPERATOR_READ_TABLES = ("public.dot_iu_command_catalog", "public.dot_iu_command_run",
                        "public.information_unit", "public.iu_collection", "public.iu_collection_member",
                        "public.event_outbox")
DISPATCHER = "public.fn_dot_iu_execute(text,text,jsonb,text)"

# IU Core objects by name (DESIGN §7a: production's public schema also holds
# Directus's objects, which this policy never touches).
_IU_RELATION = r"^(dot_|iu_|v_iu_|v_dot_iu_)|^(information_unit|event_outbox|event_type_registry)$"
_IU_FUNCTION = r"^fn_(iu|dot|event_outbox)_"


@dataclass
class GrantPlan:
    role: str
    kind: str
    statements: list[str] = field(default_factory=list)
    # (kind, object, privilege) the role must hold once the plan ran: the post-check.
    holds: list[tuple[str, str, str]] = field(default_factory=list)

    def grant(self, kind: str, obj: str, privilege: str, r: str) -> None:
        """GRANT PRIVILEGE ON KIND OBJ TO r (r quoted), and check it afterwards."""
        on = {"schema": "SCHEMA ", "table": "", "function": "FUNCTION "}[kind]
        self.statements.append(f"GRANT {privilege} ON {on}{obj} TO {r}")
        self.holds.append((kind, obj, privilege))


def _ident(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT quote_ident(%s), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)",
                       (name, name)).fetchone()
    assert row is not None
    if not row[1]:
        raise BadInput(f"role {name!r} does not exist; create it first (CREATE ROLE {row[0]} NOLOGIN)")
    return str(row[0])


def _existing(conn: psycopg.Connection[Any], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (n,)).fetchone() == (True,)]


def _revoke_all(conn: psycopg.Connection[Any], role: str, r: str) -> list[str]:
    """REVOKE ALL for every IU Core object the role holds a privilege on (directly)."""
    rows = conn.execute(
        """SELECT 'TABLE ' || c.oid::regclass::text
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.relnamespace = ANY (%(schemas)s::regnamespace[]) AND c.relkind IN ('r', 'p', 'v', 'm')
              AND (c.relnamespace = 'cutter_governance'::regnamespace OR c.relname ~ %(rel)s)
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
           UNION
           SELECT 'FUNCTION ' || p.oid::regprocedure::text
             FROM pg_proc p, aclexplode(p.proacl) a
            WHERE p.pronamespace = ANY (%(schemas)s::regnamespace[]) AND p.proname ~ %(fn)s
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
           UNION
           SELECT 'SCHEMA ' || quote_ident(n.nspname)
             FROM pg_namespace n, aclexplode(n.nspacl) a
            WHERE n.nspname = ANY (%(names)s)
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
           ORDER BY 1""",
        {"schemas": [s for s in SCHEMAS if _schema(conn, s)], "names": list(SCHEMAS), "rel": _IU_RELATION,
         "fn": _IU_FUNCTION, "role": role}).fetchall()
    return [f"REVOKE ALL ON {obj} FROM {r}" for (obj,) in rows]


def _schema(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def _readonly_grants(conn: psycopg.Connection[Any], plan: GrantPlan, r: str) -> None:
    for s in SCHEMAS:
        if _schema(conn, s):
            plan.grant("schema", s, "USAGE", r)
    for (v,) in conn.execute(
            "SELECT 'public.' || quote_ident(c.relname) FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v' AND c.relname ~ %s"
            " ORDER BY 1", (r"^v_(iu|dot_iu)_",)):
        plan.grant("table", v, "SELECT", r)


def plan_readonly(conn: psycopg.Connection[Any], role: str) -> GrantPlan:
    r = _ident(conn, role)
    plan = GrantPlan(role, "readonly", _revoke_all(conn, role, r))
    _readonly_grants(conn, plan, r)
    return plan


def plan_operator(conn: psycopg.Connection[Any], role: str) -> GrantPlan:
    r = _ident(conn, role)
    if conn.execute("SELECT to_regprocedure(%s) IS NULL", (DISPATCHER,)).fetchone() == (True,):
        at = ", ".join(current_heads(conn)) or "base"
        raise BadInput(f"the operator policy needs revision least_privilege (the governed entry point "
                       f"{DISPATCHER}); database at {at}: run iucore db upgrade first", role=role)
    plan = GrantPlan(role, "operator", _revoke_all(conn, role, r))
    _readonly_grants(conn, plan, r)
    for t in _existing(conn, OPERATOR_READ_TABLES):
        plan.grant("table", t, "SELECT", r)
    plan.grant("function", "public.fn_dot_iu_execute(text, text, jsonb, text)", "EXECUTE", r)
    return plan


def apply(conn: psycopg.Connection[Any], plan: GrantPlan) -> GrantPlan:
    """Run the plan in one transaction, then check the role holds what it grants, or undo it all.

    A GRANT on an object the connected role neither owns nor holds WITH GRANT
    OPTION grants nothing and only warns (SQLSTATE 01007); e.g. schema public,
    which the database owner owns, when iucore runs as a role that does not.
    A privilege the role already has through PUBLIC is held all the same.
    """
    with conn.transaction():
        for stmt in plan.statements:
            conn.execute(stmt.encode())  # identifiers quoted by the server (quote_ident / regclass)
        lacking = [f"{priv} on {kind} {obj}" for kind, obj, priv in plan.holds
                   if conn.execute(f"SELECT has_{kind}_privilege(%s, %s, %s)",  # kind: schema|table|function
                                   (plan.role, obj, priv)).fetchone() != (True,)]
        if lacking:
            who = conn.execute("SELECT current_user").fetchone()
            raise MissingPrivilege(
                f"the {plan.kind} policy for {plan.role!r} would leave it without {', '.join(lacking)}: "
                f"{who[0] if who else 'this role'} neither owns those objects nor holds them WITH GRANT OPTION, "
                "so its GRANT did nothing. Nothing was changed. Ask their owner (a DBA) to grant them to "
                f"{plan.role!r}, or to this role WITH GRANT OPTION, and run db grant again",
                role=plan.role, lacking=lacking)
    return plan


def apply_all(conn: psycopg.Connection[Any], plans: list[GrantPlan]) -> list[GrantPlan]:
    """Apply every plan in ONE transaction: all roles get their policy, or none changes."""
    with conn.transaction():
        for p in plans:
            apply(conn, p)
    return plans


def privileges(conn: psycopg.Connection[Any], role: str) -> set[tuple[str, str]]:
    """(object, privilege) the role holds directly on IU Core objects: what a policy gave it."""
    rows = conn.execute(
        """SELECT 'table ' || c.oid::regclass::text, a.privilege_type
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.relnamespace IN ('public'::regnamespace, to_regnamespace('cutter_governance'))
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
           UNION
           SELECT 'function ' || p.oid::regprocedure::text, a.privilege_type
             FROM pg_proc p, aclexplode(p.proacl) a
            WHERE p.pronamespace IN ('public'::regnamespace, to_regnamespace('cutter_governance'))
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
           UNION
           SELECT 'schema ' || n.nspname, a.privilege_type
             FROM pg_namespace n, aclexplode(n.nspacl) a
            WHERE n.nspname IN ('public', 'cutter_governance')
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)""",
        {"role": role}).fetchall()
    return {(str(o), str(p)) for o, p in rows}
