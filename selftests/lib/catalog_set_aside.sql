-- Shared by the 280 and 034 self-tests (\ir lib/catalog_set_aside.sql): the ledger
-- runs and the catalog rows set aside, in this transaction only, so the real files
-- run on an empty catalog (280 on 017's, 034 on the 24 rows of 280's seed it re-runs).
--
-- Production keeps logging governed commands while a self-test runs. A ledger run
-- committed after this transaction's snapshot is invisible to it, so the DELETE of
-- the runs cannot take it, and the DELETE of the catalog row it references breaks
-- the ledger's foreign key. That is a concurrent write, not a failure of the
-- self-test: it is reported as a serialization failure, and iucore replays the
-- self-test whole on a new snapshot, which sees that run and sets it aside.
DO $catalog_set_aside$
BEGIN
    DELETE FROM public.dot_iu_command_run;
    BEGIN
        DELETE FROM public.dot_iu_command_catalog;
    EXCEPTION WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'a ledger run committed while this self-test set the ledger aside references a catalog row'
            USING ERRCODE = 'serialization_failure',
                  HINT = 'Run the self-test again: a new snapshot sees that run.';
    END;
    IF EXISTS (SELECT 1 FROM public.dot_iu_command_catalog) THEN
        RAISE EXCEPTION 'the catalog is not empty after it was set aside';
    END IF;
    RAISE NOTICE 'the ledger runs and the catalog rows set aside (in this transaction only)';
END
$catalog_set_aside$;
