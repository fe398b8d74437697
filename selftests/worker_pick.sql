-- worker_pick self-test: the route worker takes a route's oldest pending events,
-- at most its limit, each once, and stops at its limit instead of reading the
-- outbox on past it; exercised inside one transaction that always ends in ROLLBACK.
-- Every DO block RAISEs when its check fails.
-- Run: iucore selftest worker_pick   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/worker_pick.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means what the checks count sees only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

\ir lib/queue_first.sql

-- T0 a route of this transaction's own, named at random, that takes every event, and
-- events of a type of its own: 3 pending, then 100 the route has already taken (a drained
-- backlog), all put at the head of the queue (lib/queue_first.sql), ahead of whatever
-- production holds. Runs limited to the pending number take exactly them.
CREATE TEMP TABLE selftest_wp ON COMMIT DROP AS
SELECT 'selftest_wp_' || s.suffix AS route, 'selftest_wp_probe_' || s.suffix AS probe
  FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS suffix) AS s;

DO $t0$
DECLARE
    t record := (SELECT w FROM selftest_wp AS w);
    pending bigint;
    drained bigint;
    taken bigint;
BEGIN
    INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane, description)
    VALUES ('iu', t.probe, 'lifecycle', 'delayed', 'worker_pick self-test (rolled back)');
    INSERT INTO public.iu_outbound_route (route_code, event_domain, event_type, target_kind, target_ref, description)
    VALUES (t.route, NULL, NULL, 'webhook', 'selftest', 'worker_pick self-test (rolled back)');
    PERFORM public.fn_iu_emit_event('iu', t.probe, 'selftest-wp-' || n, '{}'::jsonb, 'selftest_wp')
       FROM generate_series(1, 3) AS n;
    pending := pg_temp.selftest_queue_first('selftest_wp');
    PERFORM public.fn_iu_emit_event('iu', t.probe, 'selftest-wp-drained-' || n, '{}'::jsonb, 'selftest_wp_drained')
       FROM generate_series(1, 100) AS n;
    drained := pg_temp.selftest_queue_first('selftest_wp_drained');
    -- taken before: the attempts a worker run would have written
    INSERT INTO public.iu_route_attempt (route_code, event_id, attempt_status, detail)
    SELECT t.route, e.event_id, 'dry_run', '{"selftest": "worker_pick T0"}'::jsonb
      FROM public.event_outbox AS e
     WHERE e.actor = 'selftest_wp_drained' AND e.created_at < timestamptz '1971-01-01 00:00:00+00'
       AND age(e.xmin) <= 0;
    GET DIAGNOSTICS taken = ROW_COUNT;
    IF pending <> 3 OR drained <> 100 OR taken <> 100 OR NOT (
           SELECT max(e.created_at) FILTER (WHERE e.actor = 'selftest_wp')
                < min(e.created_at) FILTER (WHERE e.actor = 'selftest_wp_drained')
             FROM public.event_outbox AS e
            WHERE e.event_type = t.probe AND e.created_at < timestamptz '1971-01-01 00:00:00+00') THEN
        RAISE EXCEPTION 'T0: % pending and % taken events at the head of the queue (% attempts), expected 3 ahead of 100',
            pending, drained, taken;
    END IF;
    RAISE NOTICE 'T0 3 pending events at the head of the queue, 100 the route already took behind them';
END
$t0$;

-- The plan worker_pick is about, whatever this database holds: the pick read in
-- created_at order off the index (the planner's choice for a small limit on a large
-- outbox). Read whole and sorted, by the old worker and the new alike, T2 would tell
-- nothing about the pick's order.
\ir lib/walk_from_the_head.sql

-- T1 a run limited to 1 takes the oldest
DO $t1$
DECLARE
    t record := (SELECT w FROM selftest_wp AS w);
    r jsonb := public.fn_iu_route_worker_run(t.route, 1);
    oldest uuid := (SELECT e.event_id FROM public.event_outbox AS e
                     WHERE e.event_type = t.probe AND e.created_at < timestamptz '1971-01-01 00:00:00+00'
                     ORDER BY e.created_at LIMIT 1);
