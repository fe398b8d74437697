-- =============================================================================
-- 260 — fail-closed rollback: unregister the composer event family.
--
-- Deletes the 8 iu_composer_* routes and the 8 composer event types, and
-- nothing else. The guard refuses (and nothing changes) while:
--   * the database is not at 260 (a type or route is missing);
--   * revision 017 is still applied (it emits piece_soft_deleted /
--     piece_restored) — roll it back first;
--   * any event_outbox row of the 8 types exists: those events would lose
--     their registry row (stream, lane, severity) — they are data;
--   * any route attempt or dead letter references one of the 8 routes.
-- The guard takes SHARE locks on event_outbox, iu_route_attempt and
-- iu_route_dead_letter, so no composer event or attempt can be written between
-- the check and the delete (lock_timeout bounds the wait).
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/260.sql "<database url>"
-- =============================================================================

-- @guard

DO $guard$
DECLARE
    c_types text[] := ARRAY['collection_created', 'piece_added_to_collection',
                            'piece_removed_from_collection', 'piece_reordered',
                            'collection_rendered', 'collection_validated',
                            'piece_soft_deleted', 'piece_restored'];
    v_missing text[];
BEGIN
    SELECT array_agg(t) INTO v_missing
      FROM unnest(ARRAY['public.event_type_registry', 'public.event_outbox', 'public.iu_outbound_route',
                        'public.iu_route_attempt', 'public.iu_route_dead_letter']) AS t
     WHERE to_regclass(t) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '260 rollback refused: table(s) % missing — the database is not at revision 260; inspect it ("iucore db current") before rolling back',
            array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(x) INTO v_missing FROM (
        SELECT 'event type iu.' || t AS x FROM unnest(c_types) AS t
         WHERE NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                            WHERE r.event_domain = 'iu' AND r.event_type = t)
        UNION ALL
        SELECT 'route iu_composer_' || t FROM unnest(c_types) AS t
         WHERE NOT EXISTS (SELECT 1 FROM public.iu_outbound_route r WHERE r.route_code = 'iu_composer_' || t)
    ) AS m;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '260 rollback refused: % missing — the database is not at revision 260; inspect it ("iucore db current") before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

DO $guard$
DECLARE
    v_present text[];
BEGIN
    SELECT array_agg(DISTINCT 'public.' || p.proname) INTO v_present
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proname IN ('fn_iu_piece_soft_delete', 'fn_iu_piece_restore');
    IF v_present IS NOT NULL THEN
        RAISE EXCEPTION '260 rollback refused: % still present — revision 017 is still applied and emits piece_soft_deleted / piece_restored; roll it back first (iucore db downgrade 260)',
            array_to_string(v_present, ', ');
    END IF;
END
$guard$;

-- Hold writers off until commit: nothing can slip in between check and delete.
LOCK TABLE public.event_outbox, public.iu_route_attempt, public.iu_route_dead_letter IN SHARE MODE;

DO $guard$
DECLARE
    c_types text[] := ARRAY['collection_created', 'piece_added_to_collection',
                            'piece_removed_from_collection', 'piece_reordered',
                            'collection_rendered', 'collection_validated',
                            'piece_soft_deleted', 'piece_restored'];
    v_events   text;
    v_attempts bigint;
    v_dead     bigint;
BEGIN
    SELECT string_agg(format('%s %s', n, event_type), ', ' ORDER BY event_type) INTO v_events
      FROM (SELECT e.event_type, count(*) AS n
              FROM public.event_outbox e
             WHERE e.event_domain = 'iu' AND e.event_type = ANY (c_types)
             GROUP BY e.event_type) AS g;
    IF v_events IS NOT NULL THEN
        RAISE EXCEPTION '260 rollback refused: composer events exist in public.event_outbox (%) — they would lose their event_type_registry row; export them (iucore db backup) and delete them deliberately, or keep 260',
            v_events;
    END IF;

    SELECT count(*) INTO v_attempts FROM public.iu_route_attempt a
     WHERE a.route_code IN (SELECT 'iu_composer_' || t FROM unnest(c_types) AS t);
    SELECT count(*) INTO v_dead FROM public.iu_route_dead_letter d
     WHERE d.route_code IN (SELECT 'iu_composer_' || t FROM unnest(c_types) AS t);
    IF v_attempts > 0 OR v_dead > 0 THEN
        RAISE EXCEPTION '260 rollback refused: % route attempt(s) and % dead letter(s) reference the iu_composer_* routes — delivery history would be lost; export and delete it deliberately, or keep 260',
            v_attempts, v_dead;
    END IF;
END
$guard$;

-- @body

DELETE FROM public.iu_outbound_route
 WHERE route_code IN ('iu_composer_collection_created', 'iu_composer_piece_added_to_collection',
                      'iu_composer_piece_removed_from_collection', 'iu_composer_piece_reordered',
                      'iu_composer_collection_rendered', 'iu_composer_collection_validated',
                      'iu_composer_piece_soft_deleted', 'iu_composer_piece_restored');

DELETE FROM public.event_type_registry
 WHERE event_domain = 'iu'
   AND event_type IN ('collection_created', 'piece_added_to_collection',
                      'piece_removed_from_collection', 'piece_reordered',
                      'collection_rendered', 'collection_validated',
                      'piece_soft_deleted', 'piece_restored');

-- @assert

-- Exactly the substrate's 8 event types and 2 routes, as the substrate made them.
DO $assert$
DECLARE
    v_types  text[];
    v_routes text[];
BEGIN
    SELECT array_agg(r.event_domain || '.' || r.event_type || ':' || r.event_stream || ':' || r.delivery_lane
                     ORDER BY r.event_domain, r.event_type) INTO v_types
      FROM public.event_type_registry r;
    IF v_types IS DISTINCT FROM ARRAY[
           'iu.iu_created:lifecycle:immediate',
           'iu.iu_metadata_axes_refreshed:lifecycle:immediate',
           'iu.iu_retired:lifecycle:immediate',
           'iu.structure_child_added:structure:immediate',
           'iu.structure_op_applied:structure:immediate',
           'iu.structure_piece_split:structure:immediate',
           'iu.structure_pieces_merged:structure:immediate',
           'system.route_worker_run:system:immediate'] THEN
        RAISE EXCEPTION '260 rollback assert: event_type_registry is not the substrate''s 8 types: %', v_types;
    END IF;

    SELECT array_agg(r.route_code ORDER BY r.route_code) INTO v_routes FROM public.iu_outbound_route r;
    IF v_routes IS DISTINCT FROM ARRAY['iu_outbound_default', 'iu_structure_consumer'] THEN
        RAISE EXCEPTION '260 rollback assert: iu_outbound_route is not the substrate''s 2 routes: %', v_routes;
    END IF;
END
$assert$;
