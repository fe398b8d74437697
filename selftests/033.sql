-- 033 self-test: the auto-instantiate orchestrator and its two-gate semantics
-- (seed 004: dry_run needs iu_core.composer_enabled; live needs composer AND
-- iu_core.auto_instantiate_enabled), the provenance of every instance and the
-- rollback by actor, exercised inside one transaction that always ends in ROLLBACK.
-- Every DO block RAISEs when its check fails. Counts of rows already in the
-- database are compared before/after inside the DO blocks, never printed, so the
-- transcript is the same at 033, 034 and gate_protocol.
-- Run: iucore selftest 033   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/033.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- a gate opened for a test: through the gate protocol where the database has it
\ir lib/open_gate.sql

-- T0 baseline: the two functions (jsonb, not executable by PUBLIC), the provenance table,
-- the event type (stream template, delayed lane: never deduplicated) and both gates shut
SELECT 'public.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS function,
       format_type(p.prorettype, NULL) AS returns,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_execute
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('fn_iu_auto_instantiate_from_event', 'fn_iu_auto_instantiate_rollback_by_actor')
 ORDER BY 1;

SELECT r.event_domain, r.event_type, r.event_stream, r.delivery_lane, r.active,
       to_regclass('public.iu_auto_instance') IS NOT NULL AS provenance_table
  FROM public.event_type_registry r
 WHERE r.event_domain = 'template' AND r.event_type = 'instance_auto_composed'
 ORDER BY r.event_type;

SELECT key, value FROM public.dot_config
 WHERE key IN ('iu_core.composer_enabled', 'iu_core.auto_instantiate_enabled')
 ORDER BY key;

-- T1 in this transaction only: the event runtime on (so emission is exercised whatever the
-- runtime keys say), the composer gate open to author a template
UPDATE public.dot_config SET value = 'true'
 WHERE key IN ('iu_core.routes_master_enabled', 'piece_event_runtime.emit_enabled');

SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest033');

-- T1 three pieces, composed into the template in the order 3, 2, 1 (not creation order)
CREATE TEMP TABLE selftest033_ids ON COMMIT DROP AS
SELECT n, (public.fn_iu_create('selftest033/piece-' || n, 'piece', 'Piece ' || n, 'selftest033') ->> 'iu_id')::uuid AS iu_id
  FROM generate_series(1, 3) AS n;

SELECT public.fn_iu_compose('selftest033/tpl', 'design_doc', 'Self-test 033 template',
       (SELECT array_agg(iu_id ORDER BY n DESC) FROM selftest033_ids), 'selftest033',
       ARRAY['first', NULL, 'last']) ->> 'status' AS compose_status;

-- T1 what the DO blocks compare before/after, and the answers they keep for the evidence
CREATE TEMP VIEW selftest033_counts AS
SELECT (SELECT count(*) FROM public.iu_collection) AS collections,
       (SELECT count(*) FROM public.iu_collection_member) AS memberships,
       (SELECT count(*) FROM public.information_unit) AS pieces,
       (SELECT count(*) FROM public.iu_auto_instance) AS provenance_rows,
       (SELECT count(*) FROM public.event_outbox WHERE created_at >= now()) AS events,
       (SELECT count(*) FROM public.dot_iu_command_run) AS runs;

CREATE TEMP TABLE selftest033_answers (step text PRIMARY KEY, answer jsonb NOT NULL) ON COMMIT DROP;

-- T2 the composer gate shut: dry_run is refused naming it; live names both shut gates;
-- the rollback by actor is gated the same way; nothing is written
UPDATE public.dot_config SET value = 'false' WHERE key = 'iu_core.composer_enabled';

DO $t2$
DECLARE
    tpl uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest033/tpl');
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    dry jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                         tpl, 'evt-001', 'dry_run', 'selftest033-a', 'selftest 033');
    live jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                          tpl, 'evt-001', 'live', 'selftest033-a', 'selftest 033');
    rb_dry jsonb := public.fn_iu_auto_instantiate_rollback_by_actor('selftest033-a', true);
    rb_live jsonb := public.fn_iu_auto_instantiate_rollback_by_actor('selftest033-a', false);
