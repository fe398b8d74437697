-- 034 self-test: the DOT registration of 033's orchestrator (seed 004) — the two
-- catalog rows, seed 004's verification, the idempotent INSERT and the guarded
-- rollback (REFUSED while the run ledger references a 034 command; then the
-- catalog 26 → 24 → 26: the rollback's body, 034's INSERT again), exercised
-- inside one transaction that always ends in ROLLBACK.
-- Every DO block RAISEs when its check fails.
-- The database may be at 034 (26 catalog rows) or at gate_protocol (30): counts
-- are printed over the rows through 034 only (gate_protocol's 4 left out), and
-- whatever else depends on the revision is compared inside the DO blocks.
-- Run: iucore selftest 034   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/034.sql)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- T0 the two rows 034 registers
SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor')
 ORDER BY c.command_name;

DO $t0$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n
      FROM public.dot_iu_command_catalog c
     WHERE (c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description) IN (
               ('dot_iu_auto_instantiate_from_event', 'collection', true, true,
                ARRAY['fn_iu_auto_instantiate_from_event'],
                'instantiate a template collection from an event (dry_run | live)'),
               ('dot_iu_auto_instantiate_rollback_by_actor', 'lifecycle', true, true,
                ARRAY['fn_iu_auto_instantiate_rollback_by_actor'],
                'roll back every auto-instantiated collection of an actor'));
    IF n <> 2 THEN
        RAISE EXCEPTION 'T0: % of the 2 rows of 034 are in the catalog as registered', n;
    END IF;
    RAISE NOTICE 'T0 both rows of 034 present as registered (name, category, mutating, reversible, targets, description)';
END
$t0$;

-- T1 seed 004's verification over the rows through 034 (gate_protocol's 4, if applied, left out):
-- catalog size, every target function resolvable, the new rows
SELECT '034_catalog' AS "check",
       count(*) AS catalog_rows,
       count(*) = 26 AS expected_26
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name NOT IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');

SELECT '034_targets' AS "check",
       count(DISTINCT u.fn) AS distinct_target_functions,
       coalesce(bool_and(EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                                  WHERE p.pronamespace = 'public'::regnamespace AND p.proname = u.fn)),
                false) AS all_resolvable
  FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS u (fn)
 WHERE c.command_name NOT IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');

SELECT '034_new_rows' AS "check",
       array_agg(c.command_name ORDER BY c.command_name) AS rows_present
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                          'dot_iu_auto_instantiate_rollback_by_actor');

-- T1 the whole catalog: 26 rows, or 30 exactly when gate_protocol's 4 are there; every target
-- function of every row resolves; 034's two resolve with 033's signatures
DO $t1$
DECLARE
    n_all bigint := (SELECT count(*) FROM public.dot_iu_command_catalog);
    n_gate bigint := (SELECT count(*) FROM public.dot_iu_command_catalog c
                       WHERE c.command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                                                'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed'));
    v_unresolved text[];
BEGIN
    IF n_gate NOT IN (0, 4) OR n_all <> 26 + n_gate THEN
        RAISE EXCEPTION 'T1: the catalog has % row(s) (% of gate_protocol), expected 26, or 30 with gate_protocol''s 4', n_all, n_gate;
    END IF;
    SELECT array_agg(DISTINCT t ORDER BY t) INTO v_unresolved
      FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t);
    IF v_unresolved IS NOT NULL THEN
        RAISE EXCEPTION 'T1: target function(s) not resolvable: %', array_to_string(v_unresolved, ', ');
    END IF;
    IF to_regprocedure('public.fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)') IS NULL
       OR to_regprocedure('public.fn_iu_auto_instantiate_rollback_by_actor(text,boolean)') IS NULL THEN
        RAISE EXCEPTION 'T1: 033''s functions do not resolve with their registered signatures';
    END IF;
    RAISE NOTICE 'T1 the catalog is 034''s 26 rows (plus gate_protocol''s 4 when applied); every target function resolves';
END
$t1$;

-- T2 seed 004: 034's INSERT … ON CONFLICT DO NOTHING (verbatim) is idempotent: INSERT 0 0
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

-- T3 the rollback guard's condition. In this transaction only: clear whatever runs the ledger
-- already holds of the two commands (so the guard sees only this test's), then log one run of
-- dot_iu_auto_instantiate_from_event through the canonical logger
CREATE TEMP TABLE selftest034_before ON COMMIT DROP AS
SELECT count(*) AS catalog_rows FROM public.dot_iu_command_catalog;

DO $t3$
BEGIN
    DELETE FROM public.dot_iu_command_run r
     WHERE r.command_name IN ('dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor');
    RAISE NOTICE 'T3 no ledger run of a 034 command left (in this transaction only)';
END
$t3$;

SELECT public.fn_dot_iu_command_log('dot_iu_auto_instantiate_from_event', 'collection', 'plan', 'planned', true,
                                    md5('{"selftest": "034"}'), '{"iu_core.composer_enabled": "false"}',
                                    '{"reason": "selftest_034"}', 'selftest034') IS NOT NULL AS logged;

-- T4 rollbacks/034.sql's guards, run as written (each caught here instead of ending the test):
-- the state guard passes at 034 and refuses while gate_protocol's rows are present; the ledger
-- guard REFUSES: a run references a 034 command. Its DELETE would also break the ledger's FK
DO $t4$
DECLARE
    v_gp boolean := EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c WHERE c.command_name = 'dot_iu_gate_open');
    v_state text;
    v_msg text;
