"""The privilege policy, applied to roles the DBA names (`iucore db grant`).

Roles are cluster-wide and named by each deployment (production's read-only
role is `context_pack_readonly`), so the policy is applied to given roles
rather than creating roles in a revision. It is derived from the live
database, so it follows the revisions: the operator gets EXECUTE on every
target function of the governed catalog.

- read-only: USAGE on the IU Core schemas, SELECT on the observability views.
  No table, no function that writes (the mutators are revoked from PUBLIC).
- operator: EXECUTE on the governed target functions and on the emit helpers
  they call; SELECT on the configuration and reference tables (the functions
  read the gates as the caller); INSERT/UPDATE/DELETE on the data tables they
  write. NOT on dot_config, the catalog, the registry, the routes or the gate
  transitions: gates move only through the SECURITY DEFINER gate protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BadInput

if TYPE_CHECKING:
    import psycopg

SCHEMAS = ("public", "cutter_governance")
READ_TABLES = ("public.dot_config", "public.dot_iu_command_catalog", "public.event_type_registry",
               "public.iu_outbound_route", "cutter_governance.review_decision",
               "cutter_governance.manifest_envelope", "cutter_governance.manifest_unit_block")
DATA_TABLES = ("public.information_unit", "public.iu_collection", "public.iu_collection_member",
               "public.event_outbox", "public.iu_route_attempt", "public.iu_route_dead_letter",
               "public.iu_auto_instance")
# Called by the governed functions as the caller (SECURITY INVOKER): the caller needs them.
HELPERS = ("fn_iu_emit_event", "fn_iu_composer_emit", "fn_iu_route_deliver", "fn_iu_structure_consumer",
           "fn_iu_gate_is_open", "fn_iu_core_routes_enabled", "fn_iu_delivery_enabled",
           "fn_iu_collection_validate", "fn_iu_collection_render", "fn_iu_create", "fn_iu_compose",
           "fn_iu_collection_add_piece", "fn_iu_observe")


@dataclass
class GrantPlan:
    role: str
    kind: str
    statements: list[str] = field(default_factory=list)


def _ident(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT quote_ident(%s), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)",
                       (name, name)).fetchone()
    assert row is not None
    if not row[1]:
        raise BadInput(f"role {name!r} does not exist; create it first (CREATE ROLE {row[0]} NOLOGIN)")
    return str(row[0])


def _existing(conn: psycopg.Connection[Any], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (n,)).fetchone() == (True,)]


def _functions(conn: psycopg.Connection[Any], names: set[str]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
        " AND p.proname = ANY(%s) ORDER BY 1", (sorted(names),))]


def plan_readonly(conn: psycopg.Connection[Any], role: str) -> GrantPlan:
    r = _ident(conn, role)
    plan = GrantPlan(role, "readonly")
    for s in SCHEMAS:
        if conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (s,)).fetchone() == (True,):
            plan.statements.append(f"GRANT USAGE ON SCHEMA {s} TO {r}")
    views = [v[0] for v in conn.execute(
        "SELECT 'public.' || quote_ident(c.relname) FROM pg_class c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v' AND c.relname LIKE 'v\\_%%'"
        " ORDER BY 1")]
    plan.statements += [f"GRANT SELECT ON {v} TO {r}" for v in views]
    return plan


def plan_operator(conn: psycopg.Connection[Any], role: str) -> GrantPlan:
    r = _ident(conn, role)
    plan = plan_readonly(conn, role)
    plan.kind = "operator"
    targets: set[str] = set(HELPERS)
    if conn.execute("SELECT to_regclass('public.dot_iu_command_catalog') IS NOT NULL").fetchone() == (True,):
        for (fns,) in conn.execute("SELECT target_functions FROM public.dot_iu_command_catalog"):
            targets.update(fns)
    targets.add("fn_dot_iu_command_log")  # the runtime's ledger writer (SECURITY DEFINER)
    plan.statements += [f"GRANT EXECUTE ON FUNCTION public.{f} TO {r}" for f in _functions(conn, targets)]
    plan.statements += [f"GRANT SELECT ON {t} TO {r}" for t in _existing(conn, READ_TABLES)]
    plan.statements += [f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {r}" for t in _existing(conn, DATA_TABLES)]
    return plan


def apply(conn: psycopg.Connection[Any], plan: GrantPlan) -> GrantPlan:
    with conn.transaction():
        for stmt in plan.statements:
            conn.execute(stmt)
    return plan
