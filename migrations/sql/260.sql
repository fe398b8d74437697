-- =============================================================================
-- 260 — the composer event family (seeds 001, 003 §7).
--
-- Registers 8 event types (domain 'iu', stream 'composer', lane 'delayed',
-- active) and one outbound route per type (iu_composer_<type>, webhook
-- composer/<type>, dry_run, enabled, fail_closed).
--
-- Why 'delayed': event_outbox's partial unique index idx_event_outbox_idempotent
-- (event_domain, event_type, event_subject_ref) WHERE delivery_lane='immediate'
-- absorbs every repeat of (type, subject). Every composer delta of a collection
-- shares event_subject_ref = the collection id, so on the immediate lane every
-- delta after the first was silently dropped (seed 003 §7). The delayed lane
-- is never deduplicated; the post-check proves it inside the transaction.
--
-- Why dry_run: no composer route delivers anywhere (seed 001 §3). Even if one
-- were flipped live, a 'webhook' target is refused by fn_iu_route_deliver
-- (feature_not_supported): external delivery is structurally impossible.
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/260.sql "<database url>"
-- Paired rollback: rollbacks/260.sql.
-- =============================================================================

-- @preflight

-- 016 (the emitter and the re-wired composer) and the substrate's event
-- machinery must be there.
DO $preflight$
DECLARE
    v_missing text[];
BEGIN
    SELECT array_agg(f) INTO v_missing
      FROM unnest(ARRAY['public.fn_iu_composer_emit(text,uuid,jsonb,text)',
                        'public.fn_iu_collection_checkpoint(uuid,text)',
                        'public.fn_iu_emit_event(text,text,text,jsonb,text)',
                        'public.fn_iu_route_worker_run(text,integer)']) AS f
     WHERE to_regprocedure(f) IS NULL;
    v_missing := coalesce(v_missing, '{}') || coalesce((
        SELECT array_agg(t) FROM unnest(ARRAY['public.event_type_registry', 'public.event_outbox',
                                              'public.iu_outbound_route', 'public.iu_route_attempt',
                                              'public.iu_route_dead_letter', 'public.dot_config']) AS t
         WHERE to_regclass(t) IS NULL), '{}');
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION '260 preflight: migration 016 substrate missing (%) — apply 016 first (iucore db upgrade 016)',
            array_to_string(v_missing, ', ');
    END IF;
END
$preflight$;

-- Refuse to re-apply over ourselves: none of the 8 types or routes may exist.
DO $preflight$
DECLARE
    c_types text[] := ARRAY['collection_created', 'piece_added_to_collection',
                            'piece_removed_from_collection', 'piece_reordered',
                            'collection_rendered', 'collection_validated',
                            'piece_soft_deleted', 'piece_restored'];
    v_present text[];
BEGIN
    SELECT array_agg('event type iu.' || r.event_type ORDER BY r.event_type) INTO v_present
      FROM public.event_type_registry r
     WHERE r.event_domain = 'iu' AND r.event_type = ANY (c_types);
    v_present := coalesce(v_present, '{}') || coalesce((
        SELECT array_agg('route ' || r.route_code ORDER BY r.route_code)
          FROM public.iu_outbound_route r
         WHERE r.route_code IN (SELECT 'iu_composer_' || t FROM unnest(c_types) AS t)), '{}');
    IF cardinality(v_present) > 0 THEN
        RAISE EXCEPTION '260 preflight: % composer event type(s)/route(s) already present (%) — already applied? Check "iucore db current"; to re-apply, roll back first with rollbacks/260.sql',
            cardinality(v_present), array_to_string(v_present, ', ');
    END IF;
END
$preflight$;

-- The lane fix relies on the idempotency index deduplicating the immediate lane
-- ONLY. If it covered every lane, registering on 'delayed' would not help.
DO $preflight$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                    WHERE i.indexrelid = to_regclass('public.idx_event_outbox_idempotent')
                      AND i.indrelid = 'public.event_outbox'::regclass
                      AND i.indisunique
                      AND pg_get_expr(i.indpred, i.indrelid) = '(delivery_lane = ''immediate''::text)') THEN
        RAISE EXCEPTION '260 preflight: public.idx_event_outbox_idempotent is not the partial unique index WHERE delivery_lane = ''immediate'' the substrate created — inspect event_outbox''s indexes; the composer family would be deduplicated';
    END IF;
END
$preflight$;

-- @body

INSERT INTO public.event_type_registry
    (event_domain, event_type, event_stream, delivery_lane, default_severity, description, active)
