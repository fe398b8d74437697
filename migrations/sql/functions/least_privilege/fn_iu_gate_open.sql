CREATE OR REPLACE FUNCTION public.fn_iu_gate_open(
    p_gate_key    text,
    p_approval_id uuid,
    p_reason      text,
    p_actor       text,
    p_ttl_seconds integer)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- least_privilege: the class of a gate is public.iu_gate_class's, not a list of our own.
    v_class      text;
    v_prev       text;
    v_expires    timestamptz;
    v_transition uuid := gen_random_uuid();
    v_run        uuid;
BEGIN
    SELECT k.class INTO v_class FROM public.iu_gate_class AS k WHERE k.gate_key = p_gate_key;
    IF v_class = 'never_flip' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_open: %s is NEVER-FLIP: no approval opens it — to enact, supply a real review_decision_id', p_gate_key),
            HINT = 'Split/merge take a cutter_governance.review_decision id; this gate stays false.';
    END IF;
    IF p_gate_key IS NULL OR v_class IS DISTINCT FROM 'governable' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_open: %s is not a governable runtime gate (fail-closed)', coalesce(p_gate_key, 'NULL')),
            HINT = 'Governable: ' || (SELECT string_agg(k.gate_key, ', ' ORDER BY k.gate_key)
                                        FROM public.iu_gate_class AS k WHERE k.class = 'governable');
    END IF;
    IF p_approval_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('fn_iu_gate_open: approval_id required (Điều 32) to open %s', p_gate_key);
    END IF;
    IF p_ttl_seconds IS NULL OR p_ttl_seconds <= 0 OR p_ttl_seconds > 3600 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('fn_iu_gate_open: ttl_seconds must be in (0, 3600], got %s', coalesce(p_ttl_seconds::text, 'NULL'));
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_open: actor required (every transition names who made it)';
    END IF;

    SELECT c.value INTO v_prev FROM public.dot_config AS c WHERE c.key = p_gate_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('fn_iu_gate_open: gate %s has no row in public.dot_config (fail-closed)', p_gate_key);
    END IF;

    v_expires := now() + make_interval(secs => p_ttl_seconds);
    UPDATE public.dot_config SET value = 'true' WHERE key = p_gate_key;

    -- The ledger keeps the digest and the gate's value as a state word
    -- ('other' for a value set by hand that is neither true nor false); the
    -- transition row keeps the raw value.
    v_run := public.fn_dot_iu_command_log(
        'dot_iu_gate_open', 'health', 'apply', 'applied', true,
        md5(jsonb_build_object('gate_key', p_gate_key, 'approval_id', p_approval_id, 'reason', p_reason,
                               'actor', p_actor, 'ttl_seconds', p_ttl_seconds)::text),
        jsonb_build_object(p_gate_key, CASE WHEN v_prev IN ('true', 'false') THEN v_prev ELSE 'other' END),
        jsonb_build_object('transition_id', v_transition, 'action', 'open',
                           'prev_value', CASE WHEN v_prev IN ('true', 'false') THEN v_prev ELSE 'other' END,
                           'new_value', 'true', 'expires_at', v_expires),
        p_actor);

    INSERT INTO public.iu_gate_transition
        (transition_id, gate_key, action, prev_value, new_value, approval_id, ttl_seconds,
         expires_at, actor, reason, run_id, created_at)
    VALUES
        (v_transition, p_gate_key, 'open', v_prev, 'true', p_approval_id, p_ttl_seconds,
         v_expires, p_actor, p_reason, v_run, clock_timestamp());

    RETURN jsonb_build_object('status', 'opened', 'gate_key', p_gate_key,
                              'prev_value', v_prev, 'new_value', 'true',
                              'approval_id', p_approval_id, 'ttl_seconds', p_ttl_seconds,
                              'expires_at', v_expires,
                              'transition_id', v_transition, 'run_id', v_run);
END
$fn$;
