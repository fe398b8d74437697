"""fingerprint.row_counts: figures that never scan more than a bounded number of rows,
each saying whether it is exact, the planner's estimate, or a lower bound.

The oracle for "the planner's estimate" is the planner itself: the row count
EXPLAIN prints for a plain scan of the table.
"""

from __future__ import annotations

from typing import Any

import psycopg

from iu_core.framework.fingerprint import COUNT_EVERY_ROW, row_counts, snapshot

from .conftest import ROOT, connect


def _table(c: psycopg.Connection[Any], name: str, rows: int) -> None:
    # autovacuum off: what the planner knows about the table changes only when the test says so
    c.execute(f"CREATE TABLE {name} (id integer, pad text) WITH (autovacuum_enabled = false)")
    c.execute(f"INSERT INTO {name} SELECT g, repeat('x', 20) FROM generate_series(1, %s) g", (rows,))


def _planner_rows(c: psycopg.Connection[Any], name: str) -> int:
    plan = c.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM {name}").fetchone()
    assert plan is not None
    return int(plan[0][0]["Plan"]["Plan Rows"])


def test_small_tables_are_counted_exactly_and_big_ones_take_the_planners_estimate(empty_db) -> None:
    with connect(empty_db) as c:
        _table(c, "public.small", 40)
        _table(c, "public.big", 5000)
        c.execute("VACUUM ANALYZE public.small")
        c.execute("VACUUM ANALYZE public.big")
        c.execute("DELETE FROM public.big WHERE id <= 1000")  # the estimate does not see it until ANALYZE
        got = row_counts(c, ["public.small", "public.big", "public.absent"], limit=1000)
        assert got == {"public.small": (40, "exact"), "public.big": (_planner_rows(c, "public.big"), "estimate")}
        assert got["public.big"][0] == 5000  # not the 4000 an exact count would find: an estimate, and said so


def test_a_table_that_grew_since_it_was_measured_is_not_reported_at_its_old_size(empty_db) -> None:
    with connect(empty_db) as c:
        _table(c, "public.grew", 30)
        c.execute("VACUUM ANALYZE public.grew")  # measured at 30 rows, one page
        c.execute("INSERT INTO public.grew SELECT g, repeat('x', 20) FROM generate_series(31, 20000) g")
        n, method = row_counts(c, ["public.grew"], limit=1000)["public.grew"]
        # reltuples alone says 30; the planner scales it by the pages the table has now
        assert method == "estimate" and n == _planner_rows(c, "public.grew") and n > 1000


def test_a_never_measured_table_past_the_limit_is_a_lower_bound_not_a_guess(empty_db) -> None:
    with connect(empty_db) as c:
        _table(c, "public.unmeasured", 3000)
        assert c.execute("SELECT reltuples FROM pg_class WHERE oid = 'public.unmeasured'::regclass"
                         ).fetchone() == (-1,)
        with c.transaction():  # pg_stat_xact_*: what this transaction read
            assert row_counts(c, ["public.unmeasured"], limit=1000) == {"public.unmeasured": (1001, "at_least")}
            read = c.execute("SELECT seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'unmeasured'"
                             ).fetchone()
        assert read == (1001,)  # a bounded scan: limit + 1 rows, however big the table


def test_every_row_counted_when_asked_and_the_snapshot_proof_stays_exact(conn_at) -> None:
    c = conn_at("substrate")
    c.execute("ANALYZE")
    n = c.execute("SELECT count(*) FROM public.dot_config").fetchone()
    assert row_counts(c, ["public.dot_config"], limit=COUNT_EVERY_ROW) == {"public.dot_config": (n[0], "exact")}
    # the self-test / rehearsal proof: every IU Core table, counted (a figure below any limit)
    counts = snapshot(c, with_counts=True, project=ROOT)["count"]
    assert counts["public.dot_config"] == str(n[0])
    tables = snapshot(c, project=ROOT)["table"]
    assert set(counts) == set(tables)
