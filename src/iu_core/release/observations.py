"""IU Core's own observations of a run, added to the framework's (iu_core.framework.observe).

The project's facts (migrations/project.py) name `observe` here: in each
observation, the reference rows (dot_config keys and their values, event types,
routes; inventory classes config / event_type / route), the command catalog and
every gate's effective state (iu_core.release.preflight.gate_states).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .preflight import gate_states

if TYPE_CHECKING:
    import psycopg

    from ..framework.observe import State

# The reference rows: inventory classes config / event_type / route, and the catalog.
_CONFIG_SQL = "SELECT key, value FROM public.dot_config"
_EVENT_TYPES_SQL = "SELECT event_domain || '.' || event_type FROM public.event_type_registry"
_ROUTES_SQL = "SELECT route_code FROM public.iu_outbound_route"
_CATALOG_SQL = ("SELECT command_name, category, mutating, reversible, target_functions"
                " FROM public.dot_iu_command_catalog")
CATALOG_TABLE = "public.dot_iu_command_catalog"


def observe(conn: psycopg.Connection[Any], st: State, tables: Mapping[str, str]) -> None:
    """Add IU Core's reference rows, command catalog and gates to `st`."""
    if "public.dot_config" in tables:
        st.config = {k: v for k, v in conn.execute(_CONFIG_SQL)}
        st.objects["config"] = {k: hashlib.md5(v.encode()).hexdigest() for k, v in st.config.items()}
    if "public.event_type_registry" in tables:
        st.objects["event_type"] = {r[0]: "" for r in conn.execute(_EVENT_TYPES_SQL)}
    if "public.iu_outbound_route" in tables:
        st.objects["route"] = {r[0]: "" for r in conn.execute(_ROUTES_SQL)}
    if CATALOG_TABLE in tables:
        st.catalog = {r[0]: {"command_name": r[0], "category": r[1], "mutating": r[2], "reversible": r[3],
                             "target_functions": list(r[4] or [])} for r in conn.execute(_CATALOG_SQL)}
    st.gates, st.gates_source = gate_states(conn, st.config if "public.dot_config" in tables else None,
                                            have_classes="public.iu_gate_class" in tables)
