-- 260 self-test: the composer event family on the 'delayed' lane, its dry-run
-- routes, composer deltas never deduplicated (seed 003 §7, seed 001 §1-§3),
-- exercised inside one transaction that always ends in ROLLBACK.
-- Every DO block RAISEs when its check fails. Counts that later revisions could
-- change (events and attempts already in the database) are compared, not printed.
-- Run: iucore selftest 260   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/260.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- a gate opened for a test: through the gate protocol where the database has it
\ir lib/open_gate.sql
\ir lib/queue_first.sql

-- T0 the composer event family 260 registers, written once for the checks below
CREATE TEMP TABLE selftest260_family ON COMMIT DROP AS
SELECT t.event_type
  FROM unnest(ARRAY['collection_created', 'piece_added_to_collection', 'piece_removed_from_collection',
                    'piece_reordered', 'collection_rendered', 'collection_validated',
                    'piece_soft_deleted', 'piece_restored']) AS t (event_type);

-- T0 the 8 composer event types: domain iu, stream composer, all on the 'delayed' lane
SELECT r.event_type, r.event_stream, r.delivery_lane, r.active
  FROM public.event_type_registry r
 WHERE r.event_domain = 'iu'
   AND r.event_type IN (SELECT f.event_type FROM selftest260_family f)
 ORDER BY r.event_type;

DO $t0$
DECLARE
    n_family integer := (SELECT count(*) FROM public.event_type_registry r
                          WHERE r.event_domain = 'iu' AND r.event_stream = 'composer'
                            AND r.delivery_lane = 'delayed' AND r.active
                            AND r.event_type IN (SELECT f.event_type FROM selftest260_family f));
    deduplicating text := (SELECT string_agg(r.event_domain || '.' || r.event_type, ', ' ORDER BY r.event_type)
                             FROM public.event_type_registry r
                            WHERE r.event_stream = 'composer' AND r.delivery_lane <> 'delayed');
BEGIN
    IF n_family <> 8 OR deduplicating IS NOT NULL THEN
        RAISE EXCEPTION 'T0: % of 8 family types on iu/composer/delayed/active; composer types on another lane: %',
            n_family, deduplicating;
    END IF;
    RAISE NOTICE 'T0 8 composer types on the delayed lane; no composer-stream type on a deduplicating lane';
END
$t0$;

-- T1 one route per type, every one dry_run (and a webhook: never delivered)
SELECT r.route_code, r.event_type, r.target_kind, r.dry_run, r.enabled, r.fail_closed,
       r.payload_contract -> 'required' AS required
  FROM public.iu_outbound_route r
 WHERE r.route_code LIKE 'iu\_composer\_%'
 ORDER BY r.route_code;

DO $t1$
DECLARE
    n integer;
    live text;
BEGIN
    SELECT count(*) INTO n FROM public.iu_outbound_route r
     WHERE r.route_code LIKE 'iu\_composer\_%' AND r.route_code = 'iu_composer_' || r.event_type
       AND r.event_domain = 'iu' AND r.dry_run AND r.enabled AND r.target_kind = 'webhook';
    SELECT string_agg(r.route_code, ', ' ORDER BY r.route_code) INTO live
      FROM public.iu_outbound_route r
      JOIN public.event_type_registry t ON t.event_domain = r.event_domain AND t.event_type = r.event_type
     WHERE t.event_stream = 'composer' AND NOT r.dry_run;
    IF n <> 8 OR live IS NOT NULL THEN
        RAISE EXCEPTION 'T1: % of 8 iu_composer_* routes dry_run/enabled/webhook; composer routes not dry_run: %', n, live;
    END IF;
    RAISE NOTICE 'T1 8 iu_composer_<type> routes, all dry_run=true';
END
$t1$;

-- T2 open the composer gate in this transaction only, mint three pieces and compose them
SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest260');

CREATE TEMP TABLE selftest260_ids ON COMMIT DROP AS
SELECT n, (public.fn_iu_create('selftest260/piece-' || n, 'section', 'Piece ' || n, 'selftest260') ->> 'iu_id')::uuid AS iu_id
  FROM generate_series(1, 3) AS n;

CREATE TEMP TABLE selftest260_compose ON COMMIT DROP AS
SELECT public.fn_iu_compose('selftest260.file-001', 'file', 'Self-test 260 file',
       (SELECT array_agg(iu_id ORDER BY n) FROM selftest260_ids), 'selftest260',
       ARRAY['intro', 'body', 'tail']) AS answer;

