"""The DOT inventory: the live IU Core objects in the seeds' 7 classes.

Expected objects are not a second hand-kept list: each revision file declares
what it adds and removes (`inventory = {"adds": {...}, "removes": {...}}`),
and the expectation at a revision is the fold of those declarations along the
chain. `iucore inventory --check` compares it with the live database and names
every drifting object.

Only IU Core's objects are looked at (iu_core.framework.scope): on Directus's database
its `directus_*` tables, sequences, triggers, views and functions, and other
schemas, are never drift and never counted. An IU-Core-named object the chain
does not declare is drift unless acknowledged (iu_core.release.acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, InventoryDrift
from ..framework.declarations import CLASSES, Inventory, declared_delta, empty
from ..framework.fingerprint import current_heads
from ..framework.layout import script_directory
from ..framework.scope import OURS_CTE, Scope, scope_of
from .acknowledged import applicable, load

if TYPE_CHECKING:
    import psycopg

    from .acknowledged import Acknowledgement


# Names per class:
#   table/view  schema.name                  public.dot_config
#   function    schema.name(argtypes)        public.fn_iu_observe(text, integer)
#   trigger     schema.table.trigger         public.dot_config.trg_dot_config_touch
#   config      dot_config key               iu_core.composer_enabled
#   event_type  domain.type                  iu.piece_reordered
#   route       route_code                   iu_outbound_default
# Only IU Core's objects (iu_core.framework.scope): Directus's, and other schemas', are not looked at.
_LIVE_SQL = "WITH " + OURS_CTE + """
SELECT CASE WHEN c.relkind IN ('r', 'p') THEN 'table' ELSE 'view' END, ns.nspname || '.' || c.relname
  FROM our_tab o JOIN pg_class c ON c.oid = o.oid JOIN ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'function', ns.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
  FROM our_fn o JOIN pg_proc p ON p.oid = o.oid JOIN ns ON ns.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'p')
UNION ALL
SELECT 'trigger', ns.nspname || '.' || c.relname || '.' || t.tgname
  FROM our_trg o JOIN pg_trigger t ON t.oid = o.oid JOIN pg_class c ON c.oid = t.tgrelid
  JOIN ns ON ns.oid = c.relnamespace
"""
_DATA_SQL = {
    "config": "SELECT key FROM public.dot_config",
    "event_type": "SELECT event_domain || '.' || event_type FROM public.event_type_registry",
    "route": "SELECT route_code FROM public.iu_outbound_route",
}

def live(conn: psycopg.Connection[Any], scope: Scope | None = None) -> Inventory:
    """IU Core's live objects per class (scope: the project's, by default the working directory's)."""
    inv = empty()
    for cls, name in conn.execute(_LIVE_SQL, (scope or scope_of()).params()):
        inv[cls].add(name)
    for cls, sql in _DATA_SQL.items():
        table = sql.rsplit(" ", 1)[1]
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,):
            inv[cls] = {r[0] for r in conn.execute(sql)}
    return inv


def expected(project: Path, revision: str | None) -> Inventory:
    """The inventory the chain declares at `revision` (None: empty database)."""
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
    # The acknowledgements that apply on this database, by (class, name).
    acknowledged: dict[tuple[str, str], Acknowledgement] = field(default_factory=dict)
    declared_by: dict[tuple[str, str], str] = field(default_factory=dict)
    classes: list[dict[str, Any]] = field(default_factory=list)

    def extras(self, cls: str) -> list[str]:
        return sorted(self.present[cls] - self.expected[cls])

    def missing(self, cls: str) -> list[str]:
        return sorted(self.expected[cls] - self.present[cls])

    def unacknowledged(self, cls: str) -> list[str]:
        return [n for n in self.extras(cls) if (cls, n) not in self.acknowledged]

    @property
    def drift(self) -> list[str]:
        """Each missing object, and each extra one no DBA acknowledged."""
        out = []
        for cls in CLASSES:
            out += [f"missing {cls} {n}{self.missing_note(cls, n)}" for n in self.missing(cls)]
            out += [f"extra {cls} {n}{self._extra_note(cls, n)}" for n in self.unacknowledged(cls)]
        return out

    def missing_note(self, cls: str, name: str) -> str:
        if cls != "function":
            return ""
        base = name.split("(", 1)[0] + "("
        other = [n for n in self.extras(cls) if n.startswith(base)]
        return f" (present with another signature: {', '.join(other)})" if other else ""

    def _extra_note(self, cls: str, name: str) -> str:
        rev = self.declared_by.get((cls, name))
        if rev is not None:
            return f" (declared by revision {rev})"
        return " (IU-Core-named, not in the chain, not acknowledged)"

    @property
    def acknowledged_extras(self) -> list[Acknowledgement]:
        return [self.acknowledged[(c, n)] for c in CLASSES for n in self.extras(c) if (c, n) in self.acknowledged]

    @property
    def stale_acknowledgements(self) -> list[Acknowledgement]:
        """Acknowledged objects that are not here (removed, or the name is spelled differently)."""
        return [a for (c, n), a in sorted(self.acknowledged.items()) if n not in self.present.get(c, set())]

    @property
    def ok(self) -> bool:
        return not self.drift

    def raise_for_outcome(self) -> None:
        """InventoryDrift (exit 4) naming the drift (the first ten objects), unless there is none."""
        drift = self.drift
        if drift:
            raise InventoryDrift(
                f"inventory drift at {self.revision}: {len(drift)} object(s): " + "; ".join(drift[:10])
                + (" …" if len(drift) > 10 else ""),
                drift=drift,
            )

    def extras_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for cls in CLASSES:
            for n in self.extras(cls):
                ack = self.acknowledged.get((cls, n))
                item: dict[str, Any] = {"class": cls, "name": n, "acknowledged": ack is not None,
                                        "declared_by": self.declared_by.get((cls, n))}
                if ack is not None:
                    item.update(reason=ack.reason, by=ack.by)
                out.append(item)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "ok": self.ok,
            "expected_total": sum(len(v) for v in self.expected.values()),
            "present_total": sum(len(v) for v in self.present.values()),
            "classes": self.classes,
            "drift": self.drift,
            "extras": self.extras_json(),
            "acknowledged": [a.to_json() for a in self.acknowledged_extras],
            "stale_acknowledgements": [a.to_json() for a in self.stale_acknowledgements],
        }


def compare(conn: psycopg.Connection[Any], project: Path, revision: str | None) -> Report:
    """The live inventory against what the chain declares at `revision`, with the
    project's acknowledgements for this database."""
    scope = scope_of(project)
    acks = applicable(load(project), conn.info.dbname)
    exp, present = expected(project, revision), live(conn, scope)
    rep = Report(revision=revision, expected=exp, present=present, acknowledged=acks,
                 declared_by=scope.declared_by)
    for cls in CLASSES:
        rep.classes.append(
            {
                "class": cls,
                "expected": len(exp[cls]),
                "present": len(present[cls]),
                "missing": rep.missing(cls),
                "extra": rep.unacknowledged(cls),
                "acknowledged": [n for n in rep.extras(cls) if (cls, n) in acks],
                "ok": not rep.missing(cls) and not rep.unacknowledged(cls),
            }
        )
    return rep


def report(conn: psycopg.Connection[Any], project: Path) -> Report:
    """The inventory at the database's applied revision."""
    heads = current_heads(conn)
    if len(heads) > 1:
        raise BadInput(f"database has several heads {heads}; inventory needs one revision")
    return compare(conn, project, heads[0] if heads else None)
