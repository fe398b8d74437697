-- 034 self-test: the DOT registration of 033's orchestrator (seed 004), exercised through
-- the very files that run — migrations/sql/034.sql and rollbacks/034.sql, included here
-- whole with psql's \ir, never copied — inside one transaction that always ends in
-- ROLLBACK: the first apply on 033's catalog (24 → 26, the rows equal to the live ones),
-- seed 004's idempotent re-apply (a no-op, INSERT 0 0), why the rollback guards the ledger,
-- the fail-closed rollback (26 → 24) and the apply again (24 → 26).
-- Every DO block RAISEs when its check fails.
-- The database may be at 034 or later (gate_protocol adds catalog rows): T1 puts the catalog
-- in 033's state in this transaction (from 280's own seed file) before anything is counted
-- or printed, so the transcript is the same at every revision. The refusal of the rollback
-- while the ledger references a 034 command is a refusal (an error, which would end this
-- test): tests/test_rev_280_to_gate.py runs rollbacks/034.sql into it.
-- Run: iucore selftest 034   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/034.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- T0 the two rows 034 registers
SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor')
 ORDER BY c.command_name;

-- T0 the live catalog (every revision's rows), kept to compare with; every target function of
-- every row resolves, 034's two with 033's signatures
\ir lib/catalog_live.sql

DO $t0$
BEGIN
    IF to_regprocedure('public.fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)') IS NULL
       OR to_regprocedure('public.fn_iu_auto_instantiate_rollback_by_actor(text,boolean)') IS NULL THEN
        RAISE EXCEPTION 'T0: 033''s functions do not resolve with their registered signatures';
    END IF;
    RAISE NOTICE 'T0 033''s functions resolve with their registered signatures';
END
$t0$;

-- T1 the catalog as 033 left it, in this transaction only: no ledger run, no catalog row, then
-- 280's seed (the file migrations/sql/280.sql includes): its 24 rows
\ir lib/catalog_set_aside.sql

\ir ../migrations/sql/data/280/dot_iu_command_catalog.sql

-- T2 migrations/sql/034.sql as it runs, on 033's catalog: preflight, the two rows, post-check
-- and seed 004's verification (catalog size, every target function resolvable, the new rows)
\ir ../migrations/sql/034.sql

-- T2 the two rows 034 registered are the live ones, column for column (description included)
DO $t2$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM (
        SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
          FROM public.dot_iu_command_catalog c
         WHERE c.command_name IN ('dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor')
        INTERSECT
        SELECT l.command_name, l.category, l.mutating, l.reversible, l.target_functions, l.description
          FROM selftest_catalog_live l) AS d;
    IF n <> 2 THEN
        RAISE EXCEPTION 'T2: % of the 2 rows 034 registers are in the live catalog as registered', n;
    END IF;
    RAISE NOTICE 'T2 both rows of 034 are in the live catalog as registered (name, category, mutating, reversible, targets, description)';
END
$t2$;

-- T3 seed 004: migrations/sql/034.sql run again where it is applied is a no-op: INSERT 0 0
\ir ../migrations/sql/034.sql

-- T4 why the rollback guards the ledger: with a run of a 034 command logged through the
-- canonical logger, deleting the two rows would break the ledger's foreign key
SELECT public.fn_dot_iu_command_log('dot_iu_auto_instantiate_from_event', 'collection', 'plan', 'planned', true,
                                    md5('{"selftest": "034"}'), '{"iu_core.composer_enabled": "false"}',
                                    '{"reason": "selftest_034"}', 'selftest034') IS NOT NULL AS logged;

DO $t4$
DECLARE
    v_state text;
BEGIN
    BEGIN
        DELETE FROM public.dot_iu_command_catalog
         WHERE command_name IN ('dot_iu_auto_instantiate_from_event',
                                'dot_iu_auto_instantiate_rollback_by_actor');
        RAISE EXCEPTION 'T4: the catalog rows were deleted under a ledger run that references one';
    EXCEPTION WHEN foreign_key_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    END;
    RAISE NOTICE 'T4 a DELETE under a ledger run breaks the ledger''s foreign key (%): the rollback refuses first', v_state;
END
$t4$;

-- T4 the run removed (in this transaction only), the rollback may run
DELETE FROM public.dot_iu_command_run
 WHERE command_name IN ('dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor');

-- T5 rollbacks/034.sql as it runs: its guards pass (the catalog is 034's, no ledger run), its
-- body removes the two rows, its assert proves the catalog back to 280's 24
\ir ../rollbacks/034.sql

-- T6 seed 004's cycle: migrations/sql/034.sql again, 24 → 26
\ir ../migrations/sql/034.sql

-- T6 both rows back as registered, as they are in the live catalog
DO $t6$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM (
        SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
          FROM public.dot_iu_command_catalog c
        INTERSECT
        SELECT l.command_name, l.category, l.mutating, l.reversible, l.target_functions, l.description
          FROM selftest_catalog_live l) AS d;
    IF n <> (SELECT count(*) FROM public.dot_iu_command_catalog)
       OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c
                       WHERE c.command_name = 'dot_iu_auto_instantiate_rollback_by_actor') THEN
        RAISE EXCEPTION 'T6: % of the catalog''s % rows are as they are live', n,
            (SELECT count(*) FROM public.dot_iu_command_catalog);
    END IF;
    RAISE NOTICE 'T6 the catalog is 034''s again: 280''s rows and 034''s two, each as it is live';
END
$t6$;

ROLLBACK;
