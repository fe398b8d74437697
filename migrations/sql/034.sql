-- =============================================================================
-- 034 — auto-instantiate orchestrator DOT registration (seed 004).
--
-- Promotes the two orchestrator functions 033 shipped from "callable function"
-- to "governed DOT command": two rows in public.dot_iu_command_catalog,
--   dot_iu_auto_instantiate_from_event        collection t t {fn_iu_auto_instantiate_from_event}
--   dot_iu_auto_instantiate_rollback_by_actor lifecycle  t t {fn_iu_auto_instantiate_rollback_by_actor}
-- both ON CONFLICT (command_name) DO NOTHING — idempotent: re-running the file
-- where both rows are present as registered is a no-op (INSERT 0 0).
--
-- Data-only catalog seed: no new table / view / function / trigger / config /
-- event type / route. The gates do not change: the orchestrator's two-gate
-- semantics from 033 still govern (dry run: composer_enabled; live: composer
-- AND auto_instantiate_enabled).
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/034.sql "<database url>"
-- Paired rollback: rollbacks/034.sql.
-- =============================================================================

-- @preflight

-- Fails loudly if either underlying function from migration 033 is missing.
DO $preflight$
DECLARE
    v_have_from_event boolean;
    v_have_rollback   boolean;
BEGIN
    v_have_from_event := to_regprocedure(
        'public.fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)') IS NOT NULL;
    v_have_rollback := to_regprocedure(
        'public.fn_iu_auto_instantiate_rollback_by_actor(text,boolean)') IS NOT NULL;

    IF NOT v_have_from_event OR NOT v_have_rollback THEN
        RAISE EXCEPTION '034 preflight: migration 033 substrate missing (%) — apply 033 first',
            array_to_string(
                array_remove(ARRAY[
                    CASE WHEN NOT v_have_from_event
                         THEN 'fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)' END,
                    CASE WHEN NOT v_have_rollback
                         THEN 'fn_iu_auto_instantiate_rollback_by_actor(text,boolean)' END], NULL),
                ', ');
    END IF;
END
$preflight$;

-- Idempotent (seed 004): both rows already present with exactly the values
-- this file registers (the SSOT columns category, mutating, reversible,
-- target_functions; the description is prose) means 034 is done, and the run
-- is a no-op (INSERT 0 0): seed 004's SSOT re-run. Still refused: rows present
-- with other values (a drifted catalog is not "done"), one row without the
-- other, and a catalog that is neither the 033 state (the 24 rows of 280) nor
-- at or past the 034 state (26 rows; later revisions add theirs). A correction
-- of a departure from seed 004 (docs/seeds.md).
DO $preflight$
DECLARE
    v_present text[];
    v_differs text[];
    v_rows    bigint;
BEGIN
    SELECT array_agg(c.command_name ORDER BY c.command_name),
           array_agg(format('%s (category %s, mutating %s, reversible %s, target_functions %s)',
                            c.command_name, c.category, c.mutating, c.reversible, c.target_functions)
                     ORDER BY c.command_name)
               FILTER (WHERE (c.category, c.mutating, c.reversible, c.target_functions)
                             IS DISTINCT FROM (v.category, v.mutating, v.reversible, v.target_functions))
      INTO v_present, v_differs
      FROM public.dot_iu_command_catalog c
      JOIN (VALUES
              ('dot_iu_auto_instantiate_from_event', 'collection', true, true,
               ARRAY['fn_iu_auto_instantiate_from_event']),
              ('dot_iu_auto_instantiate_rollback_by_actor', 'lifecycle', true, true,
               ARRAY['fn_iu_auto_instantiate_rollback_by_actor']))
           AS v (command_name, category, mutating, reversible, target_functions)
        ON v.command_name = c.command_name;

    IF v_differs IS NOT NULL THEN
        RAISE EXCEPTION '034 preflight: catalog row(s) present with values other than 034 registers: % — the catalog drifted; inspect it (iucore db verify) and restore the registered values, or roll back with rollbacks/034.sql',
            array_to_string(v_differs, '; ');
    END IF;

    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_present IS NULL THEN
        IF v_rows <> 24 THEN
            RAISE EXCEPTION '034 preflight: public.dot_iu_command_catalog has % row(s), expected the 24 of 280 — the database is not at revision 033',
                v_rows;
        END IF;
    ELSIF cardinality(v_present) <> 2 THEN
        RAISE EXCEPTION '034 preflight: only % of 034''s two catalog rows is present — a partial registration; inspect it before re-running',
            array_to_string(v_present, ', ');
    ELSIF v_rows < 26 THEN
        RAISE EXCEPTION '034 preflight: both 034 rows are present but public.dot_iu_command_catalog has % row(s), expected at least 26 — rows of 280 are missing; inspect it (iucore db verify)',
            v_rows;
    ELSE
        RAISE NOTICE '034 preflight: both catalog rows already present with the registered values — already applied; this run is a no-op (INSERT 0 0)';
    END IF;
