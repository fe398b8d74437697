-- =============================================================================
-- substrate — fail-closed rollback of the first revision.
--
-- Removes everything migrations/sql/substrate.sql created, and nothing else —
-- but only when that loses nothing: no data row in any substrate table, no
-- catalog row or extra config / event type / route (a later revision is still
-- applied), no protocol gate open. Otherwise the guard refuses and nothing
-- changes. Drops are deliberately without CASCADE or IF EXISTS: an object of
-- a later revision that still depends on the substrate, or a substrate object
-- that is already gone, makes the rollback fail as a whole.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/substrate.sql "<database url>"
-- =============================================================================

-- @guard

-- Fail closed: every table the guard must inspect has to be there. If one is
-- missing the database is not at this revision and rolling back blind is unsafe.
DO $guard$
DECLARE
    c_tables text[] := ARRAY[
        'public.dot_config', 'public.dot_iu_command_catalog', 'public.dot_iu_command_run',
        'public.information_unit', 'public.iu_collection', 'public.iu_collection_member',
        'public.event_type_registry', 'public.event_outbox', 'public.iu_outbound_route',
        'public.iu_route_attempt', 'public.iu_route_dead_letter',
        'cutter_governance.manifest_envelope', 'cutter_governance.manifest_unit_block',
        'cutter_governance.review_decision'];
    v_missing text[];
BEGIN
    SELECT array_agg(t) INTO v_missing FROM unnest(c_tables) AS t WHERE to_regclass(t) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate rollback refused: table(s) % missing — the database is not at the substrate revision (something else is wrong); inspect it before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- Later revisions still applied: they add catalog rows (280, 034, gate_protocol),
-- config keys (033), event types and routes (260). Roll those back first.
DO $guard$
DECLARE
    v_catalog  bigint;
    v_config   text[];
    v_types    text[];
    v_routes   text[];
BEGIN
    SELECT count(*) INTO v_catalog FROM public.dot_iu_command_catalog;
    IF v_catalog > 0 THEN
        RAISE EXCEPTION 'substrate rollback refused: public.dot_iu_command_catalog has % row(s) — later revisions (e.g. 280) are still applied; roll those back first',
            v_catalog;
    END IF;

    SELECT array_agg(c.key ORDER BY c.key) INTO v_config
      FROM public.dot_config c
     WHERE c.key NOT IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled',
                         'iu_core.delivery_enabled', 'iu_core.three_axis_auto_refresh_enabled',
                         'iu_core.operator_runtime_enabled', 'queue.job_substrate.enabled',
                         'queue.dlq.replay_enabled', 'iu_enact.allow_no_review_decision',
                         'iu_core.vector_sync_enabled', 'iu_core.routes_master_enabled',
                         'iu_core.route_worker_enabled', 'piece_event_runtime.emit_enabled',
                         'iu_core.delivery_live_routes', 'iu_sql_link.enabled');
    IF v_config IS NOT NULL THEN
        RAISE EXCEPTION 'substrate rollback refused: public.dot_config has key(s) the substrate did not create (%) — a later revision is still applied; roll it back first',
            array_to_string(v_config, ', ');
    END IF;

    SELECT array_agg(r.event_domain || '/' || r.event_type ORDER BY r.event_domain, r.event_type) INTO v_types
      FROM public.event_type_registry r
     WHERE (r.event_domain, r.event_type) NOT IN (
               ('iu', 'iu_created'), ('iu', 'iu_retired'), ('iu', 'iu_metadata_axes_refreshed'),
               ('iu', 'structure_piece_split'), ('iu', 'structure_pieces_merged'),
               ('iu', 'structure_op_applied'), ('iu', 'structure_child_added'),
               ('system', 'route_worker_run'));
    IF v_types IS NOT NULL THEN
        RAISE EXCEPTION 'substrate rollback refused: public.event_type_registry has type(s) the substrate did not register (%) — a later revision (e.g. 260) is still applied; roll it back first',
            array_to_string(v_types, ', ');
    END IF;

    SELECT array_agg(r.route_code ORDER BY r.route_code) INTO v_routes
      FROM public.iu_outbound_route r
     WHERE r.route_code NOT IN ('iu_outbound_default', 'iu_structure_consumer');
    IF v_routes IS NOT NULL THEN
        RAISE EXCEPTION 'substrate rollback refused: public.iu_outbound_route has route(s) the substrate did not create (%) — a later revision (e.g. 260) is still applied; roll it back first',
            array_to_string(v_routes, ', ');
    END IF;
