CREATE FUNCTION public.fn_iu_gate_close(
    p_gate_key text,
    p_reason   text,
    p_actor    text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_never_flip CONSTANT text[] := ARRAY['iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled'];
    c_governable CONSTANT text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled'];
    v_prev       text;
    v_transition uuid := gen_random_uuid();
    v_run        uuid;
BEGIN
    IF p_gate_key IS NULL OR NOT (p_gate_key = ANY (c_governable || c_never_flip)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_close: %s is not a governable runtime gate (fail-closed)', coalesce(p_gate_key, 'NULL')),
            HINT = 'The protocol closes: ' || array_to_string(c_governable || c_never_flip, ', ');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_close: actor required (every transition names who made it)';
    END IF;

    SELECT c.value INTO v_prev FROM public.dot_config c WHERE c.key = p_gate_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('fn_iu_gate_close: gate %s has no row in public.dot_config (fail-closed)', p_gate_key);
    END IF;

    UPDATE public.dot_config SET value = 'false' WHERE key = p_gate_key;

    v_run := public.fn_dot_iu_command_log(
        'dot_iu_gate_close', 'health', 'apply', 'applied', true,
        md5(jsonb_build_object('gate_key', p_gate_key, 'reason', p_reason, 'actor', p_actor)::text),
        jsonb_build_object(p_gate_key, v_prev),
        jsonb_build_object('transition_id', v_transition, 'action', 'close',
                           'prev_value', v_prev, 'new_value', 'false'),
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