BEGIN
    IF dry ->> 'status' IS DISTINCT FROM 'refused' OR dry ->> 'reason' IS DISTINCT FROM 'gate_closed'
       OR dry ->> 'gate' IS DISTINCT FROM 'iu_core.composer_enabled'
       OR dry -> 'gates' IS DISTINCT FROM '["iu_core.composer_enabled"]'::jsonb THEN
        RAISE EXCEPTION 'T2: dry_run with the composer gate shut answered %', dry;
    END IF;
    IF live ->> 'status' IS DISTINCT FROM 'refused'
       OR live -> 'gates' IS DISTINCT FROM '["iu_core.composer_enabled", "iu_core.auto_instantiate_enabled"]'::jsonb THEN
        RAISE EXCEPTION 'T2: live with both gates shut answered %', live;
    END IF;
    IF rb_dry ->> 'status' IS DISTINCT FROM 'refused' OR rb_dry -> 'gates' IS DISTINCT FROM '["iu_core.composer_enabled"]'::jsonb
       OR rb_live ->> 'status' IS DISTINCT FROM 'refused'
       OR rb_live -> 'gates' IS DISTINCT FROM '["iu_core.composer_enabled", "iu_core.auto_instantiate_enabled"]'::jsonb THEN
        RAISE EXCEPTION 'T2: the rollback by actor with both gates shut answered % / %', rb_dry, rb_live;
    END IF;
    IF (SELECT to_jsonb(c) FROM selftest033_counts c) IS DISTINCT FROM before THEN
        RAISE EXCEPTION 'T2: a refused call wrote: % -> %', before, (SELECT to_jsonb(c) FROM selftest033_counts c);
    END IF;
    RAISE NOTICE 'T2 refused_as_expected: dry_run % %, live % %, rollback dry % %, rollback live % %; nothing written',
        dry ->> 'status', dry -> 'gates', live ->> 'status', live -> 'gates',
        rb_dry ->> 'status', rb_dry -> 'gates', rb_live ->> 'status', rb_live -> 'gates';
END
$t2$;

-- T3 only the composer gate open: live is refused naming iu_core.auto_instantiate_enabled,
-- and so is the live rollback by actor; nothing is written
SELECT pg_temp.selftest_open_gate('iu_core.composer_enabled', 'selftest033');

DO $t3$
DECLARE
    tpl uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest033/tpl');
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    live jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                          tpl, 'evt-001', 'live', 'selftest033-a', 'selftest 033');
    rb_live jsonb := public.fn_iu_auto_instantiate_rollback_by_actor('selftest033-a', false);
BEGIN
    IF live ->> 'status' IS DISTINCT FROM 'refused' OR live ->> 'reason' IS DISTINCT FROM 'gate_closed'
       OR live ->> 'gate' IS DISTINCT FROM 'iu_core.auto_instantiate_enabled'
       OR live -> 'gates' IS DISTINCT FROM '["iu_core.auto_instantiate_enabled"]'::jsonb
       OR live ->> 'guidance' NOT LIKE '%requires iu_core.composer_enabled AND iu_core.auto_instantiate_enabled%' THEN
        RAISE EXCEPTION 'T3: live with only the composer gate open answered %', live;
    END IF;
    IF rb_live ->> 'status' IS DISTINCT FROM 'refused'
       OR rb_live -> 'gates' IS DISTINCT FROM '["iu_core.auto_instantiate_enabled"]'::jsonb THEN
        RAISE EXCEPTION 'T3: the live rollback by actor with only the composer gate open answered %', rb_live;
    END IF;
    IF (SELECT to_jsonb(c) FROM selftest033_counts c) IS DISTINCT FROM before
       OR EXISTS (SELECT 1 FROM public.iu_collection WHERE collection_key = 'selftest033/tpl.evt-001') THEN
        RAISE EXCEPTION 'T3: a refused call wrote: % -> %', before, (SELECT to_jsonb(c) FROM selftest033_counts c);
    END IF;
    RAISE NOTICE 'T3 refused_as_expected: live % (gate %), rollback live % (gate %); nothing written',
        live ->> 'status', live ->> 'gate', rb_live ->> 'status', rb_live ->> 'gate';
END
$t3$;