-- T2 1 collection_created + 3 piece_added_to_collection, subject = the collection id, NOT deduplicated
SELECT e.event_type, e.event_stream, e.delivery_lane, count(*) AS events, count(DISTINCT e.event_id) AS distinct_ids
  FROM public.event_outbox e
 WHERE e.event_domain = 'iu'
   AND e.event_subject_ref = (SELECT sc.answer ->> 'collection_id' FROM selftest260_compose sc) AND e.created_at >= now()
 GROUP BY e.event_type, e.event_stream, e.delivery_lane
 ORDER BY e.event_type;

DO $t2$
DECLARE
    a jsonb := (SELECT answer FROM selftest260_compose);
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest260.file-001');
    answered uuid[];
    stored uuid[];
    pieces text;
BEGIN
    IF a ->> 'status' IS DISTINCT FROM 'composed' OR (a ->> 'collection_id')::uuid IS DISTINCT FROM c THEN
        RAISE EXCEPTION 'T2: compose answered %', a;
    END IF;
    answered := ARRAY(SELECT x::uuid FROM jsonb_array_elements_text(a -> 'event_ids') AS x);
    stored := ARRAY(SELECT e.event_id FROM public.event_outbox e
                     WHERE e.event_domain = 'iu' AND e.event_subject_ref = c::text AND e.created_at >= now()
                       AND e.event_stream = 'composer' AND e.delivery_lane = 'delayed'
                       AND (e.payload ->> 'collection_id')::uuid = c);
    -- the three piece_added_to_collection rows name the three pieces, in piece order
    SELECT string_agg((e.payload ->> 'piece_order') || '/' || (e.payload ->> 'label'), ' ' ORDER BY e.created_at)
      INTO pieces
      FROM public.event_outbox e
      JOIN selftest260_ids i ON i.iu_id = (e.payload ->> 'iu_id')::uuid
     WHERE e.event_type = 'piece_added_to_collection' AND e.event_subject_ref = c::text AND e.created_at >= now();
    IF cardinality(answered) <> 4 OR cardinality(stored) <> 4
       OR (SELECT count(DISTINCT x) FROM unnest(answered) AS x) <> 4
       OR NOT (answered <@ stored AND stored <@ answered)
       OR answered[1]::text IS DISTINCT FROM a ->> 'event_id'
       OR pieces IS DISTINCT FROM '0/intro 1/body 2/tail' THEN
        RAISE EXCEPTION 'T2: expected 4 distinct delayed composer events with subject and payload = the collection, got answered %, stored %, pieces %',
            answered, stored, pieces;
    END IF;
    RAISE NOTICE 'T2 4 distinct delayed events, subject = payload collection_id = the collection, the ids compose answered, pieces %', pieces;
END
$t2$;

-- T3 the contrast: the immediate lane deduplicates a repeat of (domain, type, subject);
-- the delayed lane lands every repeat for the same subject as a distinct row
DO $t3$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest260.file-001');
    p uuid := (SELECT iu_id FROM selftest260_ids WHERE n = 1);
    -- a subject no other session uses: a concurrent run would otherwise wait on this one's row
    subject text := 'selftest260-subject-' || gen_random_uuid();
    imm1 uuid := public.fn_iu_emit_event('iu', 'structure_op_applied', subject, '{}', 'selftest260');
    imm2 uuid := public.fn_iu_emit_event('iu', 'structure_op_applied', subject, '{}', 'selftest260');
    del1 uuid := public.fn_iu_emit_event('iu', 'piece_reordered', c::text,
                     jsonb_build_object('collection_id', c, 'iu_id', p, 'old_order', 0, 'new_order', 1), 'selftest260');
    del2 uuid := public.fn_iu_emit_event('iu', 'piece_reordered', c::text,
                     jsonb_build_object('collection_id', c, 'iu_id', p, 'old_order', 0, 'new_order', 1), 'selftest260');
    lanes text;
BEGIN
    IF (SELECT delivery_lane FROM public.event_type_registry
         WHERE event_domain = 'iu' AND event_type = 'structure_op_applied') <> 'immediate' THEN
        RAISE EXCEPTION 'T3: structure_op_applied is no longer on the immediate lane: the contrast proves nothing';
    END IF;
    IF imm1 IS NULL OR imm2 IS NOT NULL THEN
        RAISE EXCEPTION 'T3: immediate lane: first emit %, second %: expected an id, then NULL', imm1, imm2;
    END IF;
    SELECT string_agg(DISTINCT e.delivery_lane, '+') INTO lanes
      FROM public.event_outbox e WHERE e.event_id IN (del1, del2);
    IF del1 IS NULL OR del2 IS NULL OR del1 = del2 OR lanes IS DISTINCT FROM 'delayed' THEN
        RAISE EXCEPTION 'T3: delayed lane: identical emits answered % and % (lanes %): expected two distinct ids', del1, del2, lanes;
    END IF;
    RAISE NOTICE 'T3 immediate: second identical emit answered NULL; delayed: two identical emits, two distinct ids';
