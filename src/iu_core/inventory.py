"""The DOT inventory: the live IU Core objects in the seeds' 7 classes.

Expected objects are not a second hand-kept list: each revision file declares
what it adds and removes (`inventory = {"adds": {...}, "removes": {...}}`),
and the expectation at a revision is the fold of those declarations along the
chain. `iucore inventory --check` compares it with the live database and names
every drifting object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput

if TYPE_CHECKING:
    import psycopg

CLASSES = ("table", "view", "function", "trigger", "config", "event_type", "route")

# Names per class:
#   table/view  schema.name                  public.dot_config
#   function    schema.name(argtypes)        public.fn_iu_observe(text, integer)
#   trigger     schema.table.trigger         public.dot_config.trg_dot_config_touch
#   config      dot_config key               iu_core.composer_enabled
#   event_type  domain.type                  iu.piece_reordered
#   route       route_code                   iu_outbound_default
_LIVE_SQL = """
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e')
SELECT CASE WHEN c.relkind IN ('r', 'p') THEN 'table' ELSE 'view' END, ns.nspname || '.' || c.relname
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm') AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'function', ns.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'p') AND p.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'trigger', ns.nspname || '.' || c.relname || '.' || t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
 WHERE NOT t.tgisinternal
"""
_DATA_SQL = {
    "config": "SELECT key FROM public.dot_config",
    "event_type": "SELECT event_domain || '.' || event_type FROM public.event_type_registry",
    "route": "SELECT route_code FROM public.iu_outbound_route",
}
IU_SCHEMAS = ["public", "cutter_governance"]

Inventory = dict[str, set[str]]


def empty() -> Inventory:
    return {c: set() for c in CLASSES}


def live(conn: psycopg.Connection[Any]) -> Inventory:
    inv = empty()
    for cls, name in conn.execute(_LIVE_SQL, {"schemas": IU_SCHEMAS}):
        inv[cls].add(name)
    for cls, sql in _DATA_SQL.items():
        table = sql.rsplit(" ", 1)[1]
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,):
            inv[cls] = {r[0] for r in conn.execute(sql)}
    return inv


def declared_delta(module: Any) -> tuple[Inventory, Inventory]:
    """(adds, removes) of one revision module, validated."""
    decl = getattr(module, "inventory", None)
    name = getattr(module, "revision", "?")
    if not isinstance(decl, dict):
        raise BadInput(f"revision {name} declares no `inventory` (adds/removes per class)")
    adds, removes = empty(), empty()
    for part, target in (("adds", adds), ("removes", removes)):
        for cls, names in (decl.get(part) or {}).items():
            if cls not in CLASSES:
                raise BadInput(f"revision {name}: unknown inventory class {cls!r}; classes: {CLASSES}")
            target[cls] = set(names)
    return adds, removes


def expected(project: Path, revision: str | None) -> Inventory:
    """The inventory the chain declares at `revision` (None: empty database)."""
    from .migrate import script_directory

    inv = empty()
    if revision is None:
        return inv
    script = script_directory(project)
    for rev in reversed(list(script.iterate_revisions(revision, "base"))):
        adds, removes = declared_delta(rev.module)
        for cls in CLASSES:
            inv[cls] = (inv[cls] - removes[cls]) | adds[cls]
    return inv


@dataclass
class Report:
    revision: str | None
    expected: Inventory
    present: Inventory
    classes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drift(self) -> list[str]:
        out = []
        for cls in CLASSES:
            out += [f"missing {cls} {n}" for n in sorted(self.expected[cls] - self.present[cls])]
            out += [f"extra {cls} {n}" for n in sorted(self.present[cls] - self.expected[cls])]
        return out

    @property
    def ok(self) -> bool:
        return not self.drift

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "ok": self.ok,
            "expected_total": sum(len(v) for v in self.expected.values()),
            "present_total": sum(len(v) for v in self.present.values()),
            "classes": self.classes,
            "drift": self.drift,
        }


def report(conn: psycopg.Connection[Any], project: Path) -> Report:
    from .fingerprint import current_heads

    heads = current_heads(conn)
    if len(heads) > 1:
        raise BadInput(f"database has several heads {heads}; inventory needs one revision")
    rev = heads[0] if heads else None
    exp, present = expected(project, rev), live(conn)
    rep = Report(revision=rev, expected=exp, present=present)
    for cls in CLASSES:
        rep.classes.append(
            {
                "class": cls,
                "expected": len(exp[cls]),
                "present": len(present[cls]),
                "missing": sorted(exp[cls] - present[cls]),
                "extra": sorted(present[cls] - exp[cls]),
                "ok": exp[cls] == present[cls],
            }
        )
    return rep