-- T4 dry_run with the composer gate open answers what live would create and writes nothing;
-- an unknown emit_mode or template is invalid_input
DO $t4$
DECLARE
    tpl uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest033/tpl');
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    dry jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                         tpl, 'evt-001', 'dry_run', 'selftest033-a', 'selftest 033');
    bad_mode jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                              tpl, 'evt-001', 'maybe', 'selftest033-a', 'selftest 033');
    bad_tpl jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                             gen_random_uuid(), 'evt-001', 'dry_run', 'selftest033-a', 'selftest 033');
    w jsonb := dry -> 'would_create';
    tpl_members jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('piece_order', m.piece_order, 'iu_id', m.iu_id,
                                        'canonical_address', iu.canonical_address, 'label', m.label)
                     ORDER BY m.piece_order)
      INTO tpl_members
      FROM public.iu_collection_member m JOIN public.information_unit iu ON iu.iu_id = m.iu_id
     WHERE m.collection_id = tpl;
    IF dry ->> 'status' IS DISTINCT FROM 'dry_run' OR w ->> 'collection_key' IS DISTINCT FROM 'selftest033/tpl.evt-001'
       OR w ->> 'collection_kind' IS DISTINCT FROM 'design_doc' OR (w ->> 'member_count')::int IS DISTINCT FROM 3
       OR w -> 'members' IS DISTINCT FROM tpl_members
       OR w ->> 'title' NOT LIKE '%selftest.event_fired 00000000-0000-4000-8000-000000000331%'
       OR dry ->> 'would_emit' IS DISTINCT FROM 'template.instance_auto_composed'
       OR (dry ->> 'template_collection_id')::uuid IS DISTINCT FROM tpl THEN
        RAISE EXCEPTION 'T4: dry_run answered %', dry;
    END IF;
    IF bad_mode ->> 'status' IS DISTINCT FROM 'invalid_input' OR bad_mode ->> 'field' IS DISTINCT FROM 'emit_mode'
       OR bad_tpl ->> 'status' IS DISTINCT FROM 'invalid_input' OR bad_tpl ->> 'field' IS DISTINCT FROM 'template_collection_id' THEN
        RAISE EXCEPTION 'T4: bad input answered % / %', bad_mode, bad_tpl;
    END IF;
    IF (SELECT to_jsonb(c) FROM selftest033_counts c) IS DISTINCT FROM before
       OR EXISTS (SELECT 1 FROM public.iu_collection WHERE collection_key = 'selftest033/tpl.evt-001') THEN
        RAISE EXCEPTION 'T4: the dry run wrote: % -> %', before, (SELECT to_jsonb(c) FROM selftest033_counts c);
    END IF;
    INSERT INTO selftest033_answers VALUES ('T4 dry_run', dry);
    RAISE NOTICE 'T4 % would_create % (% members in the template''s order), would_emit %; emit_mode maybe: % (%), unknown template: % (%); nothing written',
        dry ->> 'status', w ->> 'collection_key', w ->> 'member_count', dry ->> 'would_emit',
        bad_mode ->> 'status', bad_mode ->> 'field', bad_tpl ->> 'status', bad_tpl ->> 'field';
END
$t4$;

-- T4 the members the dry run announced: the template's, in the template's order (3, 2, 1)
SELECT (m ->> 'piece_order')::int AS piece_order, m ->> 'canonical_address' AS canonical_address, m ->> 'label' AS label
  FROM selftest033_answers a, jsonb_array_elements(a.answer -> 'would_create' -> 'members') AS m
 WHERE a.step = 'T4 dry_run'
 ORDER BY 1;

-- T5 both gates open: live instantiates the template for the event — the template's members in
-- the same order, one iu_auto_instance row (template, event, actor), the composer events and
-- one template.instance_auto_composed
SELECT pg_temp.selftest_open_gate('iu_core.auto_instantiate_enabled', 'selftest033');

DO $t5$
DECLARE
    tpl uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest033/tpl');
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    dry jsonb := (SELECT answer FROM selftest033_answers WHERE step = 'T4 dry_run');
    a jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000331', 'selftest.event_fired',
                                                       tpl, 'evt-001', 'live', 'selftest033-a', 'selftest 033');
    inst uuid := (a ->> 'instance_collection_id')::uuid;
    coll record;
    prov record;
    got text;
    ev record;
    after jsonb;
