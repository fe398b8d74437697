-- 017 self-test: the governed piece-disposal pair (soft-delete with restore) and
-- the three distinct disposal verbs (seed 003 §8), exercised inside one
-- transaction that always ends in ROLLBACK. Every DO block RAISEs when its check fails.
-- Run: iucore selftest 017   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/017.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- a gate opened for a test: through the gate protocol where the database has it
\ir lib/open_gate.sql

-- T0 baseline: the pair is there (SECURITY INVOKER, search_path pinned, not for PUBLIC);
-- the structure-ops gate is shut
SELECT 'public.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS function, p.prosecdef AS security_definer,
       -- pinned, pg_temp last (the path itself is least_privilege's to tighten: pg_catalog, pg_temp)
       EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                WHERE c LIKE 'search_path=%' AND c LIKE '%pg_temp') AS search_path_pinned,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_execute
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('fn_iu_piece_soft_delete', 'fn_iu_piece_restore')
 ORDER BY 1;

SELECT key, value FROM public.dot_config
 WHERE key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled')
 ORDER BY key;

-- T1 open the composer gate in this transaction only; mint four pieces and compose piece 1 into a collection
SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest017');

CREATE TEMP TABLE selftest017_ids ON COMMIT DROP AS
SELECT n, (public.fn_iu_create('selftest017/piece-' || n, 'piece', 'Piece ' || n, 'selftest017') ->> 'iu_id')::uuid AS iu_id
  FROM generate_series(1, 4) AS n;

SELECT public.fn_iu_compose('selftest017.file-001', 'file', 'Self-test 017 file',
       ARRAY[(SELECT iu_id FROM selftest017_ids WHERE n = 1)], 'selftest017') ->> 'status' AS compose_status;

-- T1 with iu_core.structure_ops_enabled shut both functions refuse and nothing changes
DO $t1$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 2);
    sd jsonb := public.fn_iu_piece_soft_delete(p, 'selftest 017', 'selftest017');
    rs jsonb := public.fn_iu_piece_restore(p, 'selftest017');
BEGIN
    IF sd ->> 'status' IS DISTINCT FROM 'refused' OR sd ->> 'reason' IS DISTINCT FROM 'gate_closed'
       OR sd ->> 'gate' IS DISTINCT FROM 'iu_core.structure_ops_enabled'
       OR rs ->> 'status' IS DISTINCT FROM 'refused' OR rs ->> 'reason' IS DISTINCT FROM 'gate_closed'
       OR rs ->> 'gate' IS DISTINCT FROM 'iu_core.structure_ops_enabled' THEN
        RAISE EXCEPTION 'T1: expected gate_closed refusals naming iu_core.structure_ops_enabled, got % and %', sd, rs;
    END IF;
    IF (SELECT lifecycle_status FROM public.information_unit WHERE iu_id = p) <> 'active'
       OR EXISTS (SELECT 1 FROM public.event_outbox
                   WHERE event_type IN ('piece_soft_deleted', 'piece_restored') AND event_subject_ref = p::text
                     AND created_at >= now()) THEN
        RAISE EXCEPTION 'T1: a refused call changed the piece or emitted an event';
    END IF;
    RAISE NOTICE 'T1 refused_as_expected: soft-delete % (%), restore % (%)',
        sd ->> 'status', sd ->> 'gate', rs ->> 'status', rs ->> 'gate';
END
$t1$;

-- T2 open the structure-ops gate in this transaction only; soft-delete piece 2
SELECT pg_temp.selftest_open_gate('iu_core.structure_ops_enabled', 'selftest017');

CREATE TEMP TABLE selftest017_answers ON COMMIT DROP AS
SELECT 'soft_delete_2'::text AS step,
       public.fn_iu_piece_soft_delete((SELECT iu_id FROM selftest017_ids WHERE n = 2),
                                      'selftest 017: no longer needed', 'selftest017') AS answer;

DO $t2$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 2);
    a jsonb := (SELECT answer FROM selftest017_answers WHERE step = 'soft_delete_2');
    again jsonb := public.fn_iu_piece_soft_delete(p, 'selftest 017: again', 'selftest017');
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest017.file-001');
    add_back jsonb := public.fn_iu_collection_add_piece(c, p, 'selftest017');
    iu record;
    ev record;
