CREATE FUNCTION public.fn_dot_iu_command_log(
    p_command       text,
    p_category      text,
    p_run_mode      text,
    p_run_status    text,
    p_mutating      boolean,
    p_params_digest text,
    p_gate_snapshot jsonb,
    p_evidence      jsonb,
    p_actor         text)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_run_id uuid;
BEGIN
    -- Fail closed: a run of an uncatalogued command is never recorded.
    IF NOT EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c WHERE c.command_name = p_command) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = format('fn_dot_iu_command_log: command %L is not in public.dot_iu_command_catalog (fail-closed: nothing logged)', p_command),
            HINT = 'Register the command through a catalog revision before logging runs of it.';
    END IF;

    -- clock_timestamp(): several runs in one transaction keep their real order.
    INSERT INTO public.dot_iu_command_run
        (command_name, category, run_mode, run_status, mutating, params_digest,
         gate_snapshot, evidence, actor, created_at)
    VALUES
        (p_command, p_category, p_run_mode, p_run_status, p_mutating, p_params_digest,
         coalesce(p_gate_snapshot, '{}'), coalesce(p_evidence, '{}'), p_actor, clock_timestamp())
    RETURNING run_id INTO v_run_id;

    RETURN v_run_id;
END
$fn$;
