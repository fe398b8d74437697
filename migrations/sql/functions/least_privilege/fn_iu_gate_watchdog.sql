CREATE OR REPLACE FUNCTION public.fn_iu_gate_watchdog(p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_gate       record;
    v_transition uuid;
    v_run        uuid;
    v_reason     text;
    v_closed     jsonb := '[]';
BEGIN
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_watchdog: actor required (every transition names who made it)';
    END IF;

    -- least_privilege: the governable gates are public.iu_gate_class's, and a
    -- gate that is 'true' stays so only while fn_iu_gate_state reads it open
    -- (its latest transition an approved 'open' whose TTL runs). Expired, never
    -- opened through the protocol, or re-opened by hand after a close: closed.
    FOR v_gate IN
        SELECT c.key, lt.action AS last_action, lt.expires_at AS last_expires_at
          FROM public.dot_config AS c
          JOIN public.iu_gate_class AS k ON k.gate_key = c.key AND k.class = 'governable'
          LEFT JOIN LATERAL (
                SELECT t.action, t.expires_at
                  FROM public.iu_gate_transition AS t
                 WHERE t.gate_key = c.key
                 ORDER BY t.created_at DESC, t.transition_id DESC
                 LIMIT 1) AS lt ON true
         WHERE c.value = 'true'
         ORDER BY c.key
           FOR UPDATE OF c
    LOOP
        IF public.fn_iu_gate_state(v_gate.key) = 'open' THEN
            CONTINUE;
        END IF;

        v_reason := CASE
            WHEN v_gate.last_action = 'open'
                THEN format('watchdog: open expired at %s', v_gate.last_expires_at)
            WHEN v_gate.last_action IS NULL
                THEN 'watchdog: open without a protocol transition (no TTL)'
            ELSE 'watchdog: re-opened outside the protocol after a ' || v_gate.last_action
        END;
        v_transition := gen_random_uuid();

        UPDATE public.dot_config SET value = 'false' WHERE key = v_gate.key;

        v_run := public.fn_dot_iu_command_log(
            'dot_iu_gate_watchdog', 'health', 'apply', 'applied', true,
            md5(jsonb_build_object('gate_key', v_gate.key, 'actor', p_actor)::text),
            jsonb_build_object(v_gate.key, 'true'),
            jsonb_build_object('transition_id', v_transition, 'action', 'watchdog_close',
                               'prev_value', 'true', 'new_value', 'false',
                               'expired_at', v_gate.last_expires_at),
            p_actor);

        INSERT INTO public.iu_gate_transition
            (transition_id, gate_key, action, prev_value, new_value, actor, reason, run_id, created_at)
        VALUES
            (v_transition, v_gate.key, 'watchdog_close', 'true', 'false', p_actor, v_reason, v_run,
             clock_timestamp());

        v_closed := v_closed || jsonb_build_object('gate_key', v_gate.key,
                                                   'expired_at', v_gate.last_expires_at,
                                                   'reason', v_reason,
                                                   'transition_id', v_transition, 'run_id', v_run);
    END LOOP;

    -- A sweep that closed nothing is still audited: one ledger row per call at
    -- least (a 'verify' run: checked, nothing to do).
    v_run := NULL;
    IF jsonb_array_length(v_closed) = 0 THEN
        v_run := public.fn_dot_iu_command_log(
            'dot_iu_gate_watchdog', 'health', 'verify', 'verified', true,
            md5(jsonb_build_object('actor', p_actor)::text),
            (SELECT coalesce(jsonb_object_agg(c.key, CASE WHEN c.value IN ('true', 'false') THEN c.value
                                                          ELSE 'other' END), '{}')
               FROM public.dot_config AS c
               JOIN public.iu_gate_class AS k ON k.gate_key = c.key AND k.class = 'governable'),
            jsonb_build_object('closed_count', 0),
            p_actor);
    END IF;

    RETURN jsonb_build_object('status', 'ok',
                              'closed_count', jsonb_array_length(v_closed),
                              'closed', v_closed,
                              'run_id', v_run,
                              'checked_at', now());
END
$fn$;
