CREATE FUNCTION public.fn_iu_gate_is_open(p_key text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = public, pg_temp
AS $fn$
    -- Fail closed: a missing key, NULL, 'TRUE', ' true' ... all read as shut.
    SELECT coalesce((SELECT c.value = 'true' FROM public.dot_config c WHERE c.key = p_key), false);
$fn$;
