"""Which catalog objects are the project's: the one rule inventory, drift, preflight,
adopt and the catalog fingerprint share.

A project may share its database with another application (IU Core lives in
Directus's `public`, DESIGN §7a). An object is the project's, and so watched,
when it is

1. **declared**: named by any revision of the chain (`inventory = {"adds": …}`
   in migrations/versions/*.py; a function by its name, whatever its
   signature, so a wrong signature shows as drift), or
2. **in one of the project's schemas as a whole**: every schema the
   declarations use except the ones the project's facts call shared
   (iu_core.framework.facts), or
3. **project-named**: its name follows the naming its facts give (one of the
   stems, optionally after one kind prefix).

Around them: a trigger is the project's when its table is, or when its name
is project-named; a sequence when a table of the project's owns it (serial /
identity) or its name is; an index or constraint when its table is. The rows
of the project's reference tables are the project's by construction.

Everything else (the other application's objects, other schemas, objects
owned by extensions) is never drift, never in the fingerprint and never
counted. A project-named object that the chain does not declare IS drift,
unless a DBA acknowledged it by name (iu_core.release.acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import find_project_root
from .declarations import declared_delta
from .facts import ProjectFacts, load
from .layout import script_directory


@dataclass(frozen=True)
class Scope:
    """The declarations of a chain, in the shape the catalog queries take."""

    schemas: tuple[str, ...]
    whole_schemas: tuple[str, ...]
    relations: frozenset[str] = frozenset()  # schema.name of declared tables and views
    functions: frozenset[str] = frozenset()  # schema.name of declared functions
    # (inventory class, name) → the revision that declares it, for "of a later revision" messages
    declared_by: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, hash=False)
    # the project's shared schemas, naming, reference tables and own observations
    facts: ProjectFacts = field(default_factory=ProjectFacts, hash=False)

    @classmethod
    def of(cls, project: Path) -> Scope:
        """The scope of a project's chain, from every revision's declaration and the project's facts."""
        facts = load(project)
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
        schemas = tuple(sorted(used | set(facts.shared_schemas)))
        return cls(
            schemas=schemas,
            whole_schemas=tuple(s for s in schemas if s not in facts.shared_schemas),
            relations=frozenset(relations),
            functions=frozenset(functions),
            declared_by=declared_by,
            facts=facts,
        )

    @classmethod
    def everything(cls, schemas: tuple[str, ...], facts: ProjectFacts | None = None) -> Scope:
        """Every object of these schemas (no Directus filter): what the scope is tested against."""
        return cls(schemas=schemas, whole_schemas=schemas, facts=facts or ProjectFacts())

    def params(self) -> dict[str, Any]:
        """Bind parameters of OURS_CTE (and of named_sql)."""
        ranges = self.facts.name_ranges()
        return {
            "scope_schemas": list(self.schemas),
            "scope_whole": list(self.whole_schemas),
            "scope_relations": sorted(self.relations),
            "scope_relation_names": sorted({r.split(".", 1)[1] for r in self.relations}),
            "scope_functions": sorted(self.functions),
            "scope_function_names": sorted({f.split(".", 1)[1] for f in self.functions}),
            "scope_pattern": self.facts.name_pattern,
            "scope_name_from": [lo for lo, _ in ranges],
            "scope_name_to": [hi for _, hi in ranges],
            # LIKE's wildcard `_` escaped: the stem and its underscore, anywhere in the name
            "scope_stems": [f"%{stem}\\_%" for stem in self.facts.name_stems],
        }

    def owns_name(self, cls: str, name: str) -> bool:
        """Whether an inventory name (schema.name, schema.fn(args), schema.table.trigger) is in scope
        by declaration, schema or name (a trigger on a table of the project's cannot be told from
        its name alone: the catalog query decides that)."""
        if cls in ("config", "event_type", "route"):
            return True
        schema, _, rest = name.partition(".")
        if schema not in self.schemas:
            return False
        if schema in self.whole_schemas:
            return True
        if cls in ("table", "view"):
            return name in self.relations or self.facts.named(rest)
        if cls == "function":
            return name.split("(", 1)[0] in self.functions or self.facts.named(rest.split("(", 1)[0])
        if cls == "trigger":
            table, _, trigger = rest.rpartition(".")
            return f"{schema}.{table}" in self.relations or self.facts.named(table) or self.facts.named(trigger)
        return False


def named_sql(column: str) -> str:
    """SQL: COLUMN (an object name) follows the project's naming (binds Scope.params()).

    Every such name holds "<stem>_", so a LIKE for each stem rejects a foreign
    name before the regular expression runs. It matters where every row is
    read (pg_trigger, which has no index by name: on Directus's catalog
    thousands of names, the expression a microsecond each); elsewhere the
    candidates come from the name indexes (Facts.name_ranges) and this is the
    exact test on the few. No stems: no name is the project's by its name alone.
    """
    return f"({column} LIKE ANY(%(scope_stems)s::text[]) AND {column} ~ %(scope_pattern)s)"