END
$t3$;

-- T4-T6 run the real routes, which take one event type each (T5)
\ir lib/walk_from_the_head.sql

-- T4 the route worker on iu_outbound_default dry-runs what is pending, oldest first:
-- this transaction's events go to the head of the queue (lib/queue_first.sql), so a
-- run limited to their number takes exactly them, whatever backlog the database holds
DO $t4$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest260.file-001');
    pending bigint := pg_temp.selftest_queue_first('selftest260');
    r1 jsonb := public.fn_iu_route_worker_run('iu_outbound_default', greatest(pending, 1)::integer);
    ours record;
BEGIN
    IF pending = 0 OR (r1 ->> 'seen')::bigint <> pending OR (r1 ->> 'attempts_written')::bigint <> pending
       OR (r1 ->> 'skipped')::int <> 0 OR (r1 ->> 'dead_lettered')::int <> 0
       OR NOT (r1 ->> 'dry_run')::boolean OR r1 ->> 'mode' IS DISTINCT FROM 'dry_run' THEN
        RAISE EXCEPTION 'T4: worker answered % for the % events of this self-test', r1, pending;
    END IF;
    -- each of the collection's 6 composer events has exactly one dry_run attempt on the route
    SELECT count(*) AS events, count(a.event_id) AS attempts,
           count(*) FILTER (WHERE a.attempt_status = 'dry_run' AND a.detail ->> 'mode' = 'dry_run') AS dry_runs
      INTO ours
      FROM public.event_outbox e
      LEFT JOIN public.iu_route_attempt a ON a.event_id = e.event_id AND a.route_code = 'iu_outbound_default'
     WHERE e.event_stream = 'composer' AND e.event_subject_ref = c::text
       AND e.actor = 'selftest260' AND e.created_at < timestamptz '1971-01-01 00:00:00+00';
    IF ours.events <> 6 OR ours.attempts <> 6 OR ours.dry_runs <> 6 THEN
        RAISE EXCEPTION 'T4: the collection''s composer events: %, attempts %, dry_run %', ours.events, ours.attempts, ours.dry_runs;
    END IF;
    RAISE NOTICE 'T4 seen = attempts_written = this self-test''s events, skipped 0, dead_lettered 0, mode dry_run';
END
$t4$;

-- T5 each iu_composer_<type> route with events of this self-test dry-runs them; their payloads
-- meet the route's contract
DO $t5$
DECLARE
    rt record;
    pending bigint;
    r jsonb;
    summary text := '';
    ran text[] := '{}';
BEGIN
    FOR rt IN SELECT route_code, event_domain, event_type FROM public.iu_outbound_route
               WHERE route_code LIKE 'iu\_composer\_%' ORDER BY route_code LOOP
        -- this self-test's events of the route's type, at the head of its queue since T4
        SELECT count(*) INTO pending FROM public.event_outbox e
         WHERE e.event_domain = rt.event_domain AND e.event_type = rt.event_type
           AND e.actor = 'selftest260' AND e.created_at < timestamptz '1971-01-01 00:00:00+00'
           AND NOT EXISTS (SELECT 1 FROM public.iu_route_attempt a
                            WHERE a.route_code = rt.route_code AND a.event_id = e.event_id);
        CONTINUE WHEN pending = 0;  -- nothing of ours to take: a run would take the backlog
        r := public.fn_iu_route_worker_run(rt.route_code, pending::integer);
        IF (r ->> 'seen')::bigint <> pending OR (r ->> 'attempts_written')::bigint <> pending
           OR (r ->> 'skipped')::int <> 0 OR (r ->> 'dead_lettered')::int <> 0
           OR NOT (r ->> 'dry_run')::boolean THEN
            RAISE EXCEPTION 'T5: % answered % for % pending events', rt.route_code, r, pending;
        END IF;
        ran := ran || rt.route_code::text;
    END LOOP;
    SELECT string_agg(t.event_type || ' ' || t.n, ', ' ORDER BY t.event_type) INTO summary
      FROM (SELECT e.event_type, count(*) AS n
              FROM public.iu_route_attempt a
              JOIN public.event_outbox e ON e.event_id = a.event_id
             WHERE a.route_code = 'iu_composer_' || e.event_type AND a.attempt_status = 'dry_run'
               AND e.actor = 'selftest260' AND e.created_at < timestamptz '1971-01-01 00:00:00+00'
               AND e.event_subject_ref = (SELECT collection_id::text FROM public.iu_collection
                                           WHERE collection_key = 'selftest260.file-001')
             GROUP BY e.event_type) AS t;
    IF summary IS DISTINCT FROM 'collection_created 1, piece_added_to_collection 3, piece_reordered 2' THEN
        RAISE EXCEPTION 'T5: the collection''s dry_run attempts on its type routes: %', summary;
    END IF;
    RAISE NOTICE 'T5 %: seen = attempts_written, dead_lettered 0; the collection: %', array_to_string(ran, ', '), summary;
