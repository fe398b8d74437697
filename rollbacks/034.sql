-- =============================================================================
-- 034 — fail-closed rollback of the auto-instantiate DOT registration (seed 004).
--
-- Removes the two catalog rows under a REFUSED guard: never while the run
-- ledger holds a row of either command (the ledger is evidence). The guard
-- reads dot_iu_command_run.command_name — seed 004 records the live rollback
-- proof catching a guard written against a non-existent column "command".
-- The catalog returns 26 → 24.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/034.sql "<database url>"
-- =============================================================================

-- @guard

DO $guard$
DECLARE
    v_present bigint;
    v_rows    bigint;
    v_later   text[];
BEGIN
    SELECT count(*) INTO v_present
      FROM public.dot_iu_command_catalog c
     WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                              'dot_iu_auto_instantiate_rollback_by_actor');
    IF v_present <> 2 THEN
        RAISE EXCEPTION '034 rollback refused: % of the 2 auto-instantiate rows are in public.dot_iu_command_catalog, expected 2 — the database is not at revision 034; inspect it before rolling back',
            v_present;
    END IF;

    -- A later revision (gate_protocol) still applied: roll it back first.
    SELECT array_agg(c.command_name ORDER BY c.command_name) INTO v_later
      FROM public.dot_iu_command_catalog c
     WHERE c.command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                              'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');
    IF v_later IS NOT NULL THEN
        RAISE EXCEPTION '034 rollback refused: catalog row(s) of gate_protocol still present (%) — roll back gate_protocol first',
            array_to_string(v_later, ', ');
    END IF;

    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 26 THEN
        RAISE EXCEPTION '034 rollback refused: public.dot_iu_command_catalog has % row(s), expected 26 — the database is not at revision 034',
            v_rows;
    END IF;
END
$guard$;

-- REFUSED while the ledger references either command (column command_name).
DO $guard$
DECLARE
    v_runs     bigint;
    v_commands text[];
BEGIN
    SELECT count(*), array_agg(DISTINCT r.command_name)
      INTO v_runs, v_commands
      FROM public.dot_iu_command_run r
     WHERE r.command_name IN ('dot_iu_auto_instantiate_from_event',
                              'dot_iu_auto_instantiate_rollback_by_actor');
    IF v_runs > 0 THEN
        RAISE EXCEPTION '034 rollback REFUSED: % dot_iu_command_run row(s) reference % — the ledger is evidence; export it (iucore db backup) and remove those runs deliberately before rolling back',
            v_runs, array_to_string(v_commands, ', ');
    END IF;
END
$guard$;

-- @body

DELETE FROM public.dot_iu_command_catalog
 WHERE command_name IN ('dot_iu_auto_instantiate_from_event',
                        'dot_iu_auto_instantiate_rollback_by_actor');

-- @assert

DO $assert$
DECLARE
    v_rows bigint;
BEGIN
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 24 THEN
        RAISE EXCEPTION '034 rollback assert: public.dot_iu_command_catalog has % row(s) after rollback, expected 24', v_rows;
    END IF;
    IF EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c
                WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                                         'dot_iu_auto_instantiate_rollback_by_actor')) THEN
        RAISE EXCEPTION '034 rollback assert: an auto-instantiate row is still in the catalog';
    END IF;
END
$assert$;

SELECT '034_rollback' AS "check",
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows,
       (SELECT count(*) FROM public.dot_iu_command_catalog) = 24 AS expected_24;
