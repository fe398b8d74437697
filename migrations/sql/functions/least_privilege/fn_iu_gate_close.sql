CREATE OR REPLACE FUNCTION public.fn_iu_gate_close(
    p_gate_key text,
    p_reason   text,
    p_actor    text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- least_privilege: the class of a gate is public.iu_gate_class's, not a list of our own.
    v_class      text;
    v_prev       text;
    v_transition uuid := gen_random_uuid();
    v_run        uuid;
BEGIN
    SELECT k.class INTO v_class FROM public.iu_gate_class AS k WHERE k.gate_key = p_gate_key;
    IF p_gate_key IS NULL OR v_class IS NULL OR v_class NOT IN ('governable', 'never_flip') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_close: %s is not a governable runtime gate (fail-closed)', coalesce(p_gate_key, 'NULL')),
            HINT = 'The protocol closes: ' || (SELECT string_agg(k.gate_key, ', ' ORDER BY k.class, k.gate_key)
                                                 FROM public.iu_gate_class AS k
                                                WHERE k.class IN ('governable', 'never_flip'));
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_close: actor required (every transition names who made it)';
    END IF;

    SELECT c.value INTO v_prev FROM public.dot_config AS c WHERE c.key = p_gate_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('fn_iu_gate_close: gate %s has no row in public.dot_config (fail-closed)', p_gate_key);
    END IF;

    UPDATE public.dot_config SET value = 'false' WHERE key = p_gate_key;

    v_run := public.fn_dot_iu_command_log(
        'dot_iu_gate_close', 'health', 'apply', 'applied', true,
        md5(jsonb_build_object('gate_key', p_gate_key, 'reason', p_reason, 'actor', p_actor)::text),
        jsonb_build_object(p_gate_key, CASE WHEN v_prev IN ('true', 'false') THEN v_prev ELSE 'other' END),
        jsonb_build_object('transition_id', v_transition, 'action', 'close',
                           'prev_value', CASE WHEN v_prev IN ('true', 'false') THEN v_prev ELSE 'other' END,
                           'new_value', 'false'),
        p_actor);

    INSERT INTO public.iu_gate_transition
        (transition_id, gate_key, action, prev_value, new_value, actor, reason, run_id, created_at)
    VALUES
        (v_transition, p_gate_key, 'close', v_prev, 'false', p_actor, p_reason, v_run, clock_timestamp());

    RETURN jsonb_build_object('status', 'closed', 'gate_key', p_gate_key,
                              'prev_value', v_prev, 'new_value', 'false',
                              'was_open', v_prev IS DISTINCT FROM 'false',
                              'transition_id', v_transition, 'run_id', v_run);
END
$fn$;