END
$t5$;

-- T6 even with the delivery gate open and the route allowlisted, a composer route stays
-- dry-run; flipped live, its webhook target is refused: external delivery does not exist
SELECT pg_temp.selftest_open_gate('iu_core.delivery_enabled', 'selftest260');

UPDATE public.dot_config SET value = 'iu_composer_piece_reordered' WHERE key = 'iu_core.delivery_live_routes';

DO $t6$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest260.file-001');
    p uuid := (SELECT iu_id FROM selftest260_ids WHERE n = 3);
    r_dry jsonb;
    r_live jsonb;
BEGIN
    -- each reorder's event goes to the head of the queue; a run limited to 1 takes it
    PERFORM public.fn_iu_collection_reorder_piece(c, p, 0, 'selftest260');
    PERFORM pg_temp.selftest_queue_first('selftest260');
    r_dry := public.fn_iu_route_worker_run('iu_composer_piece_reordered', 1);
    UPDATE public.iu_outbound_route SET dry_run = false WHERE route_code = 'iu_composer_piece_reordered';
    PERFORM public.fn_iu_collection_reorder_piece(c, p, 2, 'selftest260');
    PERFORM pg_temp.selftest_queue_first('selftest260');
    r_live := public.fn_iu_route_worker_run('iu_composer_piece_reordered', 1);
    IF r_dry ->> 'mode' IS DISTINCT FROM 'dry_run' OR r_dry ->> 'reason' IS DISTINCT FROM 'route_dry_run'
       OR (r_dry ->> 'attempts_written')::int <> 1 THEN
        RAISE EXCEPTION 'T6: allowlisted dry_run route answered %', r_dry;
    END IF;
    IF r_live ->> 'mode' IS DISTINCT FROM 'refused' OR r_live ->> 'reason' IS DISTINCT FROM 'feature_not_supported'
       OR (r_live ->> 'attempts_written')::int <> 1 THEN
        RAISE EXCEPTION 'T6: a live webhook route answered %', r_live;
    END IF;
    RAISE NOTICE 'T6 allowlisted: mode % (%); flipped live: mode % (%)',
        r_dry ->> 'mode', r_dry ->> 'reason', r_live ->> 'mode', r_live ->> 'reason';
END
$t6$;

-- T7 no attempt for a composer event is 'sent'; the collection's attempts by route kind and status
SELECT CASE WHEN a.route_code = 'iu_outbound_default' THEN a.route_code ELSE 'iu_composer_<type>' END AS route,
       a.attempt_status, coalesce(a.detail ->> 'reason', a.detail -> 'delivery' ->> 'reason') AS reason,
       count(*) AS attempts
  FROM public.iu_route_attempt a
 INNER JOIN public.event_outbox e ON e.event_id = a.event_id
 WHERE e.actor = 'selftest260' AND e.created_at < timestamptz '1971-01-01 00:00:00+00'
   AND e.event_subject_ref = (SELECT ic.collection_id::text FROM public.iu_collection ic
                               WHERE ic.collection_key = 'selftest260.file-001')
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3;

DO $t7$
DECLARE
    -- this self-test's own composer events (production's may be delivered live, through
    -- a route the delivery gate and the allowlist allow)
    sent bigint := (SELECT count(*) FROM public.iu_route_attempt a
                      JOIN public.event_outbox e ON e.event_id = a.event_id
                     WHERE e.event_stream = 'composer' AND a.attempt_status = 'sent'
                       AND e.actor = 'selftest260' AND e.created_at < timestamptz '1971-01-01 00:00:00+00');
BEGIN
    IF sent <> 0 THEN
        RAISE EXCEPTION 'T7: % attempt(s) for this self-test''s composer events were sent', sent;
    END IF;
    RAISE NOTICE 'T7 no composer event of this self-test was sent';
END
$t7$;

ROLLBACK;
