-- 016 self-test: the composer wired to emit composer events, the checkpoint and
-- the two views, exercised inside one transaction that always ends in ROLLBACK.
-- Every DO block RAISEs when its check fails.
-- The database may be at 016 (composer family not registered yet: composing
-- works and emits nothing) or at any later revision (260 registers the family:
-- every delta is an event). Each DO block works out which, compares inside, and
-- prints only what is the same at every revision.
-- Run: iucore selftest 016   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/016.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- a gate opened for a test: through the gate protocol where the database has it
\ir lib/open_gate.sql

-- T0 baseline: 016's two functions and two views are there, the composer gate is shut
SELECT 'function' AS kind, 'public.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS object
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('fn_iu_composer_emit', 'fn_iu_collection_checkpoint')
UNION ALL
SELECT 'view', 'public.' || c.relname
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
   AND c.relname IN ('v_iu_collection_checkpoint', 'v_iu_composer_event_log')
 ORDER BY kind, object;

SELECT key, value FROM public.dot_config WHERE key = 'iu_core.composer_enabled';

-- T0 the collection event types are registered all together (260) or not at all (016),
-- and the emitter never emits a type outside the composer stream
DO $t0$
DECLARE
    c_types text[] := ARRAY['collection_created', 'piece_added_to_collection', 'piece_removed_from_collection',
                            'piece_reordered', 'collection_rendered', 'collection_validated'];
    n integer := (SELECT count(*) FROM public.event_type_registry r
                   WHERE r.event_domain = 'iu' AND r.event_type = ANY (c_types)
                     AND r.event_stream = 'composer' AND r.active);
    id uuid;
BEGIN
    IF n NOT IN (0, 6) THEN
        RAISE EXCEPTION 'T0: % of the 6 collection event types registered: the family is half there', n;
    END IF;
    id := public.fn_iu_composer_emit('iu_created', gen_random_uuid(), '{}', 'selftest016');
    IF id IS NOT NULL THEN
        RAISE EXCEPTION 'T0: fn_iu_composer_emit emitted iu_created (a lifecycle type) for a collection';
    END IF;
    RAISE NOTICE 'T0 collection event types all-or-none; fn_iu_composer_emit(iu_created) answered NULL';
END
$t0$;

-- T1 open the composer gate in this transaction only, mint three pieces and compose them
SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest016');

CREATE TEMP TABLE selftest016_ids ON COMMIT DROP AS
SELECT n, (public.fn_iu_create('selftest016/piece-' || n, 'section', 'Piece ' || n, 'selftest016') ->> 'iu_id')::uuid AS iu_id
  FROM generate_series(1, 3) AS n;

CREATE TEMP TABLE selftest016_compose ON COMMIT DROP AS
SELECT public.fn_iu_compose('selftest016.file-001', 'file', 'Self-test 016 file',
       (SELECT array_agg(iu_id ORDER BY n) FROM selftest016_ids), 'selftest016',
       ARRAY['intro', 'body', 'tail']) AS answer;

SELECT answer ->> 'status' AS compose_status, (answer ->> 'member_count')::integer AS member_count
  FROM selftest016_compose;

-- T1 compose emitted 1 collection_created + 3 piece_added_to_collection (subject = the
-- collection, delayed lane, the ids it answered) once the family is registered, none before
DO $t1$
DECLARE
    a jsonb := (SELECT answer FROM selftest016_compose);
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest016.file-001');
    emits boolean := EXISTS (SELECT 1 FROM public.event_type_registry r
                              WHERE r.event_domain = 'iu' AND r.event_type = 'collection_created'
                                AND r.event_stream = 'composer' AND r.active)
                     AND public.fn_iu_core_routes_enabled()
                     AND public.fn_iu_gate_is_open('piece_event_runtime.emit_enabled');
    got text;
    answered uuid[];
    stored uuid[];
