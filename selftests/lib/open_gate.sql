-- Shared by the self-tests (\ir lib/open_gate.sql, after BEGIN): a gate opened
-- for the test, inside its transaction, the way the database at hand allows.
-- From revision least_privilege on, a governable gate reads open only through
-- the gate protocol (fn_iu_gate_open: an approval id, a TTL; a value set by
-- hand reads shut); before it, and for a key outside the protocol, by hand.
CREATE FUNCTION pg_temp.selftest_open_gate(p_gate_key text, p_actor text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF to_regclass('public.iu_gate_class') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM public.iu_gate_class AS k
                    WHERE k.gate_key = p_gate_key AND k.class = 'governable') THEN
            PERFORM public.fn_iu_gate_open(p_gate_key, gen_random_uuid(), 'self-test', p_actor, 600);
            RETURN p_gate_key || ' open';
        END IF;
    END IF;
    UPDATE public.dot_config SET value = 'true' WHERE key = p_gate_key;
    RETURN p_gate_key || ' open';
END
$fn$;
