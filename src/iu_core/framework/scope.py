"""Which catalog objects are IU Core's: the one rule inventory, drift, preflight,
adopt and the catalog fingerprint share.

Production is Directus's `directus` database: IU Core lives in `public` beside
Directus's own tables, sequences, triggers, views and functions (DESIGN §7a).
An object is IU Core's, and so watched, when it is

1. **declared**: named by any revision of the chain (`inventory = {"adds": …}`
   in migrations/versions/*.py; a function by its name, whatever its
   signature, so a wrong signature shows as drift), or
2. **in an IU Core schema as a whole**: every schema the declarations use
   except the one shared with Directus (`public`); for this chain that is
   `cutter_governance`, or
3. **IU-Core-named**: its name is one of IU Core's stems (`iu_`, `dot_`),
   optionally after one kind prefix (`fn_`, `v_`, `mv_`, `trg_`, `idx_`,
   `ix_`, `seq_`): `fn_iu_…`, `fn_dot_…`, `iu_…`, `dot_iu_…`, `v_iu_…`,
   `v_dot_iu_…`. The stems and prefixes are the ones the chain's own names
   use (a test holds the rule to the declarations). The declared names
   outside the rule (`event_outbox`, `event_type_registry`,
   `information_unit`, `fn_event_outbox_type_validate`) are IU Core's by
   declaration only.

Around them: a trigger is IU Core's when its table is, or when its name is
IU-Core-named; a sequence when a table of IU Core's owns it (serial /
identity) or its name is; an index or constraint when its table is. The
rows of IU Core's reference tables (dot_config keys, event types, routes)
are IU Core's by construction.

Everything else (Directus's `directus_*` objects, other applications'
objects, other schemas, objects owned by extensions) is never drift, never
in the fingerprint and never counted. An IU-Core-named object that the chain
does not declare IS drift, unless a DBA acknowledged it by name
(iu_core.release.acknowledged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .declarations import declared_delta
from .layout import script_directory

# The schema IU Core shares with Directus: only declared or IU-Core-named
# objects in it are ours.
SHARED_SCHEMAS = ("public",)
STEMS = ("iu", "dot")
KIND_PREFIXES = ("fn", "v", "mv", "trg", "idx", "ix", "seq")
NAME_PATTERN = "^(?:(?:" + "|".join(KIND_PREFIXES) + ")_)?(?:" + "|".join(STEMS) + ")_"
_NAME_RX = re.compile(NAME_PATTERN)


def iu_named(name: str) -> bool:
    """True for an unqualified object name that follows IU Core's naming."""
    return _NAME_RX.match(name) is not None


@dataclass(frozen=True)
class Scope:
    """The declarations of a chain, in the shape the catalog queries take."""

    schemas: tuple[str, ...]
    whole_schemas: tuple[str, ...]
    relations: frozenset[str] = frozenset()  # schema.name of declared tables and views
    functions: frozenset[str] = frozenset()  # schema.name of declared functions
    # (inventory class, name) → the revision that declares it, for "of a later revision" messages
    declared_by: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of(cls, project: Path) -> Scope:
        """The scope of a project's chain, from every revision's declaration."""
        script = script_directory(project)
        declared_by: dict[tuple[str, str], str] = {}
        for rev in reversed(list(script.walk_revisions())):  # base → head: first declaration wins
            adds, _ = declared_delta(rev.module)
            for cls_name, names in adds.items():
                for name in names:
                    declared_by.setdefault((cls_name, name), rev.revision)
        relations = {n for (c, n) in declared_by if c in ("table", "view")}
        functions = {n.split("(", 1)[0] for (c, n) in declared_by if c == "function"}
        used = {n.split(".", 1)[0] for n in relations | functions}
        schemas = tuple(sorted(used | set(SHARED_SCHEMAS)))
        return cls(
            schemas=schemas,
            whole_schemas=tuple(s for s in schemas if s not in SHARED_SCHEMAS),
            relations=frozenset(relations),
            functions=frozenset(functions),
            declared_by=declared_by,
        )

    @classmethod
    def everything(cls, schemas: tuple[str, ...]) -> Scope:
        """Every object of these schemas (no Directus filter): what the scope is tested against."""
        return cls(schemas=schemas, whole_schemas=schemas)

    def params(self) -> dict[str, Any]:
        """Bind parameters of OURS_CTE (and of iu_named_sql)."""
        return {
            "scope_schemas": list(self.schemas),
            "scope_whole": list(self.whole_schemas),
            "scope_relations": sorted(self.relations),
            "scope_relation_names": sorted({r.split(".", 1)[1] for r in self.relations}),
            "scope_functions": sorted(self.functions),
            "scope_function_names": sorted({f.split(".", 1)[1] for f in self.functions}),
            "scope_pattern": NAME_PATTERN,
            **{f"scope_stem_{i}": f"{stem}_" for i, stem in enumerate(STEMS)},
        }

    def owns_name(self, cls: str, name: str) -> bool:
        """Whether an inventory name (schema.name, schema.fn(args), schema.table.trigger) is in scope
        by declaration, schema or name (a trigger on an IU Core table cannot be told from
        its name alone: the catalog query decides that)."""
        if cls in ("config", "event_type", "route"):
            return True
        schema, _, rest = name.partition(".")
        if schema not in self.schemas:
            return False
        if schema in self.whole_schemas:
            return True
        if cls in ("table", "view"):
            return name in self.relations or iu_named(rest)
        if cls == "function":
            return name.split("(", 1)[0] in self.functions or iu_named(rest.split("(", 1)[0])
        if cls == "trigger":
            table, _, trigger = rest.rpartition(".")
            return f"{schema}.{table}" in self.relations or iu_named(table) or iu_named(trigger)
        return False