BEGIN
    IF c IS NULL OR (a ->> 'collection_id')::uuid IS DISTINCT FROM c THEN
        RAISE EXCEPTION 'T1: compose did not answer the collection it made: %', a;
    END IF;
    SELECT coalesce(string_agg(t.event_type || ' x' || t.n || '/' || t.lanes, ', ' ORDER BY t.event_type), '')
      INTO got
      FROM (SELECT e.event_type, count(*) AS n, string_agg(DISTINCT e.delivery_lane, '+') AS lanes
              FROM public.event_outbox e
             WHERE e.event_domain = 'iu' AND e.event_subject_ref = c::text AND e.created_at >= now()
             GROUP BY e.event_type) AS t;
    answered := ARRAY(SELECT x::uuid FROM jsonb_array_elements_text(a -> 'event_ids') AS x);
    stored := ARRAY(SELECT e.event_id FROM public.event_outbox e
                     WHERE e.event_domain = 'iu' AND e.event_subject_ref = c::text AND e.created_at >= now());
    IF emits THEN
        IF got <> 'collection_created x1/delayed, piece_added_to_collection x3/delayed'
           OR cardinality(answered) <> 4
           OR (SELECT count(DISTINCT x) FROM unnest(answered) AS x) <> 4
           OR NOT (answered <@ stored AND stored <@ answered)
           OR (SELECT e.event_type FROM public.event_outbox e
                WHERE e.event_id = (a ->> 'event_id')::uuid) IS DISTINCT FROM 'collection_created' THEN
            RAISE EXCEPTION 'T1: expected 1 collection_created + 3 piece_added_to_collection (delayed), got [%], answered %', got, a;
        END IF;
    ELSIF got <> '' OR a ->> 'event_id' IS NOT NULL OR a -> 'event_ids' <> '[]'::jsonb THEN
        RAISE EXCEPTION 'T1: the composer family is not registered, yet compose emitted [%], answered %', got, a;
    END IF;
    RAISE NOTICE 'T1 compose emitted exactly what the registry allows (4 distinct delayed events with the family, none without)';
END
$t1$;

-- T2 with the composer gate shut again, the checkpoint refuses and records nothing
UPDATE public.dot_config SET value = 'false' WHERE key = 'iu_core.composer_enabled';

DO $t2$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest016.file-001');
    r jsonb := public.fn_iu_collection_checkpoint(c, 'selftest016');
BEGIN
    IF r ->> 'status' IS DISTINCT FROM 'refused' OR r ->> 'reason' IS DISTINCT FROM 'gate_closed'
       OR r ->> 'gate' IS DISTINCT FROM 'iu_core.composer_enabled' THEN
        RAISE EXCEPTION 'T2: expected a gate_closed refusal naming the composer gate, got %', r;
    END IF;
    IF EXISTS (SELECT 1 FROM public.iu_collection
                WHERE collection_id = c AND (last_render_digest IS NOT NULL OR last_rendered_at IS NOT NULL))
       OR EXISTS (SELECT 1 FROM public.event_outbox
                   WHERE event_type = 'collection_rendered' AND event_subject_ref = c::text AND created_at >= now()) THEN
        RAISE EXCEPTION 'T2: the refused checkpoint recorded a render or emitted collection_rendered';
    END IF;
    RAISE NOTICE 'T2 refused_as_expected: % (%), nothing recorded', r ->> 'gate', r ->> 'reason';
END
$t2$;

-- T3 gate open: the checkpoint answers 'checkpointed' and records the render's digest
SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest016');

DO $t3$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest016.file-001');
    emits boolean := EXISTS (SELECT 1 FROM public.event_type_registry r
                              WHERE r.event_domain = 'iu' AND r.event_type = 'collection_rendered'
                                AND r.event_stream = 'composer' AND r.active)
                     AND public.fn_iu_core_routes_enabled()
                     AND public.fn_iu_gate_is_open('piece_event_runtime.emit_enabled');
    r jsonb := public.fn_iu_collection_checkpoint(c, 'selftest016');
    render_digest text := public.fn_iu_collection_render(c) ->> 'digest';
    row_ record;
    ev record;
BEGIN
    SELECT last_render_digest, last_rendered_at INTO row_ FROM public.iu_collection WHERE collection_id = c;
    IF r ->> 'status' IS DISTINCT FROM 'checkpointed' OR (r ->> 'member_count')::int IS DISTINCT FROM 3
       OR r ->> 'digest' IS DISTINCT FROM render_digest
       OR row_.last_render_digest IS DISTINCT FROM render_digest OR row_.last_rendered_at IS NULL THEN
        RAISE EXCEPTION 'T3: checkpoint answered %, recorded digest % at % (render digest %)',
            r, row_.last_render_digest, row_.last_rendered_at, render_digest;
    END IF;
    SELECT count(*) AS n, min(e.event_id::text) AS id, bool_and(e.delivery_lane = 'delayed') AS delayed,
           bool_and(e.payload ->> 'digest' = render_digest) AS digest_ok
      INTO ev
      FROM public.event_outbox e
     WHERE e.event_domain = 'iu' AND e.event_type = 'collection_rendered' AND e.event_subject_ref = c::text AND e.created_at >= now();
    IF emits THEN
        IF ev.n <> 1 OR ev.id IS DISTINCT FROM r ->> 'event_id' OR NOT ev.delayed OR NOT ev.digest_ok THEN
            RAISE EXCEPTION 'T3: expected one delayed collection_rendered with the digest (the answered id), got % row(s), answer %', ev.n, r;
        END IF;
    ELSIF ev.n <> 0 OR r ->> 'event_id' IS NOT NULL THEN
        RAISE EXCEPTION 'T3: the family is not registered, yet the checkpoint emitted (% row(s), answer %)', ev.n, r;
    END IF;
    RAISE NOTICE 'T3 status=%, member_count=%, last_render_digest = render digest, collection_rendered as registered',
        r ->> 'status', r ->> 'member_count';
