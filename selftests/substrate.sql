-- substrate self-test: the surface before 016, exercised inside one transaction
-- that always ends in ROLLBACK. Every DO block RAISEs when its check fails.
-- Run: iucore selftest substrate   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/substrate.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- a gate opened for a test: through the gate protocol where the database has it
\ir lib/open_gate.sql
\ir lib/queue_first.sql

-- T0 baseline: the 9 protocol gates are shut
SELECT key, value FROM public.dot_config
 WHERE key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
               'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
               'queue.job_substrate.enabled', 'queue.dlq.replay_enabled',
               'iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled')
 ORDER BY key;

-- T1 a composer mutator refuses while iu_core.composer_enabled is shut
DO $t1$
DECLARE r jsonb;
BEGIN
    r := public.fn_iu_create('selftest/shut', 'piece', 'Shut', 'selftest');
    IF r->>'status' <> 'refused' OR r->>'gate' <> 'iu_core.composer_enabled' THEN
        RAISE EXCEPTION 'T1: expected a refusal naming the composer gate, got %', r;
    END IF;
    RAISE NOTICE 'T1 refused_as_expected: %', r->>'gate';
END
$t1$;

-- T2 open the composer gate in this transaction only, mint three pieces and compose them
SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest');

CREATE TEMP TABLE selftest_ids ON COMMIT DROP AS
SELECT n, (public.fn_iu_create('selftest/piece-' || n, 'section', 'Piece ' || n, 'selftest') ->> 'iu_id')::uuid AS iu_id
  FROM generate_series(1, 3) AS n;

SELECT (public.fn_iu_compose('selftest.file-001', 'file', 'Self-test file',
        (SELECT array_agg(iu_id ORDER BY n) FROM selftest_ids), 'selftest',
        ARRAY['intro', 'body', 'tail'])) ->> 'status' AS compose_status;

-- T3 move the last piece to 0, then back to 2: the exact original order returns
DO $t3$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest.file-001');
    p uuid := (SELECT iu_id FROM selftest_ids WHERE n = 3);
    before text;
    moved text;
    after text;
BEGIN
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO before
      FROM public.iu_collection_member WHERE collection_id = c;
    PERFORM public.fn_iu_collection_reorder_piece(c, p, 0, 'selftest');
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO moved
      FROM public.iu_collection_member WHERE collection_id = c;
    PERFORM public.fn_iu_collection_reorder_piece(c, p, 2, 'selftest');
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO after
      FROM public.iu_collection_member WHERE collection_id = c;
    IF moved <> '0/tail 1/intro 2/body' OR after <> before THEN
        RAISE EXCEPTION 'T3: reorder is not a move and its inverse: % -> % -> %', before, moved, after;
    END IF;
    RAISE NOTICE 'T3 order % -> % -> %', before, moved, after;
END
$t3$;

-- T4 validate and render (read-only, no gate)
SELECT v.collection_key, v.piece_order, v.canonical_address, v.label
  FROM public.v_iu_collection_manifest v
 WHERE v.collection_key = 'selftest.file-001'
 ORDER BY v.piece_order;

DO $t4$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest.file-001');
    v jsonb := public.fn_iu_collection_validate(c);
    r1 jsonb := public.fn_iu_collection_render(c);
    r2 jsonb := public.fn_iu_collection_render(c);
BEGIN
    IF NOT (v->>'ok')::boolean THEN RAISE EXCEPTION 'T4: collection does not validate: %', v; END IF;
    IF r1->>'digest' IS NULL OR r1->>'digest' <> r2->>'digest' THEN
        RAISE EXCEPTION 'T4: render is not deterministic: % vs %', r1->>'digest', r2->>'digest';
    END IF;
    RAISE NOTICE 'T4 validate ok=%, members=%', v->>'ok', r1->>'member_count';
END
$t4$;

-- T5 the immediate lane deduplicates; a second identical emit answers NULL
DO $t5$
DECLARE
    -- a subject no other session uses: a concurrent run would otherwise wait on this one's row
    subject text := 'selftest-subject-' || gen_random_uuid();
    first uuid := public.fn_iu_emit_event('iu', 'structure_op_applied', subject, '{}', 'selftest');
    second uuid := public.fn_iu_emit_event('iu', 'structure_op_applied', subject, '{}', 'selftest');
BEGIN
    IF first IS NULL OR second IS NOT NULL THEN
        RAISE EXCEPTION 'T5: immediate-lane dedupe broken (first %, second %)', first, second;
    END IF;
    RAISE NOTICE 'T5 immediate lane deduplicated the second emit';
END
$t5$;

-- T6 an unknown event type never reaches the outbox (type-validate trigger)
DO $t6$
BEGIN
    INSERT INTO public.event_outbox (event_domain, event_type, event_stream, delivery_lane, event_subject_ref, actor)
    VALUES ('iu', 'no_such_type', 'lifecycle', 'immediate', 'x', 'selftest');
    RAISE EXCEPTION 'T6: the outbox accepted an unregistered type';
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'T6 refused_as_expected';
END
$t6$;

-- T7 the route worker dry-runs what is pending on its route, oldest first, each event
-- once, on a route of this transaction's own, named at random, that takes every event,
-- and events of its own type: they go to the head of the queue (lib/queue_first.sql),
-- ahead of whatever backlog production holds, so runs limited to their number take
-- exactly them, and the plan reads the outbox in created_at order from its head (a
-- route on a rare type would be read by a whole scan). A concurrent run of this
-- self-test does not wait on these rows. A run limited to 2 of the 3 events, then a
-- run limited to 1, must take the one left over.
DO $t7$
DECLARE
    suffix text := replace(gen_random_uuid()::text, '-', '');
    probe text := 'selftest_probe_' || suffix;
    route text := 'selftest_t7_' || suffix;
    emitted uuid[];
    r1 jsonb;
    r2 jsonb;
    attempted bigint;
    statuses text;