BEGIN
    SELECT lifecycle_status, deleted_at, deleted_by, delete_reason INTO iu
      FROM public.information_unit WHERE iu_id = p;
    IF a ->> 'status' IS DISTINCT FROM 'soft_deleted' OR NOT (a ->> 'restorable')::boolean
       OR iu.lifecycle_status <> 'soft_deleted' OR iu.deleted_at IS NULL
       OR iu.deleted_by IS DISTINCT FROM 'selftest017' OR iu.delete_reason IS DISTINCT FROM 'selftest 017: no longer needed' THEN
        RAISE EXCEPTION 'T2: soft-delete answered %, piece is %', a, to_jsonb(iu);
    END IF;
    SELECT e.event_id, e.event_stream, e.delivery_lane, e.payload ->> 'iu_id' AS iu_id INTO ev
      FROM public.event_outbox e
     WHERE e.event_domain = 'iu' AND e.event_type = 'piece_soft_deleted' AND e.event_subject_ref = p::text AND e.created_at >= now();
    IF ev.event_id IS NULL OR ev.event_id::text IS DISTINCT FROM a ->> 'event_id'
       OR ev.event_stream <> 'composer' OR ev.delivery_lane <> 'delayed' OR ev.iu_id IS DISTINCT FROM p::text THEN
        RAISE EXCEPTION 'T2: expected one delayed piece_soft_deleted event (subject and payload iu_id = the piece), got %', to_jsonb(ev);
    END IF;
    IF again ->> 'status' IS DISTINCT FROM 'already_soft_deleted' THEN
        RAISE EXCEPTION 'T2: a second soft-delete answered %', again;
    END IF;
    IF add_back ->> 'status' IS DISTINCT FROM 'invalid_input' OR add_back ->> 'field' IS DISTINCT FROM 'iu_id' THEN
        RAISE EXCEPTION 'T2: a soft-deleted piece was accepted into a collection: %', add_back;
    END IF;
    RAISE NOTICE 'T2 % (restorable %), lifecycle %, one piece_soft_deleted event; again: %; add to a collection: %',
        a ->> 'status', a ->> 'restorable', iu.lifecycle_status, again ->> 'status', add_back ->> 'status';
END
$t2$;

-- T3 restore piece 2: lifecycle back to 'active', the deletion marks cleared, piece_restored emitted
INSERT INTO selftest017_answers
SELECT 'restore_2', public.fn_iu_piece_restore((SELECT iu_id FROM selftest017_ids WHERE n = 2), 'selftest017');

DO $t3$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 2);
    a jsonb := (SELECT answer FROM selftest017_answers WHERE step = 'restore_2');
    iu record;
    ev record;
BEGIN
    SELECT lifecycle_status, deleted_at, deleted_by, delete_reason INTO iu
      FROM public.information_unit WHERE iu_id = p;
    IF a ->> 'status' IS DISTINCT FROM 'restored' OR iu.lifecycle_status <> 'active'
       OR iu.deleted_at IS NOT NULL OR iu.deleted_by IS NOT NULL OR iu.delete_reason IS NOT NULL THEN
        RAISE EXCEPTION 'T3: restore answered %, piece is %', a, to_jsonb(iu);
    END IF;
    SELECT e.event_id, e.delivery_lane, e.payload ->> 'delete_reason' AS delete_reason INTO ev
      FROM public.event_outbox e
     WHERE e.event_domain = 'iu' AND e.event_type = 'piece_restored' AND e.event_subject_ref = p::text AND e.created_at >= now();
    IF ev.event_id IS NULL OR ev.event_id::text IS DISTINCT FROM a ->> 'event_id' OR ev.delivery_lane <> 'delayed'
       OR ev.delete_reason IS DISTINCT FROM 'selftest 017: no longer needed' THEN
        RAISE EXCEPTION 'T3: expected one delayed piece_restored event carrying the deletion it undid, got %', to_jsonb(ev);
    END IF;
    RAISE NOTICE 'T3 %, lifecycle %, deleted_at/by/reason cleared, one piece_restored event', a ->> 'status', iu.lifecycle_status;
END
$t3$;

-- T4 a second soft-delete -> restore cycle of the same piece: the delayed lane lands every event
DO $t4$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 2);
    sd jsonb := public.fn_iu_piece_soft_delete(p, 'selftest 017: second cycle', 'selftest017');
    rs jsonb := public.fn_iu_piece_restore(p, 'selftest017');
    got text;