END
$t3$;

-- T4 move the last piece to 0, then back to 2: the exact original order and digest return;
-- a real move is a piece_reordered event (once registered), an invalid or no-op move emits nothing
DO $t4$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest016.file-001');
    p uuid := (SELECT iu_id FROM selftest016_ids WHERE n = 3);
    emits boolean := EXISTS (SELECT 1 FROM public.event_type_registry r
                              WHERE r.event_domain = 'iu' AND r.event_type = 'piece_reordered'
                                AND r.event_stream = 'composer' AND r.active)
                     AND public.fn_iu_core_routes_enabled()
                     AND public.fn_iu_gate_is_open('piece_event_runtime.emit_enabled');
    checkpointed text := (SELECT last_render_digest FROM public.iu_collection WHERE collection_id = c);
    before text;
    moved text;
    after text;
    r_to0 jsonb;
    r_back jsonb;
    r_same jsonb;
    r_bad jsonb;
    ids uuid[];
BEGIN
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO before
      FROM public.iu_collection_member WHERE collection_id = c;
    r_to0 := public.fn_iu_collection_reorder_piece(c, p, 0, 'selftest016');
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO moved
      FROM public.iu_collection_member WHERE collection_id = c;
    r_back := public.fn_iu_collection_reorder_piece(c, p, 2, 'selftest016');
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO after
      FROM public.iu_collection_member WHERE collection_id = c;
    r_same := public.fn_iu_collection_reorder_piece(c, p, 2, 'selftest016');
    r_bad := public.fn_iu_collection_reorder_piece(c, p, 3, 'selftest016');

    IF r_to0 ->> 'status' <> 'reordered' OR r_back ->> 'status' <> 'reordered'
       OR moved <> '0/tail 1/intro 2/body' OR after <> before THEN
        RAISE EXCEPTION 'T4: reorder is not a move and its inverse: % -> % -> % (%, %)', before, moved, after, r_to0, r_back;
    END IF;
    IF public.fn_iu_collection_render(c) ->> 'digest' IS DISTINCT FROM checkpointed THEN
        RAISE EXCEPTION 'T4: the round trip changed the rendered digest';
    END IF;
    IF r_same ->> 'status' <> 'reordered' OR r_same ->> 'event_id' IS NOT NULL
       OR r_bad ->> 'status' <> 'invalid_input' OR r_bad ->> 'field' <> 'new_order' THEN
        RAISE EXCEPTION 'T4: a move to the same slot must change nothing and emit nothing, an out-of-range one is invalid: %, %', r_same, r_bad;
    END IF;

    ids := ARRAY(SELECT e.event_id FROM public.event_outbox e
                  WHERE e.event_domain = 'iu' AND e.event_type = 'piece_reordered'
                    AND e.event_subject_ref = c::text AND e.delivery_lane = 'delayed' AND e.created_at >= now()
                    AND e.payload ->> 'iu_id' = p::text
                  ORDER BY e.created_at);
    IF emits THEN
        IF cardinality(ids) <> 2 OR ids[1]::text IS DISTINCT FROM r_to0 ->> 'event_id'
           OR ids[2]::text IS DISTINCT FROM r_back ->> 'event_id' THEN
            RAISE EXCEPTION 'T4: expected 2 delayed piece_reordered events (the answered ids), got % (%, %)', ids, r_to0, r_back;
        END IF;
    ELSIF cardinality(ids) <> 0 OR r_to0 ->> 'event_id' IS NOT NULL OR r_back ->> 'event_id' IS NOT NULL THEN
        RAISE EXCEPTION 'T4: the family is not registered, yet reorder emitted %', ids;
    END IF;
    RAISE NOTICE 'T4 order % -> % -> %, digest unchanged; same-slot move emitted nothing, new_order 3 %',
        before, moved, after, r_bad ->> 'status';
END
$t4$;

-- T5 remove the middle piece and add it back at 1: the order returns; each is one event (once registered)
DO $t5$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest016.file-001');
    p uuid := (SELECT iu_id FROM selftest016_ids WHERE n = 2);
    emits boolean := EXISTS (SELECT 1 FROM public.event_type_registry r
                              WHERE r.event_domain = 'iu' AND r.event_type = 'piece_removed_from_collection'
                                AND r.event_stream = 'composer' AND r.active)
                     AND public.fn_iu_core_routes_enabled()
                     AND public.fn_iu_gate_is_open('piece_event_runtime.emit_enabled');
    r_rm jsonb := public.fn_iu_collection_remove_piece(c, p, 'selftest016');
    r_add jsonb := public.fn_iu_collection_add_piece(c, p, 'selftest016', 1, 'body');
    after text;
    n_rm integer;
    n_add integer;
