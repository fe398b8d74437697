-- =============================================================================
-- gate_protocol — fail-closed rollback of the bounded gate protocol (seed 002 A6).
--
-- The guard REFUSES while any of the 7 governable gates is open: removing the
-- watchdog while a gate is open would leave that gate open with nothing to
-- expire it. Otherwise (seed 002 A6): delete the ledger rows of the 4 gate
-- commands, the 4 catalog rows, drop the 4 functions and the transition
-- table, and assert the exact prior baseline (catalog 26, no gate-protocol
-- function, no transition table).
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/gate_protocol.sql "<database url>"
-- =============================================================================

-- @guard

-- Fail closed: the protocol must be installed, or the database is not at it.
DO $guard$
DECLARE
    v_missing text[] := '{}';
    v_rows    bigint;
BEGIN
    IF to_regclass('public.iu_gate_transition') IS NULL THEN
        v_missing := v_missing || 'table public.iu_gate_transition'::text;
    END IF;
    v_missing := v_missing || coalesce((
        SELECT array_agg(f)
          FROM unnest(ARRAY['public.fn_iu_gate_open(text,uuid,text,text,integer)',
                            'public.fn_iu_gate_close(text,text,text)',
                            'public.fn_iu_gate_verify_closed(text)',
                            'public.fn_iu_gate_watchdog(text)']) AS f
         WHERE to_regprocedure(f) IS NULL), '{}');
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog c
     WHERE c.command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                              'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');
    IF v_rows <> 4 THEN
        v_missing := v_missing || format('%s of the 4 gate catalog rows', 4 - v_rows);
    END IF;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION 'gate_protocol rollback refused: % missing — the database is not at revision gate_protocol; inspect it before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- Hold gate flips off until commit: no gate can be opened between the check
-- below and the removal of the watchdog (lock_timeout bounds the wait).
LOCK TABLE public.dot_config IN SHARE MODE;

-- Seed 002 A6: refuse if any governable gate is open.
DO $safe$
DECLARE
    v_open text[];
BEGIN
    SELECT array_agg(c.key ORDER BY c.key) INTO v_open
      FROM public.dot_config c
     WHERE c.value = 'true'
       AND c.key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled',
                     'iu_core.delivery_enabled', 'iu_core.three_axis_auto_refresh_enabled',
                     'iu_core.operator_runtime_enabled', 'queue.job_substrate.enabled',
                     'queue.dlq.replay_enabled');
    IF v_open IS NOT NULL THEN
        RAISE EXCEPTION 'gate_protocol rollback refused: % governable gate(s) currently OPEN (%) — close them first (fn_iu_gate_close / iucore gate close GATE); the watchdog cannot be removed while a gate is open',
            cardinality(v_open), array_to_string(v_open, ', ');
    END IF;
END
$safe$;

-- @body

DELETE FROM public.dot_iu_command_run
 WHERE command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');
DELETE FROM public.dot_iu_command_catalog
 WHERE command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');
DROP FUNCTION IF EXISTS public.fn_iu_gate_watchdog(text);
DROP FUNCTION IF EXISTS public.fn_iu_gate_verify_closed(text);
DROP FUNCTION IF EXISTS public.fn_iu_gate_close(text, text, text);
DROP FUNCTION IF EXISTS public.fn_iu_gate_open(text, uuid, text, text, integer);
DROP TABLE IF EXISTS public.iu_gate_transition;

-- @assert

-- The exact prior baseline: catalog 26, 0 gate-protocol functions, no table.
-- (fn_iu_gate_is_open is the substrate's reader, not part of the protocol.)
DO $assert$
DECLARE
    v_rows  bigint;
    v_fns   bigint;
BEGIN
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    SELECT count(*) INTO v_fns FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proname IN ('fn_iu_gate_open', 'fn_iu_gate_close',
                         'fn_iu_gate_verify_closed', 'fn_iu_gate_watchdog');
    IF v_rows <> 26 OR v_fns <> 0 OR to_regclass('public.iu_gate_transition') IS NOT NULL THEN
        RAISE EXCEPTION 'gate_protocol rollback assert: not back to the baseline (catalog %, expected 26; gate fns %, expected 0; iu_gate_transition %)',
            v_rows, v_fns,
            CASE WHEN to_regclass('public.iu_gate_transition') IS NULL THEN 'absent' ELSE 'STILL PRESENT' END;
    END IF;
    IF EXISTS (SELECT 1 FROM public.dot_iu_command_run r
                WHERE r.command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                                         'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed')) THEN
        RAISE EXCEPTION 'gate_protocol rollback assert: ledger rows of the gate commands remain';
    END IF;
END
$assert$;

SELECT 'gate_protocol_rollback' AS "check",
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows,
       (SELECT count(*) FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_gate_open', 'fn_iu_gate_close',
                             'fn_iu_gate_verify_closed', 'fn_iu_gate_watchdog')) AS gate_fns,
       to_regclass('public.iu_gate_transition') IS NULL AS transition_table_gone;