# Common table expressions selecting the project's objects; queries that use them
# start `WITH` + OURS_CTE and bind Scope.params().
#   ns       the schemas looked at, and whether each is the project's as a whole
#   our_tab  tables, views, materialized views, foreign tables
#   our_rel  our_tab plus the sequences they own or that carry a project name
#   our_fn   functions and procedures
#   our_trg  user triggers
#   our_type domains, enums, composite, range and multirange types
# On Directus's database a shared schema holds thousands of foreign objects
# (bench row 8), so candidates are found through the catalogs' indexes, never by
# reading every row of pg_class or pg_proc: a declared name by an equality on the
# name index, a project name by a range of it per allowed prefix, an object of a
# project schema by its dependency on the schema (pg_depend's reference index;
# PostgreSQL records one for every relation, function and type a schema holds).
# The full conditions are then tested on the few candidates. Each range is read
# in a LATERAL subquery behind OFFSET 0, so that the planner, which cannot know
# how few names a bound range holds, cannot turn it into a read of the whole
# catalog with the naming as a filter. pg_trigger has no index by name: its rows
# are read, cheap tests first (a trigger is few per table).
OURS_CTE = f"""
ns AS (
  SELECT oid, nspname, nspname = ANY(%(scope_whole)s) AS whole
    FROM pg_namespace WHERE nspname = ANY(%(scope_schemas)s)
), ext AS (  -- objects owned by an extension are the extension's (an index scan, not all of pg_depend)
  SELECT objid FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
), named_range AS (  -- the names the naming allows, as ranges of the name indexes (C order)
  SELECT lo::name AS lo, hi::name AS hi
    FROM unnest(%(scope_name_from)s::text[], %(scope_name_to)s::text[]) AS r(lo, hi)
), in_whole AS MATERIALIZED (  -- what the project's own schemas hold
  SELECT d.classid, d.objid FROM ns JOIN pg_depend d
      ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ns.oid AND d.refobjsubid = 0
   WHERE ns.whole
), relations AS MATERIALIZED (  -- our_tab and our_rel's own candidates, with their kind
  SELECT c.oid, c.relkind FROM in_whole w JOIN pg_class c ON c.oid = w.objid
   WHERE w.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  UNION
  SELECT c.oid, c.relkind FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
   WHERE c.relname = ANY(%(scope_relation_names)s::name[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     AND ns.nspname || '.' || c.relname = ANY(%(scope_relations)s)
  UNION
  SELECT c.oid, c.relkind
    FROM named_range r, LATERAL (SELECT * FROM pg_class WHERE relname >= r.lo AND relname < r.hi OFFSET 0) c
    JOIN ns ON ns.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {named_sql("c.relname")}
), our_tab AS (
  SELECT oid FROM relations WHERE relkind <> 'S' AND oid NOT IN (SELECT objid FROM ext)
), our_rel AS (
  SELECT oid FROM relations WHERE oid NOT IN (SELECT objid FROM ext)
  UNION  -- the sequences our tables own, looked up from the tables (pg_depend's reference index)
  SELECT c.oid FROM our_tab o JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = o.oid
    JOIN pg_class c ON c.oid = d.objid JOIN ns ON ns.oid = c.relnamespace
   WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
     AND c.relkind = 'S' AND c.oid NOT IN (SELECT objid FROM ext)
), our_fn AS MATERIALIZED (
  SELECT p.oid FROM in_whole w JOIN pg_proc p ON p.oid = w.objid
   WHERE w.classid = 'pg_proc'::regclass AND p.oid NOT IN (SELECT objid FROM ext)
  UNION
  SELECT p.oid FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
   WHERE p.proname = ANY(%(scope_function_names)s::name[])
     AND ns.nspname || '.' || p.proname = ANY(%(scope_functions)s) AND p.oid NOT IN (SELECT objid FROM ext)
  UNION
  SELECT p.oid FROM named_range r, LATERAL (SELECT * FROM pg_proc WHERE proname >= r.lo AND proname < r.hi OFFSET 0) p
    JOIN ns ON ns.oid = p.pronamespace
   WHERE {named_sql("p.proname")} AND p.oid NOT IN (SELECT objid FROM ext)
), our_trg AS MATERIALIZED (
  SELECT t.oid FROM pg_trigger t
   WHERE NOT t.tgisinternal
     AND (t.tgrelid IN (SELECT oid FROM our_tab) OR {named_sql("t.tgname")})
     -- its table in a schema we look at: a lookup for the few candidates, not a join of every relation
     AND (SELECT c.relnamespace FROM pg_class c WHERE c.oid = t.tgrelid) IN (SELECT oid FROM ns)
), our_type AS MATERIALIZED (
  SELECT t.oid FROM (
      SELECT t.oid FROM in_whole w JOIN pg_type t ON t.oid = w.objid WHERE w.classid = 'pg_type'::regclass
      UNION
      SELECT t.oid FROM named_range r, LATERAL (SELECT * FROM pg_type WHERE typname >= r.lo AND typname < r.hi OFFSET 0) t
        JOIN ns ON ns.oid = t.typnamespace
       WHERE {named_sql("t.typname")}
    ) cand JOIN pg_type t ON t.oid = cand.oid
   WHERE t.typtype IN ('e', 'd', 'c', 'r', 'm') AND t.oid NOT IN (SELECT objid FROM ext)
     -- not a table's row type
     AND (t.typtype <> 'c' OR coalesce((SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid), 'c') = 'c')
)"""


def scope_of(project: Path | None = None) -> Scope:
    """The scope of `project` (default: the project found from the working directory)."""
    return Scope.of(project or find_project_root())