BEGIN
    SELECT string_agg(piece_order || '/' || label, ' ' ORDER BY piece_order) INTO after
      FROM public.iu_collection_member WHERE collection_id = c;
    IF r_rm ->> 'status' <> 'removed' OR (r_rm ->> 'old_order')::int <> 1
       OR r_add ->> 'status' <> 'added' OR after <> '0/intro 1/body 2/tail' THEN
        RAISE EXCEPTION 'T5: remove + add back did not restore the order: %, %, %', r_rm, r_add, after;
    END IF;
    SELECT count(*) FILTER (WHERE e.event_type = 'piece_removed_from_collection'),
           count(*) FILTER (WHERE e.event_type = 'piece_added_to_collection')
      INTO n_rm, n_add
      FROM public.event_outbox e
     WHERE e.event_domain = 'iu' AND e.event_subject_ref = c::text AND e.payload ->> 'iu_id' = p::text AND e.created_at >= now();
    IF emits THEN
        -- piece 2 was added once by compose and once here: both land (delayed lane)
        IF n_rm <> 1 OR n_add <> 2 OR r_rm ->> 'event_id' IS NULL OR r_add ->> 'event_id' IS NULL THEN
            RAISE EXCEPTION 'T5: expected 1 piece_removed + 2 piece_added for the piece, got % + %', n_rm, n_add;
        END IF;
    ELSIF n_rm + n_add <> 0 OR r_rm ->> 'event_id' IS NOT NULL OR r_add ->> 'event_id' IS NOT NULL THEN
        RAISE EXCEPTION 'T5: the family is not registered, yet remove/add emitted % + %', n_rm, n_add;
    END IF;
    RAISE NOTICE 'T5 % old_order=%, % piece_order=%, order %', r_rm ->> 'status', r_rm ->> 'old_order',
        r_add ->> 'status', r_add ->> 'piece_order', after;
END
$t5$;

-- T6 the two views answer for the collection
SELECT v.collection_key, v.last_rendered_at IS NOT NULL AS rendered, v.last_render_digest, v.member_count
  FROM public.v_iu_collection_checkpoint v
 WHERE v.collection_key = 'selftest016.file-001'
 ORDER BY v.collection_key;

DO $t6$
DECLARE
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest016.file-001');
    emits boolean := EXISTS (SELECT 1 FROM public.event_type_registry r
                              WHERE r.event_domain = 'iu' AND r.event_type = 'collection_created'
                                AND r.event_stream = 'composer' AND r.active)
                     AND public.fn_iu_core_routes_enabled()
                     AND public.fn_iu_gate_is_open('piece_event_runtime.emit_enabled');
    cp record;
    got text;
    n_log integer;
    n_outbox integer;
BEGIN
    SELECT * INTO cp FROM public.v_iu_collection_checkpoint v WHERE v.collection_key = 'selftest016.file-001';
    IF cp.last_render_digest IS DISTINCT FROM public.fn_iu_collection_render(c) ->> 'digest'
       OR cp.member_count <> 3 OR cp.rendered_events <> (CASE WHEN emits THEN 1 ELSE 0 END) THEN
        RAISE EXCEPTION 'T6: v_iu_collection_checkpoint answered %', to_jsonb(cp);
    END IF;

    SELECT coalesce(string_agg(t.event_type || ' x' || t.n, ', ' ORDER BY t.event_type), ''), coalesce(sum(t.n), 0)
      INTO got, n_log
      FROM (SELECT l.event_type, count(*) AS n
              FROM public.v_iu_composer_event_log l
             WHERE l.collection_id = c::text AND l.event_subject_ref = c::text
               AND l.delivery_lane = 'delayed' AND l.actor = 'selftest016' AND l.attempts = 0
               AND l.created_at >= now()
             GROUP BY l.event_type) AS t;
    SELECT count(*) INTO n_outbox FROM public.event_outbox e WHERE e.event_subject_ref = c::text AND e.created_at >= now();
    IF emits THEN
        IF got <> 'collection_created x1, collection_rendered x1, piece_added_to_collection x4, piece_removed_from_collection x1, piece_reordered x2'
           OR n_log <> n_outbox THEN
            RAISE EXCEPTION 'T6: v_iu_composer_event_log answered [%] (% of the collection''s % outbox rows)', got, n_log, n_outbox;
        END IF;
    ELSIF got <> '' OR n_outbox <> 0 THEN
        RAISE EXCEPTION 'T6: the family is not registered, yet the event log lists [%]', got;
    END IF;
    RAISE NOTICE 'T6 v_iu_collection_checkpoint: digest = render digest, 3 members, rendered_events as registered; v_iu_composer_event_log: every collection event, delayed, 0 attempts';
END
$t6$;

ROLLBACK;