BEGIN
    IF a ->> 'status' IS DISTINCT FROM 'instantiated' OR inst IS NULL THEN
        RAISE EXCEPTION 'T5: live answered %', a;
    END IF;
    SELECT * INTO coll FROM public.iu_collection WHERE collection_id = inst;
    IF coll.collection_key IS DISTINCT FROM dry -> 'would_create' ->> 'collection_key'
       OR coll.collection_kind IS DISTINCT FROM 'design_doc' OR coll.title IS DISTINCT FROM dry -> 'would_create' ->> 'title'
       OR coll.created_by IS DISTINCT FROM 'selftest033-a' THEN
        RAISE EXCEPTION 'T5: the instance collection is % (the dry run announced %)', to_jsonb(coll), dry -> 'would_create';
    END IF;
    IF (SELECT jsonb_agg(jsonb_build_array(m.piece_order, m.iu_id, m.label) ORDER BY m.piece_order)
          FROM public.iu_collection_member m WHERE m.collection_id = inst)
       IS DISTINCT FROM
       (SELECT jsonb_agg(jsonb_build_array(m.piece_order, m.iu_id, m.label) ORDER BY m.piece_order)
          FROM public.iu_collection_member m WHERE m.collection_id = tpl) THEN
        RAISE EXCEPTION 'T5: the instance members differ from the template''s (order, piece, label)';
    END IF;
    SELECT count(*) AS n, min(p.template_collection_id::text) AS template, min(p.event_id::text) AS event_id,
           min(p.event_type) AS event_type, min(p.actor) AS actor, min(p.note) AS note
      INTO prov
      FROM public.iu_auto_instance p WHERE p.instance_collection_id = inst;
    IF prov.n <> 1 OR prov.template <> tpl::text OR prov.event_id <> '00000000-0000-4000-8000-000000000331'
       OR prov.event_type <> 'selftest.event_fired' OR prov.actor <> 'selftest033-a' OR prov.note <> 'selftest 033' THEN
        RAISE EXCEPTION 'T5: provenance is %', to_jsonb(prov);
    END IF;
    SELECT string_agg(t.k || ' x' || t.n || '/' || t.lanes, ', ' ORDER BY t.k) INTO got
      FROM (SELECT e.event_domain || '.' || e.event_type AS k, count(*) AS n,
                   string_agg(DISTINCT e.event_stream || ':' || e.delivery_lane, '+') AS lanes
              FROM public.event_outbox e WHERE e.event_subject_ref = inst::text AND e.created_at >= now()
             GROUP BY 1) AS t;
    IF got IS DISTINCT FROM 'iu.collection_created x1/composer:delayed, iu.piece_added_to_collection x3/composer:delayed, template.instance_auto_composed x1/template:delayed' THEN
        RAISE EXCEPTION 'T5: events about the instance: %', got;
    END IF;
    SELECT e.event_id, e.payload, e.actor INTO ev
      FROM public.event_outbox e
     WHERE e.event_domain = 'template' AND e.event_type = 'instance_auto_composed' AND e.event_subject_ref = inst::text AND e.created_at >= now();
    IF ev.event_id::text IS DISTINCT FROM a ->> 'instance_event_id' OR ev.actor <> 'selftest033-a'
       OR ev.payload ->> 'source_event_id' <> '00000000-0000-4000-8000-000000000331'
       OR ev.payload ->> 'source_event_type' <> 'selftest.event_fired'
       OR ev.payload ->> 'template_collection_id' <> tpl::text OR (ev.payload ->> 'member_count')::int <> 3 THEN
        RAISE EXCEPTION 'T5: the template.instance_auto_composed event is % (answer %)', to_jsonb(ev), a;
    END IF;
    after := (SELECT to_jsonb(c) FROM selftest033_counts c);
    IF (after ->> 'collections')::int - (before ->> 'collections')::int <> 1
       OR (after ->> 'memberships')::int - (before ->> 'memberships')::int <> 3
       OR (after ->> 'provenance_rows')::int - (before ->> 'provenance_rows')::int <> 1
       OR (after ->> 'events')::int - (before ->> 'events')::int <> 5
       OR after ->> 'pieces' <> before ->> 'pieces' OR after ->> 'runs' <> before ->> 'runs' THEN
        RAISE EXCEPTION 'T5: live wrote % -> % (expected +1 collection, +3 memberships, +1 provenance row, +5 events)', before, after;
    END IF;
    INSERT INTO selftest033_answers VALUES ('T5 live', a);
    RAISE NOTICE 'T5 % %: members = the template''s (order, piece, label), 1 provenance row, events %',
        a ->> 'status', coll.collection_key, got;
END
$t5$;

-- T5 the instance's members beside the template's, slot by slot
SELECT m.piece_order, 'piece-' || i.n AS piece, m.label,
       (m.iu_id = t.iu_id AND m.label IS NOT DISTINCT FROM t.label) AS same_as_template
  FROM public.iu_collection_member m
 INNER JOIN selftest033_ids i ON i.iu_id = m.iu_id
 INNER JOIN public.iu_collection_member t
    ON t.collection_id = (SELECT ic.collection_id FROM public.iu_collection ic WHERE ic.collection_key = 'selftest033/tpl')
   AND t.piece_order = m.piece_order
 WHERE m.collection_id = (SELECT (sa.answer ->> 'instance_collection_id')::uuid FROM selftest033_answers sa
                           WHERE sa.step = 'T5 live')
 ORDER BY m.piece_order;