VALUES
    ('iu', 'collection_created', 'composer', 'delayed', 'info',
     'A collection was composed (fn_iu_compose); subject is the collection id.', true),
    ('iu', 'piece_added_to_collection', 'composer', 'delayed', 'info',
     'A piece joined a collection (compose or add_piece); subject is the collection id.', true),
    ('iu', 'piece_removed_from_collection', 'composer', 'delayed', 'info',
     'A piece left a collection; the piece itself stays. Subject is the collection id.', true),
    ('iu', 'piece_reordered', 'composer', 'delayed', 'info',
     'A piece moved within a collection (payload: iu_id, old_order, new_order); subject is the collection id.', true),
    ('iu', 'collection_rendered', 'composer', 'delayed', 'info',
     'A collection was checkpointed: validated, rendered, digest recorded; subject is the collection id.', true),
    ('iu', 'collection_validated', 'composer', 'delayed', 'info',
     'A collection was validated; subject is the collection id.', true),
    ('iu', 'piece_soft_deleted', 'composer', 'delayed', 'info',
     'A piece was soft-deleted (restorable, revision 017); subject is the piece id.', true),
    ('iu', 'piece_restored', 'composer', 'delayed', 'info',
     'A soft-deleted piece was restored (revision 017); subject is the piece id.', true);

-- One route per type. The payload contract names the key the worker requires:
-- collection events carry collection_id (fn_iu_composer_emit adds it), the
-- piece lifecycle pair carries iu_id.
INSERT INTO public.iu_outbound_route
    (route_code, event_domain, event_type, target_kind, target_ref, payload_contract,
     fail_closed, dry_run, enabled, description)
SELECT 'iu_composer_' || t.event_type, 'iu', t.event_type, 'webhook', 'composer/' || t.event_type,
       jsonb_build_object('required', jsonb_build_array(t.required_key)),
       true, true, true,
       'Composer event ' || t.event_type || '; dry-run only (a webhook target is never delivered).'
  FROM (VALUES ('collection_created', 'collection_id'),
               ('piece_added_to_collection', 'collection_id'),
               ('piece_removed_from_collection', 'collection_id'),
               ('piece_reordered', 'collection_id'),
               ('collection_rendered', 'collection_id'),
               ('collection_validated', 'collection_id'),
               ('piece_soft_deleted', 'iu_id'),
               ('piece_restored', 'iu_id')) AS t (event_type, required_key)
 ORDER BY t.event_type;

-- @postcheck

DO $postcheck$
DECLARE
    c_types text[] := ARRAY['collection_created', 'piece_added_to_collection',
                            'piece_removed_from_collection', 'piece_reordered',
                            'collection_rendered', 'collection_validated',
                            'piece_soft_deleted', 'piece_restored'];
    v_bad  text[];
    v_n    integer;
BEGIN
    SELECT array_agg(t) INTO v_bad FROM unnest(c_types) AS t
     WHERE NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                        WHERE r.event_domain = 'iu' AND r.event_type = t
                          AND r.event_stream = 'composer' AND r.delivery_lane = 'delayed' AND r.active);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '260 post-check: event type(s) not registered as iu/composer/delayed/active: %',
            array_to_string(v_bad, ', ');
    END IF;

    -- The whole composer stream is on the delayed lane (the seed 003 §7 defect).
    SELECT array_agg(r.event_type) INTO v_bad
      FROM public.event_type_registry r
     WHERE r.event_stream = 'composer' AND r.delivery_lane <> 'delayed';
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '260 post-check: composer type(s) on a deduplicating lane: %', array_to_string(v_bad, ', ');
    END IF;

    SELECT array_agg(t) INTO v_bad FROM unnest(c_types) AS t
     WHERE NOT EXISTS (SELECT 1 FROM public.iu_outbound_route r
                        WHERE r.route_code = 'iu_composer_' || t
                          AND r.event_domain = 'iu' AND r.event_type = t
                          AND r.target_kind = 'webhook' AND r.target_ref = 'composer/' || t
                          AND r.dry_run AND r.enabled AND r.fail_closed);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '260 post-check: route(s) missing or not webhook/dry_run/enabled/fail_closed: %',
            array_to_string(v_bad, ', ');
    END IF;

    -- Every composer route is dry-run: no composer event is ever delivered.
    SELECT count(*) INTO v_n
      FROM public.iu_outbound_route r
     WHERE (r.route_code LIKE 'iu\_composer\_%' OR (r.event_domain = 'iu' AND r.event_type = ANY (c_types)))
       AND NOT r.dry_run;
    IF v_n > 0 THEN
        RAISE EXCEPTION '260 post-check: % composer route(s) not dry_run', v_n;
    END IF;

    SELECT count(*) INTO v_n FROM public.iu_outbound_route WHERE route_code LIKE 'iu\_composer\_%';
    IF v_n <> 8 THEN
        RAISE EXCEPTION '260 post-check: % iu_composer_* routes, expected 8', v_n;
    END IF;