END
$guard$;

-- Never tear the gates down while one is open (seed 002 A6): close it first.
DO $guard$
DECLARE
    v_open text[];
BEGIN
    SELECT array_agg(c.key ORDER BY c.key) INTO v_open
      FROM public.dot_config c
     WHERE c.value = 'true'
       AND c.key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled',
                     'iu_core.delivery_enabled', 'iu_core.three_axis_auto_refresh_enabled',
                     'iu_core.operator_runtime_enabled', 'queue.job_substrate.enabled',
                     'queue.dlq.replay_enabled', 'iu_enact.allow_no_review_decision',
                     'iu_core.vector_sync_enabled');
    IF v_open IS NOT NULL THEN
        RAISE EXCEPTION 'substrate rollback refused: % protocol gate(s) currently OPEN (%) — close them first (iucore gate close GATE)',
            cardinality(v_open), array_to_string(v_open, ', ');
    END IF;
END
$guard$;

-- Rolling back drops the tables; any data row would be lost for good.
DO $guard$
DECLARE
    c_tables text[] := ARRAY[
        'public.information_unit', 'public.iu_collection', 'public.iu_collection_member',
        'public.dot_iu_command_run', 'public.event_outbox', 'public.iu_route_attempt',
        'public.iu_route_dead_letter', 'cutter_governance.review_decision',
        'cutter_governance.manifest_envelope', 'cutter_governance.manifest_unit_block'];
    v_table text;
    v_rows  bigint;
    v_found text[] := '{}';
BEGIN
    FOREACH v_table IN ARRAY c_tables LOOP
        EXECUTE format('SELECT count(*) FROM %s', v_table) INTO v_rows;
        IF v_rows > 0 THEN
            v_found := v_found || format('%s has %s row(s)', v_table, v_rows);
        END IF;
    END LOOP;
    IF cardinality(v_found) > 0 THEN
        RAISE EXCEPTION 'substrate rollback refused: data would be lost — %; export it (iucore db backup) and delete it deliberately before rolling back',
            array_to_string(v_found, '; ');
    END IF;
END
$guard$;

-- @body

DROP FUNCTION public.fn_iu_observe(text, integer);
DROP VIEW public.v_iu_route_dead_letter_open;
DROP VIEW public.v_iu_route_attempt_summary;
DROP VIEW public.v_iu_composer_event_backlog;
DROP VIEW public.v_iu_collection_manifest;
DROP VIEW public.v_iu_collection_health;
DROP VIEW public.v_dot_iu_command_run_health;
DROP VIEW public.v_dot_iu_command_registry;

-- Triggers first, so their functions can go with the others.
DROP TRIGGER trg_event_outbox_type_validate ON public.event_outbox;
DROP TRIGGER trg_dot_config_touch ON public.dot_config;

DROP FUNCTION public.fn_iu_piece_merge(uuid[], text, uuid, text, boolean);
DROP FUNCTION public.fn_iu_piece_split(uuid, jsonb, uuid, text, boolean);
DROP FUNCTION public.fn_iu_healthcheck();
DROP FUNCTION public.fn_iu_refresh_metadata_axes(uuid, text);
DROP FUNCTION public.fn_iu_retire(uuid, text, text);
DROP FUNCTION public.fn_iu_workflow_from_steps(text, text, jsonb, text);
DROP FUNCTION public.fn_iu_collection_render(uuid);
DROP FUNCTION public.fn_iu_collection_validate(uuid);
DROP FUNCTION public.fn_iu_collection_reorder_piece(uuid, uuid, integer, text);
DROP FUNCTION public.fn_iu_collection_remove_piece(uuid, uuid, text);
DROP FUNCTION public.fn_iu_collection_add_piece(uuid, uuid, text, integer, text);
DROP FUNCTION public.fn_iu_compose(text, text, text, uuid[], text, text[]);
DROP FUNCTION public.fn_iu_create(text, text, text, text, text);
DROP FUNCTION public.fn_iu_route_worker_run(text, integer);
DROP FUNCTION public.fn_iu_route_deliver(text, uuid);
DROP FUNCTION public.fn_iu_structure_consumer(uuid);
-- The piece path of the emit gating (a correction, docs/seeds.md).
DROP FUNCTION public.fn_iu_piece_emit_event(text, uuid, jsonb, text);
DROP FUNCTION public.fn_iu_emit_event(text, text, text, jsonb, text);
DROP FUNCTION public.fn_event_outbox_type_validate();
DROP FUNCTION public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text);
DROP FUNCTION public.fn_iu_delivery_enabled();
DROP FUNCTION public.fn_iu_core_routes_enabled();
DROP FUNCTION public.fn_iu_gate_is_open(text);
DROP FUNCTION public.fn_dot_config_touch();