BEGIN
    INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane, description)
    VALUES ('iu', probe, 'lifecycle', 'delayed', 'substrate self-test T7 (rolled back)');
    INSERT INTO public.iu_outbound_route (route_code, event_domain, event_type, target_kind, target_ref, description)
    VALUES (route, NULL, NULL, 'webhook', 'selftest', 'substrate self-test T7 (rolled back)');
    emitted := ARRAY(SELECT public.fn_iu_emit_event('iu', probe, 'selftest-t7-' || n, '{}', 'selftest_t7')
                       FROM generate_series(1, 3) AS n);
    PERFORM pg_temp.selftest_queue_first('selftest_t7');
    r1 := public.fn_iu_route_worker_run(route, 2);
    r2 := public.fn_iu_route_worker_run(route, 1);
    SELECT count(DISTINCT a.event_id),
           string_agg(DISTINCT a.attempt_status || '/' || (a.detail ->> 'mode'), ', ')
      INTO attempted, statuses
      FROM public.iu_route_attempt a
     WHERE a.route_code = route AND a.event_id = ANY (emitted);
    IF cardinality(emitted) <> 3 OR array_position(emitted, NULL) IS NOT NULL
       OR (r1->>'seen')::int <> 2 OR (r1->>'attempts_written')::int <> 2
       OR (r1->>'skipped')::int <> 0 OR (r1->>'dead_lettered')::int <> 0 OR NOT (r1->>'dry_run')::boolean
       OR (r2->>'seen')::int <> 1 OR (r2->>'attempts_written')::int <> 1 OR attempted <> 3
       OR (SELECT count(*) FROM public.iu_route_attempt a WHERE a.route_code = route) <> 3 THEN
        RAISE EXCEPTION 'T7: worker answered % then % for the 3 events of this self-test, % of them attempted (%)',
            r1, r2, attempted, statuses;
    END IF;
    -- the attempts' status/mode is printed, not checked: an open gate shows as a transcript difference
    RAISE NOTICE 'T7 a run limited to 2 of 3 took them, the next run took the one left; each attempted once (%), skipped 0, dead_lettered 0', statuses;
END
$t7$;

-- T8 split needs a real review decision (seed 002 A3)
SELECT public.fn_iu_piece_split((SELECT iu_id FROM selftest_ids WHERE n = 1),
                                '[{"address": "selftest/a", "title": "A"}, {"address": "selftest/b", "title": "B"}]',
                                NULL, 'selftest') ->> 'status' AS split_without_review;

SELECT public.fn_iu_piece_split((SELECT iu_id FROM selftest_ids WHERE n = 1),
                                '[{"address": "selftest/a", "title": "A"}, {"address": "selftest/b", "title": "B"}]',
                                '00000000-0000-0000-0000-000000000001', 'selftest') ->> 'status' AS split_unknown_review;

-- T9 the ledger logger is fail-closed: an unknown command is refused
DO $t9$
BEGIN
    PERFORM public.fn_dot_iu_command_log('dot_iu_no_such_command', 'read', 'plan', 'planned', false,
                                         NULL, '{}', '{}', 'selftest');
    RAISE EXCEPTION 'T9: the logger accepted a command missing from the catalog';
EXCEPTION WHEN foreign_key_violation THEN
    RAISE NOTICE 'T9 refused_as_expected';
END
$t9$;

-- T10 the piece path of the emit gating (fn_iu_piece_emit_event, seed 002 A3;
-- a correction, docs/seeds.md): an unknown piece-domain type answers NULL, a
-- registered one lands with the registry's stream and lane and the piece as its
-- subject, and the runtime key stops it
DO $t10$
DECLARE
    p uuid := (SELECT iu_id FROM selftest_ids WHERE n = 1);
    unknown uuid := public.fn_iu_piece_emit_event('selftest_unknown_type', p, '{}', 'selftest');
    e uuid;
    r record;
BEGIN
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'T10: an unknown piece event type was emitted (%)', unknown;
    END IF;
    INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane, description)
    VALUES ('piece', 'selftest_piece_event', 'piece', 'delayed', 'self-test only: rolled back');
    e := public.fn_iu_piece_emit_event('selftest_piece_event', p, '{"k": 1}', 'selftest');
    SELECT o.event_domain, o.event_stream, o.delivery_lane, o.event_subject_ref, o.payload
      INTO r FROM public.event_outbox o WHERE o.event_id = e;
    IF e IS NULL OR r.event_domain <> 'piece' OR r.event_stream <> 'piece' OR r.delivery_lane <> 'delayed'
       OR r.event_subject_ref <> p::text OR r.payload ->> 'iu_id' <> p::text OR r.payload ->> 'k' <> '1' THEN
        RAISE EXCEPTION 'T10: the piece event landed wrong: % %', e, r;
    END IF;
    UPDATE public.dot_config SET value = 'false' WHERE key = 'piece_event_runtime.emit_enabled';
    IF public.fn_iu_piece_emit_event('selftest_piece_event', p, '{}', 'selftest') IS NOT NULL THEN
        RAISE EXCEPTION 'T10: emitted with piece_event_runtime.emit_enabled shut';
    END IF;
    UPDATE public.dot_config SET value = 'true' WHERE key = 'piece_event_runtime.emit_enabled';
    RAISE NOTICE 'T10 piece path: unknown type NULL, registered type on its stream/lane with the piece as subject, runtime key shut NULL';
END
$t10$;

ROLLBACK;