END
$postcheck$;

-- The self-check of seed 003 §7: several composer deltas for ONE subject must
-- all land, as distinct rows, on the delayed lane. The probe goes through the
-- real path (fn_iu_composer_emit → fn_iu_emit_event); where emission is gated
-- off in this database it writes the rows directly, honouring the registry's
-- stream and lane and the emitter's ON CONFLICT, which is what deduplicated.
-- It runs in a subtransaction that is always undone: the post-check leaves no row.
DO $postcheck$
DECLARE
    v_probe    uuid := gen_random_uuid();
    v_id       uuid;
    v_ids      uuid[] := '{}';
    v_path     text := 'fn_iu_composer_emit';
    v_rows     integer;
    v_distinct integer;
    v_lanes    text[];
BEGIN
    BEGIN
        FOR i IN 1..3 LOOP
            v_id := public.fn_iu_composer_emit('piece_added_to_collection', v_probe,
                        jsonb_build_object('iu_id', gen_random_uuid(), 'piece_order', i - 1, 'probe', '260_postcheck'),
                        '260_postcheck');
            IF v_id IS NULL AND i = 1 THEN
                v_path := 'direct_insert';   -- emission gated off here (routes master / emit runtime)
            END IF;
            IF v_id IS NULL AND v_path = 'direct_insert' THEN
                INSERT INTO public.event_outbox
                    (event_domain, event_type, event_stream, delivery_lane, event_subject_ref, payload, actor)
                SELECT r.event_domain, r.event_type, r.event_stream, r.delivery_lane, v_probe::text,
                       jsonb_build_object('collection_id', v_probe, 'piece_order', i - 1, 'probe', '260_postcheck'),
                       '260_postcheck'
                  FROM public.event_type_registry r
                 WHERE r.event_domain = 'iu' AND r.event_type = 'piece_added_to_collection'
                ON CONFLICT (event_domain, event_type, event_subject_ref) WHERE delivery_lane = 'immediate'
                DO NOTHING
                RETURNING event_id INTO v_id;
            END IF;
            v_ids := v_ids || v_id;
        END LOOP;

        SELECT count(*), count(DISTINCT e.event_id), array_agg(DISTINCT e.delivery_lane)
          INTO v_rows, v_distinct, v_lanes
          FROM public.event_outbox e
         WHERE e.event_domain = 'iu' AND e.event_type = 'piece_added_to_collection'
           AND e.event_subject_ref = v_probe::text;

        RAISE EXCEPTION USING ERRCODE = 'IUP60', MESSAGE = 'undo the probe';
    EXCEPTION
        WHEN SQLSTATE 'IUP60' THEN NULL;
    END;

    IF array_position(v_ids, NULL) IS NOT NULL OR v_rows <> 3 OR v_distinct <> 3
       OR v_lanes IS DISTINCT FROM ARRAY['delayed'] THEN
        RAISE EXCEPTION '260 post-check: composer deltas for one subject were deduplicated (seed 003 §7): 3 emitted via %, % landed (% distinct, lanes %, ids %)',
            v_path, v_rows, v_distinct, v_lanes, v_ids;
    END IF;
    RAISE NOTICE '260 post-check: 3 piece_added_to_collection deltas for one subject landed as 3 distinct delayed-lane rows via % (probe undone)', v_path;

    IF EXISTS (SELECT 1 FROM public.event_outbox e WHERE e.event_subject_ref = v_probe::text) THEN
        RAISE EXCEPTION '260 post-check: probe rows left behind';
    END IF;
END
$postcheck$;

SELECT '260_composer_family' AS "check",
       (SELECT count(*) FROM public.event_type_registry r
         WHERE r.event_domain = 'iu' AND r.event_stream = 'composer'
           AND r.delivery_lane = 'delayed' AND r.active) AS composer_types_delayed,
       (SELECT count(*) FROM public.iu_outbound_route r
         WHERE r.route_code LIKE 'iu\_composer\_%') AS composer_routes,
       (SELECT count(*) FROM public.iu_outbound_route r
         WHERE r.route_code LIKE 'iu\_composer\_%' AND r.dry_run) AS composer_routes_dry_run,
       (SELECT count(*) FROM public.event_type_registry) AS event_types_total,
       (SELECT count(*) FROM public.iu_outbound_route) AS routes_total;