BEGIN
    SELECT string_agg(t.event_type || ' x' || t.n || ' (' || t.ids || ' distinct)', ', ' ORDER BY t.event_type) INTO got
      FROM (SELECT e.event_type, count(*) AS n, count(DISTINCT e.event_id) AS ids
              FROM public.event_outbox e
             WHERE e.event_domain = 'iu' AND e.event_subject_ref = p::text AND e.created_at >= now()
               AND e.event_type IN ('piece_soft_deleted', 'piece_restored')
             GROUP BY e.event_type) AS t;
    IF sd ->> 'status' IS DISTINCT FROM 'soft_deleted' OR rs ->> 'status' IS DISTINCT FROM 'restored'
       OR got IS DISTINCT FROM 'piece_restored x2 (2 distinct), piece_soft_deleted x2 (2 distinct)' THEN
        RAISE EXCEPTION 'T4: second cycle answered % / %, events %', sd, rs, got;
    END IF;
    RAISE NOTICE 'T4 % then %: %', sd ->> 'status', rs ->> 'status', got;
END
$t4$;

-- T5 a piece in a collection is refused (nothing changes); removing it from the collection is a
-- different verb that leaves the piece active; after that the soft-delete goes through
DO $t5$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 1);
    c uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest017.file-001');
    refused jsonb := public.fn_iu_piece_soft_delete(p, 'selftest 017: still a member', 'selftest017');
    status_after_refusal text := (SELECT lifecycle_status FROM public.information_unit WHERE iu_id = p);
    removed jsonb := public.fn_iu_collection_remove_piece(c, p, 'selftest017');
    status_after_remove text := (SELECT lifecycle_status FROM public.information_unit WHERE iu_id = p);
    sd jsonb := public.fn_iu_piece_soft_delete(p, 'selftest 017: removed first', 'selftest017');
BEGIN
    IF refused ->> 'status' IS DISTINCT FROM 'refused' OR refused ->> 'reason' IS DISTINCT FROM 'member_of_collection'
       OR refused -> 'collections' IS DISTINCT FROM '["selftest017.file-001"]'::jsonb
       OR refused ->> 'next_action' IS DISTINCT FROM 'remove_from_collections_first'
       OR status_after_refusal <> 'active' THEN
        RAISE EXCEPTION 'T5: a member piece: expected member_of_collection naming the collection, got % (piece %)',
            refused, status_after_refusal;
    END IF;
    IF removed ->> 'status' IS DISTINCT FROM 'removed' OR status_after_remove <> 'active' THEN
        RAISE EXCEPTION 'T5: remove-from-collection answered %, piece %', removed, status_after_remove;
    END IF;
    IF sd ->> 'status' IS DISTINCT FROM 'soft_deleted' THEN
        RAISE EXCEPTION 'T5: soft-delete after removal answered %', sd;
    END IF;
    RAISE NOTICE 'T5 member: % (%, collections %, next %); remove: % (piece %); then soft-delete: %',
        refused ->> 'status', refused ->> 'reason', refused -> 'collections', refused ->> 'next_action',
        removed ->> 'status', status_after_remove, sd ->> 'status';
END
$t5$;

-- T6 retire piece 3 (global, final): soft-delete refuses it and restore cannot bring it back
DO $t6$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 3);
    retired jsonb := public.fn_iu_retire(p, 'selftest 017: retired', 'selftest017');
    sd jsonb := public.fn_iu_piece_soft_delete(p, 'selftest 017: retired piece', 'selftest017');
    rs jsonb := public.fn_iu_piece_restore(p, 'selftest017');
BEGIN
    IF retired ->> 'status' IS DISTINCT FROM 'retired' THEN
        RAISE EXCEPTION 'T6: retire answered %', retired;
    END IF;
    IF sd ->> 'status' IS DISTINCT FROM 'refused' OR sd ->> 'reason' IS DISTINCT FROM 'piece_retired' THEN
        RAISE EXCEPTION 'T6: soft-delete of a retired piece answered %', sd;
    END IF;
    IF rs ->> 'status' IS DISTINCT FROM 'invalid_input' OR rs ->> 'reason' IS DISTINCT FROM 'not_soft_deleted'
       OR rs ->> 'lifecycle_status' IS DISTINCT FROM 'retired'
       OR (SELECT lifecycle_status FROM public.information_unit WHERE iu_id = p) <> 'retired' THEN
        RAISE EXCEPTION 'T6: restore of a retired piece answered %', rs;
    END IF;
    RAISE NOTICE 'T6 retire: %; soft-delete: % (%); restore: % (%, lifecycle %)',
        retired ->> 'status', sd ->> 'status', sd ->> 'reason', rs ->> 'status', rs ->> 'reason', rs ->> 'lifecycle_status';