-- Children before parents.
DROP TABLE public.iu_route_attempt;
DROP TABLE public.iu_route_dead_letter;
DROP TABLE public.iu_outbound_route;
DROP TABLE public.event_outbox;
DROP TABLE public.event_type_registry;
DROP TABLE public.iu_collection_member;
DROP TABLE public.iu_collection;
DROP TABLE public.information_unit;
DROP TABLE public.dot_iu_command_run;
DROP TABLE public.dot_iu_command_catalog;
DROP TABLE public.dot_config;
DROP TABLE cutter_governance.review_decision;
DROP TABLE cutter_governance.manifest_unit_block;
DROP TABLE cutter_governance.manifest_envelope;

-- RESTRICT (the default): a schema holding anything we did not create stays.
DROP SCHEMA cutter_governance;

-- @assert

DO $assert$
DECLARE
    c_relations text[] := ARRAY[
        'public.dot_config', 'public.dot_iu_command_catalog', 'public.dot_iu_command_run',
        'public.information_unit', 'public.iu_collection', 'public.iu_collection_member',
        'public.event_type_registry', 'public.event_outbox', 'public.iu_outbound_route',
        'public.iu_route_attempt', 'public.iu_route_dead_letter',
        'public.idx_event_outbox_idempotent', 'public.idx_event_outbox_created_at',
        'public.idx_dot_iu_command_run_command', 'public.idx_iu_collection_member_iu',
        'public.idx_iu_route_attempt_event',
        'public.v_dot_iu_command_registry', 'public.v_dot_iu_command_run_health',
        'public.v_iu_collection_health', 'public.v_iu_collection_manifest',
        'public.v_iu_composer_event_backlog', 'public.v_iu_route_attempt_summary',
        'public.v_iu_route_dead_letter_open'];
    c_functions text[] := ARRAY[
        'fn_dot_config_touch', 'fn_dot_iu_command_log', 'fn_event_outbox_type_validate',
        'fn_iu_core_routes_enabled', 'fn_iu_delivery_enabled', 'fn_iu_gate_is_open',
        'fn_iu_emit_event', 'fn_iu_structure_consumer', 'fn_iu_route_deliver',
        'fn_iu_route_worker_run', 'fn_iu_create', 'fn_iu_compose',
        'fn_iu_collection_add_piece', 'fn_iu_collection_remove_piece',
        'fn_iu_collection_reorder_piece', 'fn_iu_collection_validate',
        'fn_iu_collection_render', 'fn_iu_workflow_from_steps', 'fn_iu_retire',
        'fn_iu_refresh_metadata_axes', 'fn_iu_healthcheck', 'fn_iu_piece_split', 'fn_iu_observe',
        'fn_iu_piece_merge'];
    v_left text[];
BEGIN
    SELECT array_agg(r) INTO v_left FROM unnest(c_relations) AS r WHERE to_regclass(r) IS NOT NULL;
    v_left := coalesce(v_left, '{}') || coalesce((
        SELECT array_agg(DISTINCT 'function public.' || p.proname)
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname = ANY (c_functions)), '{}');
    IF to_regnamespace('cutter_governance') IS NOT NULL THEN
        v_left := v_left || 'schema cutter_governance'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgname IN ('trg_dot_config_touch', 'trg_event_outbox_type_validate')) THEN
        v_left := v_left || 'substrate trigger(s)'::text;
    END IF;

    IF cardinality(v_left) > 0 THEN
        RAISE EXCEPTION 'substrate rollback assert: object(s) still present after rollback: %',
            array_to_string(v_left, ', ');
    END IF;
END
$assert$;

-- The piece path of the emit gating (a correction, docs/seeds.md) is gone too.
DO $assert$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                WHERE p.pronamespace = 'public'::regnamespace AND p.proname = 'fn_iu_piece_emit_event') THEN
        RAISE EXCEPTION 'substrate rollback assert: object(s) still present after rollback: function public.fn_iu_piece_emit_event';
    END IF;
END
$assert$;