END
$preflight$;

-- @body

INSERT INTO public.dot_iu_command_catalog
    (command_name, category, mutating, reversible, target_functions, description)
VALUES
    ('dot_iu_auto_instantiate_from_event', 'collection', true, true,
     ARRAY['fn_iu_auto_instantiate_from_event'],
     'instantiate a template collection from an event (dry_run | live)'),
    ('dot_iu_auto_instantiate_rollback_by_actor', 'lifecycle', true, true,
     ARRAY['fn_iu_auto_instantiate_rollback_by_actor'],
     'roll back every auto-instantiated collection of an actor')
ON CONFLICT (command_name) DO NOTHING;

-- @postcheck

DO $postcheck$
DECLARE
    v_rows       bigint;
    v_unresolved text[];
    v_new        text[];
BEGIN
    -- 26 on a first apply (24 + 2, the preflight saw 24); more on a no-op re-run
    -- after later revisions added theirs.
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows < 26 THEN
        RAISE EXCEPTION '034 post-check: public.dot_iu_command_catalog has % row(s), expected 26', v_rows;
    END IF;

    SELECT array_agg(DISTINCT t ORDER BY t) INTO v_unresolved
      FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t);
    IF v_unresolved IS NOT NULL THEN
        RAISE EXCEPTION '034 post-check: target function(s) not resolvable: %', array_to_string(v_unresolved, ', ');
    END IF;

    SELECT array_agg(c.command_name ORDER BY c.command_name) INTO v_new
      FROM public.dot_iu_command_catalog c
     WHERE (c.command_name, c.category, c.mutating, c.reversible, c.target_functions) IN (
               ('dot_iu_auto_instantiate_from_event', 'collection', true, true,
                ARRAY['fn_iu_auto_instantiate_from_event']),
               ('dot_iu_auto_instantiate_rollback_by_actor', 'lifecycle', true, true,
                ARRAY['fn_iu_auto_instantiate_rollback_by_actor']));
    IF v_new IS DISTINCT FROM ARRAY['dot_iu_auto_instantiate_from_event',
                                    'dot_iu_auto_instantiate_rollback_by_actor'] THEN
        RAISE EXCEPTION '034 post-check: the two new rows are not present as registered (found: %)',
            coalesce(array_to_string(v_new, ', '), 'none');
    END IF;
END
$postcheck$;

-- 034 verification: catalog size + every target_function resolvable
SELECT '034_catalog' AS "check",
       count(*) AS catalog_rows,
       count(*) = 26 AS expected_26
  FROM public.dot_iu_command_catalog;

SELECT '034_targets' AS "check",
       count(DISTINCT u.fn) AS distinct_target_functions,
       coalesce(bool_and(EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                                  WHERE p.pronamespace = 'public'::regnamespace AND p.proname = u.fn)),
                false) AS all_resolvable
  FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS u(fn);

SELECT '034_new_rows' AS "check",
       array_agg(c.command_name ORDER BY c.command_name) AS rows_present
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                          'dot_iu_auto_instantiate_rollback_by_actor');