-- T5 the provenance of the self-test's instances: template, event, actor
SELECT c.collection_key, a.event_type, a.actor, a.note,
       a.template_collection_id = (SELECT ic.collection_id FROM public.iu_collection ic
                                    WHERE ic.collection_key = 'selftest033/tpl') AS from_template
  FROM public.iu_auto_instance a
 INNER JOIN public.iu_collection c ON c.collection_id = a.instance_collection_id
 WHERE a.actor LIKE 'selftest033-%'
 ORDER BY c.collection_key;

-- T6 a second actor instantiates the same template for another event: another event, never
-- deduplicated; the first suffix again is a duplicate in both modes and writes nothing
DO $t6$
DECLARE
    tpl uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest033/tpl');
    b jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000332', 'selftest.event_fired',
                                                       tpl, 'evt-002', 'live', 'selftest033-b', 'selftest 033 b');
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    dup_dry jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000333', 'selftest.event_fired',
                                                             tpl, 'evt-001', 'dry_run', 'selftest033-b', 'selftest 033 b');
    dup_live jsonb := public.fn_iu_auto_instantiate_from_event('00000000-0000-4000-8000-000000000333', 'selftest.event_fired',
                                                              tpl, 'evt-001', 'live', 'selftest033-b', 'selftest 033 b');
    n_events bigint;
BEGIN
    IF b ->> 'status' IS DISTINCT FROM 'instantiated' OR b ->> 'collection_key' IS DISTINCT FROM 'selftest033/tpl.evt-002' THEN
        RAISE EXCEPTION 'T6: the second actor''s live run answered %', b;
    END IF;
    SELECT count(*) INTO n_events FROM public.event_outbox e
     WHERE e.event_domain = 'template' AND e.event_type = 'instance_auto_composed'
       AND e.payload ->> 'template_collection_id' = tpl::text AND e.created_at >= now();
    IF n_events <> 2 THEN
        RAISE EXCEPTION 'T6: % template.instance_auto_composed events for the template, expected 2', n_events;
    END IF;
    IF dup_dry ->> 'status' IS DISTINCT FROM 'duplicate' OR dup_live ->> 'status' IS DISTINCT FROM 'duplicate'
       OR dup_live ->> 'collection_id' IS DISTINCT FROM (SELECT answer ->> 'instance_collection_id' FROM selftest033_answers WHERE step = 'T5 live')
       OR (SELECT to_jsonb(c) FROM selftest033_counts c) IS DISTINCT FROM before THEN
        RAISE EXCEPTION 'T6: the duplicate suffix answered % / % or wrote', dup_dry, dup_live;
    END IF;
    RAISE NOTICE 'T6 % %; 2 template.instance_auto_composed events; evt-001 again: dry_run %, live %, nothing written',
        b ->> 'status', b ->> 'collection_key', dup_dry ->> 'status', dup_live ->> 'status';
END
$t6$;

-- T7 rollback by actor, dry run: lists selftest033-a's instance and what would go, writes nothing
DO $t7$
DECLARE
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    r jsonb := public.fn_iu_auto_instantiate_rollback_by_actor('selftest033-a', true);
BEGIN
    IF r ->> 'status' IS DISTINCT FROM 'dry_run' OR (r ->> 'instance_count')::int IS DISTINCT FROM 1
       OR r -> 'would_remove' IS DISTINCT FROM '{"collections": 1, "memberships": 3, "provenance_rows": 1}'::jsonb
       OR jsonb_array_length(r -> 'instances') <> 1
       OR r -> 'instances' -> 0 ->> 'instance_collection_id'
          IS DISTINCT FROM (SELECT answer ->> 'instance_collection_id' FROM selftest033_answers WHERE step = 'T5 live') THEN
        RAISE EXCEPTION 'T7: the dry rollback answered %', r;
    END IF;
    IF (SELECT to_jsonb(c) FROM selftest033_counts c) IS DISTINCT FROM before THEN
        RAISE EXCEPTION 'T7: the dry rollback wrote: % -> %', before, (SELECT to_jsonb(c) FROM selftest033_counts c);
    END IF;
    INSERT INTO selftest033_answers VALUES ('T7 rollback dry_run', r);
    RAISE NOTICE 'T7 % instance_count=% would_remove=%; nothing written', r ->> 'status', r ->> 'instance_count', r -> 'would_remove';
