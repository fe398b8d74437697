"""Demo and proof data: where it may be written, and how to remove it again.

`iucore demo` and `iucore proof operator-runtime` write data (pieces, a
collection, memberships, composer events, ledger rows, gate transitions).
They are meant for the embedded server. Pointed at any other database they
refuse (exit 3, nothing written) unless told explicitly, with
`--yes-on-this-database NAME` naming the connected database.

What they wrote is removable by actor (seed 000 §8: "reversible by DELETE …
WHERE actor=…"): `iucore proof remove --written-by ACTOR…` deletes, in one
transaction, every row those actors wrote, and the route attempts and dead
letters that hang on their events; it refuses (and deletes nothing) when
another actor's rows depend on them. The route worker's own run record (a
`system.route_worker_run` event whose actor is the database user) is not an
actor's and stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, Failed, NotEmbedded, Refused
from .proof import DEFAULT_ACTOR as PROOF_ACTOR
from .proof import gate_actor_of

if TYPE_CHECKING:
    import psycopg

    from ..pg.target import Target

# The actors the proof and the demo write as (the proof's gate window has its own).
DEMO_ACTORS = ("iucore_demo", "runtime_290", PROOF_ACTOR, gate_actor_of(PROOF_ACTOR))

# (table, the rows of the actors), in an order the foreign keys allow.
_EVENTS = "SELECT e.event_id FROM public.event_outbox e WHERE e.actor = ANY(%(actors)s)"
DELETES: tuple[tuple[str, str], ...] = (
    ("public.iu_route_attempt", f"DELETE FROM public.iu_route_attempt WHERE event_id IN ({_EVENTS})"),
    ("public.iu_route_dead_letter", f"DELETE FROM public.iu_route_dead_letter WHERE event_id IN ({_EVENTS})"),
    ("public.event_outbox", "DELETE FROM public.event_outbox WHERE actor = ANY(%(actors)s)"),
    ("public.iu_collection_member", "DELETE FROM public.iu_collection_member WHERE added_by = ANY(%(actors)s)"),
    ("public.iu_auto_instance", "DELETE FROM public.iu_auto_instance WHERE actor = ANY(%(actors)s)"),
    ("public.iu_collection", "DELETE FROM public.iu_collection WHERE created_by = ANY(%(actors)s)"),
    ("public.information_unit", "DELETE FROM public.information_unit WHERE created_by = ANY(%(actors)s)"),
    ("public.iu_gate_transition", "DELETE FROM public.iu_gate_transition WHERE actor = ANY(%(actors)s)"),
    ("public.dot_iu_command_run", "DELETE FROM public.dot_iu_command_run WHERE actor = ANY(%(actors)s)"),
)
# Rows of OTHER actors that would go with (or block) the removal: refuse instead.
BLOCKERS: tuple[tuple[str, str], ...] = (
    ("public.iu_collection_member",
     """SELECT count(*) FROM public.iu_collection_member m
         WHERE NOT m.added_by = ANY(%(actors)s)
           AND (m.collection_id IN (SELECT collection_id FROM public.iu_collection WHERE created_by = ANY(%(actors)s))
                OR m.iu_id IN (SELECT iu_id FROM public.information_unit WHERE created_by = ANY(%(actors)s)))"""),
    ("public.iu_auto_instance",
     """SELECT count(*) FROM public.iu_auto_instance a
         WHERE NOT a.actor = ANY(%(actors)s)
           AND a.instance_collection_id IN (SELECT collection_id FROM public.iu_collection
                                             WHERE created_by = ANY(%(actors)s))"""),
)


def guard_writes(conn: psycopg.Connection[Any], target: Target, confirm: str | None, what: str) -> None:
    """Refuse to write demo/proof data anywhere but the embedded server, unless confirmed by name."""
    if target.embedded:
        return
    row = conn.execute("SELECT current_database()").fetchone()
    database = str(row[0]) if row else "?"
    if confirm is None:
        raise NotEmbedded(
            f"{what} writes demo data, and {target.display} is not the embedded server: refused, "
            f"nothing was written. To write into database {database!r} on purpose, pass "
            f"--yes-on-this-database {database}; remove it afterwards with "
            f"`iucore proof remove --written-by ACTOR` (see `iucore proof remove --help`)",
            database=database)
    if confirm != database:
        raise NotEmbedded(
            f"--yes-on-this-database {confirm!r} does not name the connected database {database!r}: "
            "refused, nothing was written", database=database)


@dataclass
class Removal:
    actors: list[str]
    database: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    statements: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"actors": self.actors, "database": self.database, "dry_run": self.dry_run,
                "deleted" if not self.dry_run else "would_delete": self.counts, "total": self.total,
                "sql": self.statements}


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def remove(conn: psycopg.Connection[Any], target: Target, actors: list[str], *, confirm: str | None = None,
           dry_run: bool = False) -> Removal:
    """Delete every row `actors` wrote (one transaction); dry_run counts and rolls back.

    `conn` must not be in autocommit: the deletes commit together or not at all.
    """
    import psycopg  # loaded on first use, as everywhere: `iucore --help` does not pay for it
    actors = sorted({a.strip() for a in actors if a and a.strip()})
    if not actors:
        raise BadInput("name the actor(s) whose rows to remove: --written-by ACTOR (e.g. --written-by "
                       f"{PROOF_ACTOR})")
    guard_writes(conn, target, confirm, "`proof remove`")
    row = conn.execute("SELECT current_database(), format('ARRAY[%%s]', string_agg(quote_literal(a), ', '))"
                       " FROM unnest(%s::text[]) AS a", (actors,)).fetchone()
    assert row is not None
    out = Removal(actors=actors, database=str(row[0]), dry_run=dry_run)
    shown = str(row[1])
    params = {"actors": actors}
    try:
        for table, sql in BLOCKERS:
            if _exists(conn, table) and _exists(conn, "public.information_unit"):
                n = conn.execute(sql, params).fetchone()
                if n and n[0]:
                    raise Refused(
                        f"{n[0]} row(s) of other actors in {table} depend on what {', '.join(actors)} "
                        "wrote (a piece or collection of theirs is used by someone else): nothing was "
                        "removed; remove those first or leave these rows", table=table)
        for table, sql in DELETES:
            if not _exists(conn, table):
                continue
            cur = conn.execute(sql, params)
            out.counts[table] = cur.rowcount
            out.statements.append(sql.replace("%(actors)s", shown) + ";")
    except psycopg.Error as exc:
        conn.rollback()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Failed(f"proof remove failed: {reason}; nothing was removed") from None
    except BaseException:
        conn.rollback()
        raise
    if dry_run:
        conn.rollback()
    else:
        conn.commit()
    return out
