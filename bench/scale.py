"""Cost that grows with the database (row 8): the catalog and the IU Core tables of a
production-sized Directus database against a database fresh at head.

The grown database is the head template plus
- 10,010 foreign objects, Directus-like, half in `public` beside IU Core and
  half in another schema (`analytics`): per collection a table with a serial
  (its sequence), its primary key, an index, a touch trigger and its trigger
  function, and a view — 7 objects each, 1,430 collections, none IU Core's;
- 1,000,000 rows in `event_outbox` (inserted honouring the registry, as the
  type-validate trigger demands) and 1,000,000 in `iu_route_attempt` (one per
  event, through the foreign key), then VACUUM (ANALYZE) — as autovacuum
  leaves a production table.

The small database is the head template, ANALYZEd. Each query group runs on
a fresh connection per repetition (as the CLI opens one, untimed), the two
databases interleaved. The targets: each within 1.5x its small-database time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from harness import ATTEMPT_PER_EVENT, ROOT, BenchServer, Row, Samples, timed

from iu_core.framework.fingerprint import EXACT_COUNT_LIMIT, row_counts, snapshot
from iu_core.release import preflight
from iu_core.release.inventory import report as inventory_report

Say = Callable[[str], None]

COLLECTIONS = 1_430  # x 7 objects = 10,010
OBJECTS_PER_COLLECTION = 7
ROWS = 1_000_000
TARGET = 1.5

_COLLECTIONS_BATCH = """
DO $foreign$
BEGIN
    FOR i IN {lo}..{hi} LOOP
        EXECUTE format($s$
            CREATE TABLE %1$s.c%2$s (id serial PRIMARY KEY, title varchar(255), status varchar(20) NOT NULL DEFAULT 'draft',
                                     user_updated uuid, date_updated timestamptz);
            CREATE INDEX c%2$s_status ON %1$s.c%2$s (status);
            CREATE FUNCTION %1$s.c%2$s_touch() RETURNS trigger LANGUAGE plpgsql
                AS $b$ BEGIN NEW.date_updated := now(); RETURN NEW; END $b$;
            CREATE TRIGGER c%2$s_touch BEFORE UPDATE ON %1$s.c%2$s FOR EACH ROW EXECUTE FUNCTION %1$s.c%2$s_touch();
            CREATE VIEW %1$s.c%2$s_published AS SELECT id, title FROM %1$s.c%2$s WHERE status = 'published';
        $s$, CASE WHEN i % 2 = 0 THEN 'public' ELSE 'analytics' END, i);
    END LOOP;
END
$foreign$
"""

_EVENTS = """
INSERT INTO public.event_outbox
    (event_domain, event_type, event_stream, delivery_lane, event_subject_ref, payload, severity, actor, created_at)
SELECT r.event_domain, r.event_type, r.event_stream, r.delivery_lane, 'bench:' || g,
       jsonb_build_object('collection_id', gen_random_uuid(), 'n', g), r.default_severity, 'bench',
       now() - interval '30 days' + g * interval '1 millisecond'
  FROM public.event_type_registry r, generate_series(%(lo)s::integer, %(hi)s::integer) AS g
 WHERE r.event_domain = 'iu' AND r.event_type = 'piece_reordered' AND r.delivery_lane = 'delayed'
"""

_FOREIGN_COUNT = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'analytics') AND c.relname ~ '^c[0-9]+')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('public', 'analytics') AND p.proname ~ '^c[0-9]+_touch$')
     + (SELECT count(*) FROM pg_trigger t WHERE t.tgname ~ '^c[0-9]+_touch$')
"""


def build_grown(bs: BenchServer, head_db: str, say: Say) -> str:
    db = bs.create("grown", head_db)
    with bs.connect(db) as conn:
        conn.execute("CREATE SCHEMA analytics")
        for lo in range(1, COLLECTIONS + 1, 100):  # batches: bounded locks per transaction
            conn.execute(_COLLECTIONS_BATCH.format(lo=lo, hi=min(lo + 99, COLLECTIONS)).encode())
        foreign = conn.execute(_FOREIGN_COUNT).fetchone()
        if not foreign or foreign[0] != COLLECTIONS * OBJECTS_PER_COLLECTION:
            raise RuntimeError(f"bench: built {foreign} foreign objects, expected {COLLECTIONS * OBJECTS_PER_COLLECTION}")
        step = 250_000
        for lo in range(1, ROWS + 1, step):
            n = conn.execute(_EVENTS, {"lo": lo, "hi": min(lo + step - 1, ROWS)}).rowcount
            if n != min(step, ROWS - lo + 1):
                raise RuntimeError(f"bench: wrote {n} events (is iu.piece_reordered registered on the delayed lane?)")
        if conn.execute(ATTEMPT_PER_EVENT).rowcount != ROWS:
            raise RuntimeError("bench: the attempts did not match the events")
        conn.execute("VACUUM (ANALYZE)")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    say(f"  grown database: {foreign[0]:,} foreign objects (public + analytics), {ROWS:,} events and "
        f"{ROWS:,} route attempts, {size[0] if size else '?'}")
    return db