END
$t7$;

-- T7 the instances the dry run lists for selftest033-a
SELECT i ->> 'collection_key' AS collection_key, i ->> 'event_type' AS event_type,
       (i ->> 'member_count')::int AS member_count, i ->> 'note' AS note
  FROM selftest033_answers a, jsonb_array_elements(a.answer -> 'instances') AS i
 WHERE a.step = 'T7 rollback dry_run'
 ORDER BY 1;

-- T8 rollback by actor, live: selftest033-a's instance goes (collection, memberships, provenance);
-- selftest033-b's instance, the template, the pieces and the outbox events stay; a repeat removes 0
DO $t8$
DECLARE
    tpl uuid := (SELECT collection_id FROM public.iu_collection WHERE collection_key = 'selftest033/tpl');
    inst_a uuid := (SELECT (answer ->> 'instance_collection_id')::uuid FROM selftest033_answers WHERE step = 'T5 live');
    before jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
    r jsonb := public.fn_iu_auto_instantiate_rollback_by_actor('selftest033-a', false);
    again jsonb := public.fn_iu_auto_instantiate_rollback_by_actor('selftest033-a', false);
    after jsonb := (SELECT to_jsonb(c) FROM selftest033_counts c);
BEGIN
    IF r ->> 'status' IS DISTINCT FROM 'rolled_back'
       OR (r ->> 'collections_removed')::int <> 1 OR (r ->> 'memberships_removed')::int <> 3
       OR (r ->> 'provenance_rows_removed')::int <> 1 THEN
        RAISE EXCEPTION 'T8: the live rollback answered %', r;
    END IF;
    IF EXISTS (SELECT 1 FROM public.iu_collection WHERE collection_id = inst_a)
       OR EXISTS (SELECT 1 FROM public.iu_collection_member WHERE collection_id = inst_a)
       OR EXISTS (SELECT 1 FROM public.iu_auto_instance WHERE actor = 'selftest033-a') THEN
        RAISE EXCEPTION 'T8: selftest033-a''s instance is still there';
    END IF;
    IF (SELECT count(*) FROM public.iu_auto_instance a
          JOIN public.iu_collection_member m ON m.collection_id = a.instance_collection_id
         WHERE a.actor = 'selftest033-b') <> 3
       OR (SELECT count(*) FROM public.iu_collection_member WHERE collection_id = tpl) <> 3
       OR (SELECT count(*) FROM public.information_unit iu JOIN selftest033_ids i ON i.iu_id = iu.iu_id
            WHERE iu.lifecycle_status = 'active' AND iu.deleted_at IS NULL) <> 3 THEN
        RAISE EXCEPTION 'T8: the live rollback touched another actor''s instance, the template or a piece';
    END IF;
    IF (after ->> 'collections')::int - (before ->> 'collections')::int <> -1
       OR (after ->> 'memberships')::int - (before ->> 'memberships')::int <> -3
       OR (after ->> 'provenance_rows')::int - (before ->> 'provenance_rows')::int <> -1
       OR after ->> 'events' <> before ->> 'events' OR after ->> 'pieces' <> before ->> 'pieces' THEN
        RAISE EXCEPTION 'T8: the live rollback changed % -> % (expected -1 collection, -3 memberships, -1 provenance row, events and pieces kept)', before, after;
    END IF;
    IF again ->> 'status' IS DISTINCT FROM 'rolled_back' OR (again ->> 'collections_removed')::int <> 0 THEN
        RAISE EXCEPTION 'T8: a repeated rollback answered %', again;
    END IF;
    RAISE NOTICE 'T8 % collections_removed=% memberships_removed=% provenance_rows_removed=%; other actor, template, pieces and events kept; again: % %',
        r ->> 'status', r ->> 'collections_removed', r ->> 'memberships_removed', r ->> 'provenance_rows_removed',
        again ->> 'status', again ->> 'collections_removed';
END
$t8$;

-- T9 what is left of the self-test's instances: only selftest033-b's
SELECT a.actor, c.collection_key,
       (SELECT count(*) FROM public.iu_collection_member m WHERE m.collection_id = c.collection_id) AS members
  FROM public.iu_auto_instance a
 INNER JOIN public.iu_collection c ON c.collection_id = a.instance_collection_id
 WHERE a.actor LIKE 'selftest033-%'
 ORDER BY a.actor, c.collection_key;

ROLLBACK;