def iu_named_sql(column: str) -> str:
    """SQL: COLUMN (an object name) follows IU Core's naming (binds Scope.params()).

    Every such name holds "<stem>_", so a strpos for each stem rejects a foreign
    name before the regular expression runs: on Directus's catalog that is
    thousands of names per query, and the expression costs a microsecond each
    (bench row 8: a third of the inventory's time among 10,000 foreign objects).
    """
    cheap = " OR ".join(f"strpos({column}, %(scope_stem_{i})s) > 0" for i in range(len(STEMS)))
    return f"(({cheap}) AND {column} ~ %(scope_pattern)s)"


# Common table expressions selecting IU Core's objects; queries that use them
# start `WITH` + OURS_CTE and bind Scope.params().
#   ns      the schemas looked at, and whether each is IU Core's as a whole
#   our_tab tables, views, materialized views, foreign tables
#   our_rel our_tab plus the sequences they own or that carry an IU Core name
#   our_fn  functions and procedures
#   our_trg user triggers
# Each tests the cheap conditions first (the schema, a name compare, a strpos)
# and leaves what costs (a concatenation, a regular expression, a lookup) to
# the few candidates: on Directus's database every query passes thousands of
# foreign objects (bench row 8).
OURS_CTE = f"""
ns AS (
  SELECT oid, nspname, nspname = ANY(%(scope_whole)s) AS whole
    FROM pg_namespace WHERE nspname = ANY(%(scope_schemas)s)
), ext AS (  -- objects owned by an extension are the extension's (an index scan, not all of pg_depend)
  SELECT objid FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
), our_tab AS (
  SELECT c.oid FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.oid NOT IN (SELECT objid FROM ext)
     AND (ns.whole OR (c.relname = ANY(%(scope_relation_names)s::name[])
                       AND ns.nspname || '.' || c.relname = ANY(%(scope_relations)s))
          OR {iu_named_sql("c.relname")})
), our_rel AS (
  SELECT oid FROM our_tab
  UNION
  SELECT c.oid FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
   WHERE c.relkind = 'S' AND c.oid NOT IN (SELECT objid FROM ext)
     AND (ns.whole OR {iu_named_sql("c.relname")})
  UNION  -- the sequences our tables own, looked up from the tables (pg_depend's reference index)
  SELECT c.oid FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN ns ON ns.oid = c.relnamespace
   WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM our_tab)
     AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
     AND c.relkind = 'S' AND c.oid NOT IN (SELECT objid FROM ext)
), our_fn AS MATERIALIZED (  -- once, hashed: not again for every function of the database
  SELECT p.oid FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
   WHERE p.oid NOT IN (SELECT objid FROM ext)
     AND (ns.whole OR (p.proname = ANY(%(scope_function_names)s::name[])
                       AND ns.nspname || '.' || p.proname = ANY(%(scope_functions)s))
          OR {iu_named_sql("p.proname")})
), our_trg AS MATERIALIZED (
  SELECT t.oid FROM pg_trigger t
   WHERE NOT t.tgisinternal
     AND (t.tgrelid IN (SELECT oid FROM our_tab) OR {iu_named_sql("t.tgname")})
     -- its table in a schema we look at: a lookup for the few candidates, not a join of every relation
     AND (SELECT c.relnamespace FROM pg_class c WHERE c.oid = t.tgrelid) IN (SELECT oid FROM ns)
)"""


def scope_of(project: Path | None = None) -> Scope:
    """The scope of `project` (default: the project found from the working directory)."""
    from ..config import find_project_root

    return Scope.of(project or find_project_root())
