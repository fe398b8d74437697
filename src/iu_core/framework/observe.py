"""What a run observes of the database before and after each revision, for its report.

Seed 002's appendix was written by hand after the apply: catalog 47→51 and its
new rows, the volatility of the new functions, the run table's 55 rows
(unchanged), "Schema 1,617,882 → 1,628,568 bytes", "No INSERT/UPDATE/DELETE on
any IU-data table (all Δ=0)". iucore records those figures while the run
happens, inside the revision's own transaction (so a rehearsal's figures are
the real ones, taken before its ROLLBACK), and keeps them in the audit row's
evidence under the key ``observed`` (see `evidence`); `iucore db report`
renders them. Nothing here is reconstructed afterwards.

One observation is a handful of catalog queries, whatever the number of
objects: IU Core's objects with a digest of their definition (iu_core.framework.scope,
never Directus's), every IU Core table's row count (fingerprint.row_counts:
exact below a threshold, the planner's estimate above it, and which), their
total size, this transaction's INSERT/UPDATE/DELETE counts per table
(pg_stat_xact_all_tables), and what the project's facts add (IU Core's: the
reference rows (config keys, event types, routes, the command catalog) and
every classified gate's effective state, iu_core.release.observations).

The keys, per revision (and runtime script) audit row, under evidence["observed"]:

  version      1 (this layout)
  identity     database, database_oid, current_user, session_user, server_address,
               server_port, server_version, server_version_num, server_started_at
  artifacts    [{path, kind (revision|migration|rollback|selftest|selftest transcript|
               runtime|runtime rollback|include), bytes, sha256, md5, sha256_expanded?}]
  before/after {objects: {class: count}, catalog_rows, size_bytes,
               counts: {table: [rows, "exact"|"estimate"|"at_least"]},
               gates: [{key, class, value, state}], gates_source}
  changes      {objects: {class: {before, after, added[], removed[], changed[]}},
               functions: [{name, change (added|changed|removed), volatility,
                            security_definer, search_path, before?}],
               catalog: {before, after, added[row], removed[row], changed[{before, after}]} | null,
               tables: [{table, before, after, method (exact|estimate|at_least), delta, ins_upd_del [i, u, d]}],
               config_values_changed: [{key, before, after}],
               size_bytes: {before, after, delta}}
  rehearsal    (rehearsed rows) {fingerprint_before, fingerprint_after, state_before,
               state_after, tables_counted, tables_changed[], unchanged, differences?}
  not_observed [what could not be observed, and why] (only when something could not)

beside evidence["transcript"]: [{section, file, line, tag}] of every statement run.
`db adopt` records identity, artifacts and `state` (one observation) instead.

The schema size is defined as the sum of pg_total_relation_size (heap, TOAST
and indexes) of IU Core's tables, materialized views and sequences: the
relations iu_core.framework.scope calls IU Core's; never the whole database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fingerprint import row_counts
from .layout import RevisionFiles
from .scope import OURS_CTE, Scope
from .sqlfiles import expand, shown

if TYPE_CHECKING:
    import psycopg

# The layout of evidence["observed"]; a reader checks it before it reads.
VERSION = 1
SIZE_DEFINITION = ("sum of pg_total_relation_size (heap + TOAST + indexes) of IU Core's tables, "
                   "materialized views and sequences (iu_core.framework.scope)")

# Inventory classes of iu_core.release.inventory, each object with a digest of its
# definition, so a replaced function (CREATE OR REPLACE) shows as changed.
_OBJECTS_SQL = "WITH " + OURS_CTE + """
SELECT CASE WHEN c.relkind IN ('r', 'p') THEN 'table' ELSE 'view' END, ns.nspname || '.' || c.relname,
       md5(concat_ws(E'\\n',
         CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
         (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         (SELECT string_agg(pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
            FROM pg_constraint co WHERE co.conrelid = c.oid),
         coalesce(c.relacl, acldefault('r', c.relowner))::text)),
       NULL::text, NULL::boolean, NULL::text
  FROM our_tab o JOIN pg_class c ON c.oid = o.oid JOIN ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'function', ns.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')',
       md5(concat_ws(E'\\n', pg_get_function_result(p.oid), p.prosrc, p.provolatile::text, p.prosecdef::text,
                     p.proconfig::text, coalesce(p.proacl, acldefault('f', p.proowner))::text,
                     pg_get_userbyid(p.proowner))),
       p.provolatile::text, p.prosecdef,
       (SELECT substr(s, 13) FROM unnest(p.proconfig) AS s WHERE s LIKE 'search_path=%%')
  FROM our_fn o JOIN pg_proc p ON p.oid = o.oid JOIN ns ON ns.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'p')
UNION ALL
SELECT 'trigger', ns.nspname || '.' || c.relname || '.' || t.tgname,
       md5(pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text), NULL, NULL, NULL
  FROM our_trg o JOIN pg_trigger t ON t.oid = o.oid JOIN pg_class c ON c.oid = t.tgrelid
  JOIN ns ON ns.oid = c.relnamespace
"""

# Every IU Core relation with its size, and this transaction's writes to it.
_RELATIONS_SQL = "WITH " + OURS_CTE + """
SELECT ns.nspname || '.' || c.relname, c.relkind::text, pg_total_relation_size(c.oid),
       pg_stat_get_xact_tuples_inserted(c.oid), pg_stat_get_xact_tuples_updated(c.oid),
       pg_stat_get_xact_tuples_deleted(c.oid)
  FROM our_rel o JOIN pg_class c ON c.oid = o.oid JOIN ns ON ns.oid = c.relnamespace
"""

VOLATILITY = {"v": "volatile", "s": "stable", "i": "immutable"}


@dataclass
class State:
    """One observation of IU Core in the database."""

    objects: dict[str, dict[str, str]] = field(default_factory=dict)  # class → name → digest
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → volatility, secdef, path
    counts: dict[str, tuple[int, str]] = field(default_factory=dict)  # table → (rows, method)
    size_bytes: int = 0
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # table → ins, upd, del (this xact)
    config: dict[str, str] = field(default_factory=dict)
    catalog: dict[str, dict[str, Any]] | None = None  # None: no catalog table
    gates: list[dict[str, Any]] = field(default_factory=list)
    gates_source: str = ""

    def summary(self) -> dict[str, Any]:
        """The figures a report shows for one side (before or after)."""
        return {
            "objects": {cls: len(names) for cls, names in sorted(self.objects.items())},
            "catalog_rows": None if self.catalog is None else len(self.catalog),
            "size_bytes": self.size_bytes,
            "counts": {t: list(v) for t, v in sorted(self.counts.items())},
            "gates": self.gates,
            "gates_source": self.gates_source,
        }

    def digest(self) -> str:
        """A digest of the logical state (objects, reference rows, exact counts); sizes excluded,
        since a rolled-back write can leave a relation's files bigger."""
        parts = [repr(sorted((c, sorted(n.items())) for c, n in self.objects.items())),
                 repr(sorted(self.config.items())),
                 repr(sorted((self.catalog or {}).items())),
                 repr(sorted((t, v) for t, v in self.counts.items() if v[1] == "exact"))]
        return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def observe(conn: psycopg.Connection[Any], scope: Scope) -> State:
    """The project's state as `conn` sees it now (inside its transaction, when it has one)."""
    st = State()
    params = scope.params()
    for cls, name, digest, volatility, secdef, path in conn.execute(_OBJECTS_SQL, params):
        st.objects.setdefault(cls, {})[name] = digest
        if cls == "function":
            st.functions[name] = {"volatility": VOLATILITY.get(volatility, volatility),
                                  "security_definer": bool(secdef), "search_path": path}
    tables = st.objects.get("table", {})
    for name, relkind, size, ins, upd, dele in conn.execute(_RELATIONS_SQL, params):
        st.size_bytes += int(size or 0)
        if relkind in ("r", "p"):
            st.writes[name] = (int(ins), int(upd), int(dele))
    st.counts = row_counts(conn, tables)
    if scope.facts.observe is not None:  # the project's reference rows, gates
        scope.facts.observe(conn, st, tables)
    return st


def compare(before: State, after: State) -> dict[str, Any]:
    """What one revision changed: objects per class, catalog rows, the functions it
    added or replaced (volatility, SECURITY DEFINER), row counts and writes per table."""
    classes = sorted(set(before.objects) | set(after.objects))
    objects = {}
    for cls in classes:
        b, a = before.objects.get(cls, {}), after.objects.get(cls, {})
        objects[cls] = {"before": len(b), "after": len(a), "added": sorted(set(a) - set(b)),
                        "removed": sorted(set(b) - set(a)),
                        "changed": sorted(n for n in set(a) & set(b) if a[n] != b[n])}
    functions = []
    for name in sorted(set(before.functions) | set(after.functions)):
        b_fn, a_fn = before.functions.get(name), after.functions.get(name)
        b_dig = before.objects.get("function", {}).get(name)
        a_dig = after.objects.get("function", {}).get(name)
        if b_dig == a_dig:
            continue
        change = "added" if b_fn is None else "removed" if a_fn is None else "changed"
        entry: dict[str, Any] = {"name": name, "change": change, **(a_fn or b_fn or {})}
        if change == "changed" and b_fn is not None and a_fn is not None and b_fn != a_fn:
            entry["before"] = b_fn
        functions.append(entry)
    catalog: dict[str, Any] | None = None
    if before.catalog is not None or after.catalog is not None:
        bc, ac = before.catalog or {}, after.catalog or {}
        catalog = {"before": None if before.catalog is None else len(bc),
                   "after": None if after.catalog is None else len(ac),
                   "added": [ac[n] for n in sorted(set(ac) - set(bc))],
                   "removed": [bc[n] for n in sorted(set(bc) - set(ac))],
                   "changed": [{"before": bc[n], "after": ac[n]} for n in sorted(set(ac) & set(bc))
                               if ac[n] != bc[n]]}
    tables = []
    for t in sorted(set(before.counts) | set(after.counts) | set(before.writes) | set(after.writes)):
        b_n, a_n = before.counts.get(t), after.counts.get(t)
        w_b, w_a = before.writes.get(t, (0, 0, 0)), after.writes.get(t, (0, 0, 0))
        written = [max(0, x - y) for x, y in zip(w_a, w_b, strict=True)] if t in after.writes else None
        inexact = [v[1] for v in (b_n, a_n) if v is not None and v[1] != "exact"]
        exact = not inexact
        delta = (a_n[0] - b_n[0]) if (b_n is not None and a_n is not None and exact) else None
        tables.append({"table": t, "before": None if b_n is None else b_n[0],
                       "after": None if a_n is None else a_n[0],
                       "method": inexact[0] if inexact else "exact", "delta": delta,
                       "ins_upd_del": written})
    config_changed = sorted(k for k in set(before.config) & set(after.config) if before.config[k] != after.config[k])
    return {"objects": objects, "functions": functions, "catalog": catalog, "tables": tables,
            "config_values_changed": [{"key": k, "before": before.config[k], "after": after.config[k]}
                                      for k in config_changed],
            "size_bytes": {"before": before.size_bytes, "after": after.size_bytes,
                           "delta": after.size_bytes - before.size_bytes}}


# ---------------------------------------------------------------- artifacts
def artifacts(project: Path, files: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """Each file (kind, path) that exists, and every file it includes with `\\ir`:
    path relative to the project, bytes, sha256 and md5 of the bytes on disk (what
    `sha256sum` / `openssl md5` print, seed 002 A1), and for a top-level SQL file
    the sha256 of its expanded text (what `db verify` holds it to)."""
    out: list[dict[str, Any]] = []
    seen: set[Path] = set()

    def add(kind: str, p: Path, expanded: str | None = None) -> None:
        real = p.resolve()
        if real in seen:
            return
        seen.add(real)
        data = p.read_bytes()
        item: dict[str, Any] = {"path": shown(p, project), "kind": kind, "bytes": len(data),
                                "sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
        if expanded is not None:
            item["sha256_expanded"] = expanded
        out.append(item)

    for kind, p in files:
        if not p.is_file():
            continue
        includes: tuple[Path, ...] = ()
        expanded = None
        if p.suffix == ".sql":
            try:
                ex = expand(p, project)
                includes, expanded = ex.includes, ex.sha256
            except Exception:  # a file that does not expand still has bytes to checksum
                pass
        add(kind, p, expanded)
        for inc in includes:
            add("include", inc)
    return out


def revision_files(project: Path, revision: str) -> list[tuple[str, Path]]:
    """A revision's files, by kind: its Alembic module, forward, rollback, self-test."""
    files = RevisionFiles(project, revision)
    return [("revision", files.module), ("migration", files.forward), ("rollback", files.rollback),
            ("selftest", files.selftest), ("selftest transcript", files.expected)]


# ---------------------------------------------------------------- identity
_IDENTITY_SQL = """SELECT current_database(), current_user, session_user,
       coalesce(host(inet_server_addr()), 'local socket'), inet_server_port(),
       current_setting('server_version'), current_setting('server_version_num')::int,
       (SELECT oid::bigint FROM pg_database WHERE datname = current_database()),
       pg_postmaster_start_time()"""


def identity(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Who and where: database (and its oid), role, server address, version, server start."""
    row = conn.execute(_IDENTITY_SQL).fetchone()
    assert row is not None
    db, user, session_user, addr, port, version, num, oid, started = row
    return {"database": db, "database_oid": oid, "current_user": user, "session_user": session_user,
            "server_address": addr, "server_port": port, "server_version": version,
            "server_version_num": num, "server_started_at": started.isoformat()}