BEGIN
    -- rollbacks/034.sql @guard, first block (verbatim)
    BEGIN
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
        END;
        v_msg := NULL;
    EXCEPTION WHEN raise_exception THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
    END;
    IF (v_gp AND v_msg IS DISTINCT FROM '034 rollback refused: catalog row(s) of gate_protocol still present (dot_iu_gate_close, dot_iu_gate_open, dot_iu_gate_verify_closed, dot_iu_gate_watchdog) — roll back gate_protocol first')
       OR (NOT v_gp AND v_msg IS NOT NULL) THEN
        RAISE EXCEPTION 'T4: the state guard answered % (gate_protocol applied: %)', coalesce(v_msg, 'pass'), v_gp;
    END IF;
    RAISE NOTICE 'T4 state guard as expected for this revision (passes at 034, refuses while gate_protocol''s rows are present)';

    -- rollbacks/034.sql @guard, second block (verbatim)
    BEGIN
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
        END;
        v_msg := NULL;
    EXCEPTION WHEN raise_exception THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_msg IS NULL OR v_msg NOT LIKE '034 rollback REFUSED: 1 dot_iu_command_run row(s) reference dot_iu_auto_instantiate_from_event —%' THEN
        RAISE EXCEPTION 'T4: with a run of a 034 command in the ledger the guard answered %', coalesce(v_msg, 'pass');
    END IF;
    RAISE NOTICE 'T4 the ledger guard would REFUSE (%): %', v_state, v_msg;

    BEGIN
        DELETE FROM public.dot_iu_command_catalog
         WHERE command_name IN ('dot_iu_auto_instantiate_from_event',
                                'dot_iu_auto_instantiate_rollback_by_actor');
        RAISE EXCEPTION 'T4: the catalog rows were deleted under a ledger run that references one';
    EXCEPTION WHEN foreign_key_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    END;
    RAISE NOTICE 'T4 without the guard the DELETE breaks the ledger''s foreign key (%)', v_state;
END
$t4$;

-- T5 the run removed, the ledger guard passes; the rollback's body then takes the catalog 26 → 24
DELETE FROM public.dot_iu_command_run
 WHERE command_name IN ('dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor');

DO $t5$
DECLARE
    v_msg text;
BEGIN
    -- rollbacks/034.sql @guard, second block (verbatim)
    BEGIN
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
        END;
        v_msg := NULL;
    EXCEPTION WHEN raise_exception THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
    END;
    IF v_msg IS NOT NULL THEN
        RAISE EXCEPTION 'T5: with no run of a 034 command the guard still refused: %', v_msg;
    END IF;
    RAISE NOTICE 'T5 the ledger guard passes';
END
$t5$;

-- T5 rollbacks/034.sql @body (verbatim)
DELETE FROM public.dot_iu_command_catalog
 WHERE command_name IN ('dot_iu_auto_instantiate_from_event',
                        'dot_iu_auto_instantiate_rollback_by_actor');

-- T5 the catalog through 034: 24, none of 034's rows
SELECT count(*) AS catalog_rows_through_034,
       count(*) FILTER (WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                                                 'dot_iu_auto_instantiate_rollback_by_actor')) AS rows_of_034
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name NOT IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');

-- T5 the rollback's assert, relative to this revision: exactly the two rows gone, the 24 of 280 kept
DO $t5$
DECLARE
    v_before bigint := (SELECT b.catalog_rows FROM selftest034_before b);
    v_rows bigint := (SELECT count(*) FROM public.dot_iu_command_catalog);
BEGIN
    IF v_rows <> v_before - 2
       OR EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c
                   WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                                            'dot_iu_auto_instantiate_rollback_by_actor'))
       OR EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c
                   WHERE c.target_functions && ARRAY['fn_iu_auto_instantiate_from_event',
                                                     'fn_iu_auto_instantiate_rollback_by_actor'])
       OR (SELECT count(*) FROM public.dot_iu_command_catalog c
            WHERE c.command_name NOT IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                                         'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed')) <> 24 THEN
        RAISE EXCEPTION 'T5: after the rollback body the catalog has % row(s) (% before)', v_rows, v_before;
    END IF;
    RAISE NOTICE 'T5 the catalog lost exactly the 2 rows of 034 (the 24 of 280 kept); no row targets 033''s functions';
END
$t5$;

-- T6 seed 004's re-apply: 034's INSERT (verbatim) puts both rows back, 24 → 26
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

-- T6 the catalog through 034: 26 again, both rows of 034 back
SELECT count(*) AS catalog_rows_through_034,
       count(*) FILTER (WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event',
                                                 'dot_iu_auto_instantiate_rollback_by_actor')) AS rows_of_034
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name NOT IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');

-- T6 the catalog is back to its size before T5, both rows as registered
DO $t6$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n
      FROM public.dot_iu_command_catalog c
     WHERE (c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description) IN (
               ('dot_iu_auto_instantiate_from_event', 'collection', true, true,
                ARRAY['fn_iu_auto_instantiate_from_event'],
                'instantiate a template collection from an event (dry_run | live)'),
               ('dot_iu_auto_instantiate_rollback_by_actor', 'lifecycle', true, true,
                ARRAY['fn_iu_auto_instantiate_rollback_by_actor'],
                'roll back every auto-instantiated collection of an actor'));
    IF n <> 2 OR (SELECT count(*) FROM public.dot_iu_command_catalog) <> (SELECT b.catalog_rows FROM selftest034_before b) THEN
        RAISE EXCEPTION 'T6: % of the 2 rows back as registered; catalog % row(s), % before', n,
            (SELECT count(*) FROM public.dot_iu_command_catalog), (SELECT b.catalog_rows FROM selftest034_before b);
    END IF;
    RAISE NOTICE 'T6 both rows back as registered; the catalog is its size before the rollback again';
END
$t6$;

ROLLBACK;