def _idle_worker_run(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT public.fn_iu_route_worker_run('iu_outbound_default', 200)").fetchone()
    if not row or row[0].get("status") != "completed" or row[0].get("seen") != 0:
        raise RuntimeError(f"bench: the idle worker run did not complete with nothing seen: {row}")


def _selftest_replay_s(report: Any) -> float:
    """The seconds a preflight spent replaying self-tests (its prior-surface check says)."""
    for check in report.to_json()["checks"]:
        data = check.get("data", {})
        if "selftests_ms" in data:
            failed = {name: status for name, status in data["selftests"].items() if status != "passed"}
            if failed or not data["selftests"]:
                raise RuntimeError(f"bench: preflight's self-tests did not all pass: {failed or 'none ran'}")
            return float(data["selftests_ms"]) / 1000
    raise RuntimeError("bench: the preflight report carries no self-test replay time")


def _our_tables(conn: psycopg.Connection[Any]) -> list[str]:
    return sorted(snapshot(conn, project=ROOT).get("table", {}))


def scale(bs: BenchServer, reps: int, head_db: str, say: Say) -> list[Row]:
    grown = build_grown(bs, head_db, say)
    small = bs.create("small", head_db)
    try:
        with bs.connect(small) as conn:
            conn.execute("VACUUM (ANALYZE)")
        # Same work on both: no drift (the foreign objects are not ours), the same tables counted.
        tables: dict[str, list[str]] = {}
        for db in (grown, small):
            with bs.connect(db) as conn:
                rep = inventory_report(conn, ROOT)
                if not rep.ok:
                    raise RuntimeError(f"bench: inventory --check drifts on {db}: {rep.drift[:5]}")
                tables[db] = _our_tables(conn)
        if tables[grown] != tables[small]:
            raise RuntimeError("bench: the two databases do not hold the same IU Core tables")
        ours = tables[grown]
        with bs.connect(grown) as conn:
            figures = row_counts(conn, ours)
        say("  row_counts on the grown database: " + ", ".join(
            f"{t.split('.', 1)[1]} {n:,} ({m})" for t, (n, m) in figures.items()
            if t in ("public.event_outbox", "public.iu_route_attempt", "public.dot_config")))
        if figures["public.event_outbox"][1] != "estimate" or abs(figures["public.event_outbox"][0] - ROWS) > ROWS // 20:
            raise RuntimeError(f"bench: row_counts said {figures['public.event_outbox']} for event_outbox")

        work: dict[str, Callable[[psycopg.Connection[Any]], Any]] = {
            "inventory": lambda c: inventory_report(c, ROOT),
            "preflight": lambda c: preflight.run(c, ROOT),
            "fingerprint": lambda c: snapshot(c, project=ROOT),
            "row_counts": lambda c: row_counts(c, ours),
            "exact_counts": lambda c: snapshot(c, with_counts=True, project=ROOT),
            "healthcheck": lambda c: c.execute("SELECT public.fn_iu_healthcheck()").fetchone(),
            # Nothing is pending on the default route (every event has its attempt): the run writes
            # nothing, and what it costs is finding that out.
            "worker_idle": _idle_worker_run,
        }
        parts = ("preflight_checks", "preflight_selftests")  # one preflight run, split by its own timings
        samples = {(w, d): Samples(f"{w} on the {d} database") for w in (*work, *parts) for d in ("grown", "small")}
        for rnd in range(reps + 1):
            order = [("grown", grown), ("small", small)]
            if rnd % 2:
                order.reverse()
            for w, fn in work.items():
                for label, db in order:
                    with bs.connect(db) as conn:  # a fresh connection each time, as the CLI opens one
                        t, out = timed(lambda fn=fn, conn=conn: fn(conn))
                    if rnd:
                        samples[(w, label)].add(t)
                        if w == "preflight":
                            replay = _selftest_replay_s(out)
                            samples[("preflight_selftests", label)].add(replay)
                            samples[("preflight_checks", label)].add(t - replay)
    finally:
        bs.drop(grown)
        bs.drop(small)
    for s in samples.values():
        say("  " + s.summary())
    base = "same, on a database fresh at head"
    g = lambda w: samples[(w, "grown")].value  # noqa: E731
    s = lambda w: samples[(w, "small")].value  # noqa: E731
    big = "10,010 foreign objects, 1M events + 1M attempts"
    return [
        Row(f"8a. `inventory --check` (whole check, in-process), {big}", g("inventory"), s("inventory"),
            base, TARGET, "ratio"),
        Row("8b. `db preflight` (every check, in-process), same database", g("preflight"), s("preflight"),
            base, TARGET, "ratio"),
        Row("8b-1. of 8b: its catalog and file checks (all but the self-test replay)", g("preflight_checks"),
            s("preflight_checks"), base, TARGET, "ratio"),
        Row("8b-2. of 8b: the self-test replay and its fingerprints (README, Performance)",
            g("preflight_selftests"), s("preflight_selftests"), base, 0, "info"),
        Row("8c. catalog fingerprint (`fingerprint.snapshot`), same database", g("fingerprint"), s("fingerprint"),
            base, TARGET, "ratio"),
        Row(f"8d. row-count figures (`fingerprint.row_counts`, exact below {EXACT_COUNT_LIMIT:,}), same database",
            g("row_counts"), s("row_counts"), base, TARGET, "ratio"),
        Row("8e. the self-test proof (`snapshot(with_counts=True)`, every row counted), same database",
            g("exact_counts"), s("exact_counts"), base, 0, "info"),
        Row("8f. `SELECT fn_iu_healthcheck()` (exact `count(*)` of 8 tables, in SQL), same database",
            g("healthcheck"), s("healthcheck"), base, 0, "info"),
        Row("8g. one route-worker run with nothing pending (`fn_iu_route_worker_run('iu_outbound_default', 200)`), "
            "same database", g("worker_idle"), s("worker_idle"), base, 0, "info"),
    ]