BEGIN
    IF (r ->> 'seen')::int <> 1 OR (r ->> 'attempts_written')::int <> 1 OR NOT (r ->> 'dry_run')::boolean
       OR NOT EXISTS (SELECT 1 FROM public.iu_route_attempt AS a
                       WHERE a.route_code = t.route AND a.event_id = oldest) THEN
        RAISE EXCEPTION 'T1: a run limited to 1 answered % and did not attempt the oldest event', r;
    END IF;
    RAISE NOTICE 'T1 a run limited to 1 took the oldest event';
END
$t1$;

-- T2 with 2 still pending, a run limited to 1 takes the next and stops there: the
-- outbox rows it reads (this transaction's own statistics, pg_stat_xact_user_tables)
-- are a handful, not the 100 taken events behind. Before worker_pick it read on until
-- 32 rows had passed its filter: past all 100, probing the attempts of each.
DO $t2$
DECLARE
    t record := (SELECT w FROM selftest_wp AS w);
    before bigint;
    r jsonb;
    read_rows bigint;
    attempted bigint;
BEGIN
    SELECT s.seq_tup_read + coalesce(s.idx_tup_fetch, 0) INTO before
      FROM pg_catalog.pg_stat_xact_user_tables AS s WHERE s.relid = 'public.event_outbox'::regclass;
    r := public.fn_iu_route_worker_run(t.route, 1);
    SELECT s.seq_tup_read + coalesce(s.idx_tup_fetch, 0) - before INTO read_rows
      FROM pg_catalog.pg_stat_xact_user_tables AS s WHERE s.relid = 'public.event_outbox'::regclass;
    SELECT count(*) INTO attempted FROM public.iu_route_attempt AS a WHERE a.route_code = t.route;
    IF (r ->> 'seen')::int <> 1 OR attempted <> 102 THEN
        RAISE EXCEPTION 'T2: a run limited to 1 answered %, % events attempted on the route, expected 102', r, attempted;
    END IF;
    -- Fail closed: no count at all (track_counts off) proves nothing.
    IF read_rows IS NULL OR read_rows < 1 THEN
        RAISE EXCEPTION 'T2: this transaction''s statistics counted no outbox row read (track_counts off?): cannot tell where the run stopped';
    END IF;
    IF read_rows >= 50 THEN
        RAISE EXCEPTION 'T2: a run limited to 1 with 2 pending at the head read % outbox rows: it read on past its limit', read_rows;
    END IF;
    RAISE NOTICE 'T2 a run limited to 1 took the next event and stopped at its limit (fewer than 50 outbox rows read)';
END
$t2$;

-- T3 a run limited to 1 takes the one left: the last of this self-test's pending events,
-- none of the taken ones again, nothing of production's
DO $t3$
DECLARE
    t record := (SELECT w FROM selftest_wp AS w);
    r jsonb := public.fn_iu_route_worker_run(t.route, 1);
    attempted bigint;
    ours bigint;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE e.actor = 'selftest_wp') INTO attempted, ours
      FROM public.iu_route_attempt AS a JOIN public.event_outbox AS e ON e.event_id = a.event_id
     WHERE a.route_code = t.route;
    IF (r ->> 'seen')::int <> 1 OR (r ->> 'attempts_written')::int <> 1 OR attempted <> 103 OR ours <> 3 THEN
        RAISE EXCEPTION 'T3: a run limited to 1 answered %, % attempted on the route in all, % of the 3 pending', r, attempted, ours;
    END IF;
    RAISE NOTICE 'T3 a run limited to 1 took the last pending event: 103 attempted, each once, the 3 pending among them';
END
$t3$;

ROLLBACK;
