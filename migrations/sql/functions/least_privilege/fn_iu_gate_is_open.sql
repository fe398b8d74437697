CREATE OR REPLACE FUNCTION public.fn_iu_gate_is_open(p_key text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    -- least_privilege: every function's own gate check reads the one gate
    -- reading, so an open whose TTL ran out is shut here too, and a key that
    -- is not classified, missing, NULL, 'TRUE', ' true' ... all read as shut.
    SELECT coalesce(public.fn_iu_gate_state(p_key) = 'open', false);
$fn$;