END
$t6$;

-- T7 restore of an active piece (piece 4, never deleted) is refused
DO $t7$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 4);
    rs jsonb := public.fn_iu_piece_restore(p, 'selftest017');
BEGIN
    IF rs ->> 'status' IS DISTINCT FROM 'invalid_input' OR rs ->> 'reason' IS DISTINCT FROM 'not_soft_deleted'
       OR rs ->> 'lifecycle_status' IS DISTINCT FROM 'active'
       OR EXISTS (SELECT 1 FROM public.event_outbox WHERE event_type = 'piece_restored' AND event_subject_ref = p::text
                                      AND created_at >= now()) THEN
        RAISE EXCEPTION 'T7: restore of an active piece answered %', rs;
    END IF;
    RAISE NOTICE 'T7 restore of an active piece: % (%, lifecycle %)', rs ->> 'status', rs ->> 'reason', rs ->> 'lifecycle_status';
END
$t7$;

-- T8 the three verbs are distinct: piece 1 removed from its collection then soft-deleted,
-- piece 2 soft-deleted and restored (twice), piece 3 retired, piece 4 untouched
SELECT i.n, iu.lifecycle_status, iu.deleted_at IS NOT NULL AS deleted, iu.retired_at IS NOT NULL AS retired,
       (SELECT count(*) FROM public.iu_collection_member m WHERE m.iu_id = i.iu_id) AS memberships
  FROM selftest017_ids i
 INNER JOIN public.information_unit iu ON iu.iu_id = i.iu_id
 ORDER BY i.n;

-- T8 restoring piece 1 brings it back to 'active' but not into its collection (that is add_piece)
DO $t8$
DECLARE
    p uuid := (SELECT iu_id FROM selftest017_ids WHERE n = 1);
    rs jsonb := public.fn_iu_piece_restore(p, 'selftest017');
BEGIN
    IF rs ->> 'status' IS DISTINCT FROM 'restored'
       OR (SELECT lifecycle_status FROM public.information_unit WHERE iu_id = p) <> 'active'
       OR EXISTS (SELECT 1 FROM public.iu_collection_member WHERE iu_id = p) THEN
        RAISE EXCEPTION 'T8: restore of piece 1 answered %', rs;
    END IF;
    RAISE NOTICE 'T8 piece 1 %: active, still in no collection', rs ->> 'status';
END
$t8$;

-- T9 the pair's events: subject = the piece, delayed lane; in the composer event log with no collection
SELECT e.event_type, e.event_stream, e.delivery_lane, count(*) AS events, count(DISTINCT e.event_id) AS distinct_ids
  FROM public.event_outbox e
 WHERE e.event_domain = 'iu' AND e.event_type IN ('piece_soft_deleted', 'piece_restored')
   AND e.event_subject_ref IN (SELECT s.iu_id::text FROM selftest017_ids s) AND e.created_at >= now()
 GROUP BY e.event_type, e.event_stream, e.delivery_lane
 ORDER BY e.event_type;

DO $t9$
DECLARE
    bad bigint;
BEGIN
    SELECT count(*) INTO bad
      FROM public.event_outbox e
      JOIN selftest017_ids i ON i.iu_id::text = e.event_subject_ref
      LEFT JOIN public.v_iu_composer_event_log l ON l.event_id = e.event_id
     WHERE e.event_type IN ('piece_soft_deleted', 'piece_restored') AND e.created_at >= now()
       AND (l.event_id IS NULL OR l.collection_id IS NOT NULL OR l.event_subject_ref <> i.iu_id::text
            OR e.payload ->> 'iu_id' IS DISTINCT FROM i.iu_id::text OR e.actor <> 'selftest017');
    IF bad <> 0 THEN
        RAISE EXCEPTION 'T9: % soft-delete/restore event(s) missing from v_iu_composer_event_log or not about their piece', bad;
    END IF;
    RAISE NOTICE 'T9 every piece_soft_deleted / piece_restored event is in v_iu_composer_event_log, collection_id NULL, subject = payload iu_id = the piece';
END
$t9$;

ROLLBACK;
