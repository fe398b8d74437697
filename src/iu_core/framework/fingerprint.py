"""A catalog snapshot of the project's objects and its fingerprint.

The snapshot lists every object of the project (iu_core.framework.scope: what
the chain declares, the project's own schemas, and anything project-named;
never another application's objects or other schemas) with its definition
(tables with columns, constraints, indexes, views, functions, triggers,
sequences, types, grants, comments), the rows of the reference tables that
configure the database (the project's facts, iu_core.framework.facts) and
alembic_version. Two databases with the same fingerprint are the same to
a DBA; a rehearsal must leave it unchanged, an upgrade→downgrade must restore it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .scope import OURS_CTE, Scope, scope_of

if TYPE_CHECKING:
    import psycopg

_CATALOG_SQL = "WITH " + OURS_CTE + """
-- text, not name: the first branch sets the columns' type, and a name holds 63 bytes
SELECT 'schema', nspname::text, nspname::text FROM ns
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'matview' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign_table' END,
       ns.nspname || '.' || c.relname,
       concat_ws(E'\n',
         CASE WHEN c.relkind IN ('v','m') THEN pg_get_viewdef(c.oid) END,
         (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                   || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                   || coalesce(' identity:' || nullif(a.attidentity::text, ''), ''),
                 ', ' ORDER BY a.attnum)
            FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         'acl:' || coalesce(c.relacl, acldefault('r', c.relowner))::text,
         'comment:' || obj_description(c.oid, 'pg_class'))
  FROM our_rel o JOIN pg_class c ON c.oid = o.oid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'index', ns.nspname || '.' || i.relname, pg_get_indexdef(i.oid)
  FROM our_tab o JOIN pg_index x ON x.indrelid = o.oid JOIN pg_class i ON i.oid = x.indexrelid
  JOIN ns ON ns.oid = i.relnamespace
UNION ALL
SELECT 'constraint', ns.nspname || '.' || t.relname || '.' || co.conname, pg_get_constraintdef(co.oid)
  FROM our_tab o JOIN pg_constraint co ON co.conrelid = o.oid JOIN pg_class t ON t.oid = co.conrelid
  JOIN ns ON ns.oid = t.relnamespace
UNION ALL
SELECT 'function', ns.nspname || '.' || p.oid::regprocedure::text,
       pg_get_functiondef(p.oid) || E'\nacl:' || coalesce(p.proacl, acldefault('f', p.proowner))::text
         || E'\ncomment:' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM our_fn o JOIN pg_proc p ON p.oid = o.oid JOIN ns ON ns.oid = p.pronamespace
 WHERE p.prokind IN ('f','p','w')
UNION ALL
SELECT 'trigger', ns.nspname || '.' || c.relname || '.' || tg.tgname,
       pg_get_triggerdef(tg.oid) || ' enabled=' || tg.tgenabled::text
  FROM our_trg o JOIN pg_trigger tg ON tg.oid = o.oid JOIN pg_class c ON c.oid = tg.tgrelid
  JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'type', ns.nspname || '.' || t.typname, t.typtype::text || coalesce(':' ||
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '')
  FROM our_type o JOIN pg_type t ON t.oid = o.oid JOIN ns ON ns.oid = t.typnamespace
"""


@contextmanager
def fixed_search_path(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run under search_path = pg_catalog, pg_temp, then put the session's back.

    pg_get_viewdef, pg_get_functiondef and format_type write a name without
    its schema when the schema is on the session's path: a catalog read under
    one fixed path reads the same from every connection (iucore's own, a
    psql, a test's), so two fingerprints of one database are equal.
    """
    prev = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()
    conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)")
    try:
        yield
    finally:
        if prev is not None and conn.info.transaction_status != 3:  # not in a failed transaction
            conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (prev[0],))


def snapshot(conn: psycopg.Connection[Any], *, with_counts: bool = False, project: Path | None = None,
             scope: Scope | None = None) -> dict[str, dict[str, str]]:
    """{kind: {name: definition}} of IU Core's objects, plus config rows and alembic_version.

    with_counts adds the EXACT row count of every IU Core table: the proof, for
    a self-test or a rehearsed data script, that nothing persisted. It reads
    every row (on tables of millions of rows, seconds; and under concurrent
    writers the counts move for reasons of their own): for figures to show,
    use row_counts, which reads at most a bounded number of rows per table
    and says whether each figure is exact or the planner's estimate.

    The scope is `project`'s chain (default: the project found from the
    working directory), or `scope` when given.
    """
    from psycopg import sql

    snap: dict[str, dict[str, str]] = {}
    scope = scope or scope_of(project)
    with fixed_search_path(conn):  # definitions render alike from any session
        for kind, name, definition in conn.execute(_CATALOG_SQL, scope.params()):
            snap.setdefault(kind, {})[name] = definition or ""
    present = {name for name in snap.get("table", {})}
    for table, cols in scope.facts.reference_tables.items():
        if table not in present:
            continue
        rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY 1, 2").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(*table.split(".", 1)))).fetchall()
        snap.setdefault("rows", {})[table] = json.dumps(
            [list(r) for r in rows], default=str, sort_keys=True
        )
    if with_counts:  # a proof, so every row is counted (row_counts with a limit no table reaches)
        for table, (n, _) in row_counts(conn, present, limit=COUNT_EVERY_ROW).items():
            snap.setdefault("count", {})[table] = str(n)
    snap["alembic_version"] = {"iucore.alembic_version": ",".join(current_heads(conn))}
    return snap


