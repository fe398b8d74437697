-- =============================================================================
-- 280 — fail-closed rollback of the operator-runtime catalog seed.
--
-- Deletes the 24 catalog rows 280 inserted, and nothing else — but never while
-- the run ledger (public.dot_iu_command_run) holds a row of one of them: the
-- ledger is evidence and is not rewritten to make a rollback pass. Nor while
-- a later revision's catalog rows (034, gate_protocol) are still there.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/280.sql "<database url>"
-- =============================================================================

-- @guard

DO $guard$
DECLARE
    c_commands text[] := ARRAY[
        'dot_iu_healthcheck', 'dot_iu_create_file_from_pieces', 'dot_iu_add_piece',
        'dot_iu_remove_piece', 'dot_iu_reorder_piece', 'dot_iu_validate_collection',
        'dot_iu_checkpoint_collection', 'dot_iu_render_collection', 'dot_iu_retire_piece',
        'dot_iu_soft_delete_piece', 'dot_iu_restore_piece', 'dot_iu_clone_piece',
        'dot_iu_workflow_from_steps', 'dot_iu_refresh_metadata_axes', 'dot_iu_split_piece',
        'dot_iu_merge_pieces', 'dot_iu_route_worker_run', 'dot_iu_command_registry',
        'dot_iu_command_run_health', 'dot_iu_collection_health', 'dot_iu_collection_manifest',
        'dot_iu_composer_event_backlog', 'dot_iu_route_attempt_summary',
        'dot_iu_route_dead_letter_open'];
    v_present bigint;
    v_others  text[];
BEGIN
    IF to_regclass('public.dot_iu_command_catalog') IS NULL
       OR to_regclass('public.dot_iu_command_run') IS NULL THEN
        RAISE EXCEPTION '280 rollback refused: public.dot_iu_command_catalog or public.dot_iu_command_run is missing — the database is not at revision 280; inspect it before rolling back';
    END IF;

    SELECT count(*) INTO v_present
      FROM public.dot_iu_command_catalog c WHERE c.command_name = ANY (c_commands);
    IF v_present <> 24 THEN
        RAISE EXCEPTION '280 rollback refused: % of the 24 operator-runtime rows are in public.dot_iu_command_catalog, expected 24 — the database is not at revision 280; inspect it before rolling back',
            v_present;
    END IF;

    SELECT array_agg(c.command_name ORDER BY c.command_name) INTO v_others
      FROM public.dot_iu_command_catalog c WHERE NOT (c.command_name = ANY (c_commands));
    IF v_others IS NOT NULL THEN
        RAISE EXCEPTION '280 rollback refused: % catalog row(s) of a later revision still present (%) — roll back 034 / gate_protocol first',
            cardinality(v_others), array_to_string(v_others, ', ');
    END IF;
END
$guard$;

-- The ledger is evidence: refuse while any run row references one of the 24.
DO $guard$
DECLARE
    c_commands text[] := ARRAY[
        'dot_iu_healthcheck', 'dot_iu_create_file_from_pieces', 'dot_iu_add_piece',
        'dot_iu_remove_piece', 'dot_iu_reorder_piece', 'dot_iu_validate_collection',
        'dot_iu_checkpoint_collection', 'dot_iu_render_collection', 'dot_iu_retire_piece',
        'dot_iu_soft_delete_piece', 'dot_iu_restore_piece', 'dot_iu_clone_piece',
        'dot_iu_workflow_from_steps', 'dot_iu_refresh_metadata_axes', 'dot_iu_split_piece',
        'dot_iu_merge_pieces', 'dot_iu_route_worker_run', 'dot_iu_command_registry',
        'dot_iu_command_run_health', 'dot_iu_collection_health', 'dot_iu_collection_manifest',
        'dot_iu_composer_event_backlog', 'dot_iu_route_attempt_summary',
        'dot_iu_route_dead_letter_open'];
    v_runs     bigint;
    v_commands text[];
BEGIN
    SELECT count(*), array_agg(DISTINCT r.command_name)
      INTO v_runs, v_commands
      FROM public.dot_iu_command_run r
     WHERE r.command_name = ANY (c_commands);
    IF v_runs > 0 THEN
        RAISE EXCEPTION '280 rollback REFUSED: % dot_iu_command_run row(s) reference % of the 24 commands (%) — the ledger is evidence; export it (iucore db backup) and remove those runs deliberately before rolling back',
            v_runs, cardinality(v_commands), array_to_string(v_commands, ', ');
    END IF;
END
$guard$;

-- @body

DELETE FROM public.dot_iu_command_catalog
 WHERE command_name IN (
    'dot_iu_healthcheck', 'dot_iu_create_file_from_pieces', 'dot_iu_add_piece',
    'dot_iu_remove_piece', 'dot_iu_reorder_piece', 'dot_iu_validate_collection',
    'dot_iu_checkpoint_collection', 'dot_iu_render_collection', 'dot_iu_retire_piece',
    'dot_iu_soft_delete_piece', 'dot_iu_restore_piece', 'dot_iu_clone_piece',
    'dot_iu_workflow_from_steps', 'dot_iu_refresh_metadata_axes', 'dot_iu_split_piece',
    'dot_iu_merge_pieces', 'dot_iu_route_worker_run', 'dot_iu_command_registry',
    'dot_iu_command_run_health', 'dot_iu_collection_health', 'dot_iu_collection_manifest',
    'dot_iu_composer_event_backlog', 'dot_iu_route_attempt_summary',
    'dot_iu_route_dead_letter_open');

-- @assert

DO $assert$
DECLARE
    v_rows bigint;
BEGIN
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 0 THEN
        RAISE EXCEPTION '280 rollback assert: public.dot_iu_command_catalog has % row(s) after rollback, expected 0', v_rows;
    END IF;
END
$assert$;

SELECT '280_rollback' AS "check",
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows,
       (SELECT count(*) FROM public.dot_iu_command_catalog) = 0 AS expected_0;
