-- Shared by the 280 and 034 self-tests (\ir lib/catalog_live.sql): the live
-- catalog, every revision's rows, kept in selftest_catalog_live to compare with
-- after the self-test has run the real files on an emptied catalog; and every
-- target function of every row resolves.
CREATE TEMP TABLE selftest_catalog_live (
    command_name     text,
    category         text,
    mutating         boolean,
    reversible       boolean,
    target_functions text[],
    description      text
) ON COMMIT DROP;

DO $catalog_live$
DECLARE
    v_unresolved text[];
BEGIN
    INSERT INTO selftest_catalog_live
    SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
      FROM public.dot_iu_command_catalog c;
    SELECT array_agg(DISTINCT t ORDER BY t) INTO v_unresolved
      FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t);
    IF v_unresolved IS NOT NULL THEN
        RAISE EXCEPTION 'T0: catalog target function(s) not resolvable: %', array_to_string(v_unresolved, ', ');
    END IF;
    RAISE NOTICE 'T0 the live catalog kept for comparison; every target function of every row resolves';
END
$catalog_live$;