def current_heads(conn: psycopg.Connection[Any]) -> list[str]:
    exists = conn.execute("SELECT to_regclass('iucore.alembic_version')").fetchone()
    if not exists or exists[0] is None:
        return []
    return sorted(r[0] for r in conn.execute("SELECT version_num FROM iucore.alembic_version"))


def fingerprint(snap: dict[str, dict[str, str]]) -> str:
    blob = json.dumps(snap, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def diff(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """Human lines naming each object added, removed or changed."""
    out: list[str] = []
    for kind in sorted(set(before) | set(after)):
        b, a = before.get(kind, {}), after.get(kind, {})
        for name in sorted(set(b) | set(a)):
            if name not in a:
                out.append(f"- {kind} {name}")
            elif name not in b:
                out.append(f"+ {kind} {name}")
            elif a[name] != b[name]:
                out.append(f"~ {kind} {name}")
    return out



# What lets SQL commit outside the transaction it runs in: another session it
# opens itself (the autonomous-transaction patterns: dblink, postgres_fdw,
# pg_background) or an untrusted language's own client library. Without one of
# them, a transaction that ends in ROLLBACK cannot have written a row that stays.
AUTONOMOUS_EXTENSIONS = ("dblink", "postgres_fdw", "pg_background")
_CHANNELS_SQL = """
SELECT 'extension ' || extname FROM pg_catalog.pg_extension WHERE extname = ANY(%s)
UNION ALL
SELECT 'language ' || lanname FROM pg_catalog.pg_language WHERE lanispl AND NOT lanpltrusted
ORDER BY 1"""


def commit_channels(conn: psycopg.Connection[Any]) -> list[str]:
    """The installed extensions and untrusted languages through which SQL can
    commit in another session ("extension dblink", "language plpython3u")."""
    return [r[0] for r in conn.execute(_CHANNELS_SQL, (list(AUTONOMOUS_EXTENSIONS),))]


def persisted(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]],
              channels: list[str]) -> tuple[list[str], list[str]]:
    """(what persisted, tables other sessions wrote meanwhile) between two
    snapshots taken with counts around work that was rolled back.

    A catalog difference always persisted (fail closed: nobody runs DDL beside
    a release). Data that moved (a table's row count, the rows of a reference
    table) is another session's commit when nothing of `channels` is installed:
    a rolled-back transaction cannot have made it, and production writes while
    a self-test runs. With a channel installed nobody can tell the two apart,
    so data that moved persisted too.
    """
    changed = diff(before, after)
    if channels:
        return changed, []
    data = [c for c in changed if c.startswith(("~ count ", "~ rows "))]
    others = sorted({c.split(" ", 2)[2] for c in data})
    return [c for c in changed if c not in data], others


# Up to this many rows a table is counted exactly (a bounded scan); above it the
# figure is the planner's estimate, and says so.
EXACT_COUNT_LIMIT = 100_000
# A limit no table reaches: every table counted exactly (the proofs that nothing persisted).
COUNT_EVERY_ROW = 2**62

# The planner's own row estimate (as the planner scales it, see
# estimate_rel_size): the tuple density pg_class recorded at the last
# VACUUM/ANALYZE times the pages the table has now, so a table that grew
# since is not reported at its old size. -1 when never measured.
_ESTIMATE_SQL = """
SELECT t, CASE WHEN c.reltuples < 0 THEN -1
               WHEN c.relpages = 0 THEN c.reltuples
               ELSE round(c.reltuples / c.relpages
                          * (pg_relation_size(c.oid) / current_setting('block_size')::bigint)) END
  FROM unnest(%s::text[]) AS t JOIN pg_class c ON c.oid = to_regclass(t)
"""


def row_counts(conn: psycopg.Connection[Any], tables: Iterable[str], *,
               limit: int = EXACT_COUNT_LIMIT) -> dict[str, tuple[int, str]]:
    """{table: (rows, method)} for tables named schema.name (absent tables are left out).

    method says what the figure is:
      "exact"     counted: the planner believed the table smaller than `limit`
                  (or had never measured it), and a scan that stops after
                  limit + 1 rows found at most `limit`;
      "estimate"  the planner's estimate (pg_class.reltuples scaled to the
                  table's current size), for a table above `limit`: no scan;
      "at_least"  the bounded scan found more than `limit` rows but the planner
                  has no usable estimate (never analyzed, or it believed the
                  table small): the figure is limit + 1, a lower bound.
    Two round trips whatever the number of tables, and never more than
    limit + 1 rows read per table. Inside a transaction the exact figures see
    the transaction's own writes (the estimate does not: it moves with
    VACUUM/ANALYZE). `limit=COUNT_EVERY_ROW` counts every row of every table.
    """
    from psycopg import sql

    names = sorted(set(tables))
    if not names:
        return {}
    est = {r[0]: float(r[1]) for r in conn.execute(_ESTIMATE_SQL, (names,))}
    out: dict[str, tuple[int, str]] = {}
    counted = [t for t in names if t in est and est[t] < limit]
    for t in names:
        if t in est and t not in counted:
            out[t] = (int(est[t]), "estimate")
    if counted:
        parts = [
            sql.SQL("SELECT {}::text, (SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) s)").format(
                sql.Literal(t), sql.Identifier(*t.split(".", 1)), sql.Literal(limit + 1))
            for t in counted
        ]
        for t, n in conn.execute(sql.SQL(" UNION ALL ").join(parts)):
            if n <= limit:
                out[t] = (int(n), "exact")
            elif est[t] > limit:  # grew past the limit since it was measured: the scaled estimate
                out[t] = (int(est[t]), "estimate")
            else:
                out[t] = (limit + 1, "at_least")
    return out
