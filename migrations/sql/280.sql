-- =============================================================================
-- 280 — the operator-runtime catalog seed (seed 004: "R280").
--
-- Seeds public.dot_iu_command_catalog with the 24 governed dot_iu_* commands
-- of the operator runtime. The Python registry (src/iu_core/registry.py, the
-- commands whose revision is "280") is the single source of truth: these rows
-- equal it row for row (command_name, category, mutating, reversible,
-- target_functions), and a test checks that at every revision.
--
-- Data-only: no table, view, function, trigger, config key, event type or
-- route is added. The INSERT is idempotent (ON CONFLICT (command_name) DO
-- NOTHING): re-running it against a catalog that matches answers INSERT 0 0,
-- which is seed 004's SSOT-consistency check.
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/280.sql "<database url>"
-- Paired rollback: rollbacks/280.sql.
-- =============================================================================

-- @preflight

-- Refuse to re-apply over ourselves: any of the 24 rows present means 280 (or
-- something claiming its names) is already there.
DO $preflight$
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
    v_present text[];
    v_rows    bigint;
BEGIN
    IF to_regclass('public.dot_iu_command_catalog') IS NULL THEN
        RAISE EXCEPTION '280 preflight: public.dot_iu_command_catalog is missing — apply substrate (and 016, 260, 017) first';
    END IF;

    SELECT array_agg(c.command_name ORDER BY c.command_name) INTO v_present
      FROM public.dot_iu_command_catalog c
     WHERE c.command_name = ANY (c_commands);
    IF v_present IS NOT NULL THEN
        RAISE EXCEPTION '280 preflight: % of the 24 operator-runtime command(s) already in public.dot_iu_command_catalog (%) — already applied? Check "iucore db current"; to re-seed, roll back first with rollbacks/280.sql',
            cardinality(v_present),
            array_to_string(v_present[1:5], ', ')
            || CASE WHEN cardinality(v_present) > 5
                    THEN format(', … and %s more', cardinality(v_present) - 5) ELSE '' END;
    END IF;

    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 0 THEN
        RAISE EXCEPTION '280 preflight: public.dot_iu_command_catalog has % row(s), expected 0 (280 seeds an empty catalog) — the database is not at revision 017; inspect it before seeding',
            v_rows;
    END IF;
END
$preflight$;

-- Every target function of the 24 rows must resolve before a row names it
-- (the 016 checkpoint and the 017 soft-delete/restore pair included).
DO $preflight$
DECLARE
    c_targets text[] := ARRAY[
        'fn_iu_healthcheck', 'fn_iu_compose', 'fn_iu_collection_add_piece',
        'fn_iu_collection_remove_piece', 'fn_iu_collection_reorder_piece',
        'fn_iu_collection_validate', 'fn_iu_collection_checkpoint', 'fn_iu_collection_render',
        'fn_iu_retire', 'fn_iu_piece_soft_delete', 'fn_iu_piece_restore', 'fn_iu_create',
        'fn_iu_workflow_from_steps', 'fn_iu_refresh_metadata_axes', 'fn_iu_piece_split',
        'fn_iu_piece_merge', 'fn_iu_route_worker_run', 'fn_iu_observe'];
    v_missing text[];
BEGIN
    SELECT array_agg(t ORDER BY t) INTO v_missing
      FROM unnest(c_targets) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '280 preflight: target function(s) not resolvable: % — apply the revisions that create them first (016: fn_iu_collection_checkpoint; 017: fn_iu_piece_soft_delete, fn_iu_piece_restore)',
            array_to_string(v_missing, ', ');
    END IF;
END
$preflight$;

-- @body

\ir data/280/dot_iu_command_catalog.sql

-- @postcheck

DO $postcheck$
DECLARE
    v_rows       bigint;
    v_unresolved text[];
BEGIN
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 24 THEN
        RAISE EXCEPTION '280 post-check: public.dot_iu_command_catalog has % row(s), expected 24', v_rows;
    END IF;

    SELECT array_agg(DISTINCT t ORDER BY t) INTO v_unresolved
      FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t);
    IF v_unresolved IS NOT NULL THEN
        RAISE EXCEPTION '280 post-check: target function(s) not resolvable: %', array_to_string(v_unresolved, ', ');
    END IF;

    IF EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c
                WHERE cardinality(c.target_functions) = 0
                   OR c.command_name !~ '^dot_iu_[a-z0-9_]+$') THEN
        RAISE EXCEPTION '280 post-check: a catalog row has no target function or a name outside dot_iu_*';
    END IF;
END
$postcheck$;

-- 280 verification (the shape of seed 004's): catalog size + every target_function resolvable
SELECT '280_catalog' AS "check",
       count(*) AS catalog_rows,
       count(*) = 24 AS expected_24
  FROM public.dot_iu_command_catalog;

SELECT '280_targets' AS "check",
       count(DISTINCT u.fn) AS distinct_target_functions,
       coalesce(bool_and(EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                                  WHERE p.pronamespace = 'public'::regnamespace AND p.proname = u.fn)),
                false) AS all_resolvable
  FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS u(fn);
