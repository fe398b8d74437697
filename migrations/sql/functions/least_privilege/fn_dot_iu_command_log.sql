CREATE OR REPLACE FUNCTION public.fn_dot_iu_command_log(
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
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_cat    record;
    v_key    text;
    v_value  jsonb;
    v_ok     boolean;
    v_run_id uuid;
BEGIN
    -- least_privilege: only SECURITY DEFINER functions call the logger (EXECUTE
    -- is revoked from PUBLIC and granted to no role), and even they cannot
    -- write a row that carries raw parameters, a NULL digest or a false
    -- category. Every refusal is a check_violation (23514) that names what was
    -- wrong, never the value.

    -- Fail closed: a run of an uncatalogued command is never recorded.
    SELECT c.category, c.mutating INTO v_cat
      FROM public.dot_iu_command_catalog AS c WHERE c.command_name = p_command;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = format('fn_dot_iu_command_log: command %L is not in public.dot_iu_command_catalog (fail-closed: nothing logged)', p_command),
            HINT = 'Register the command through a catalog revision before logging runs of it.';
    END IF;
    IF p_category IS DISTINCT FROM v_cat.category OR p_mutating IS DISTINCT FROM v_cat.mutating THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('fn_dot_iu_command_log: a run of %s is category %s, mutating %s (the catalog''s); nothing logged',
                             p_command, v_cat.category, v_cat.mutating);
    END IF;
    IF p_params_digest IS NULL OR p_params_digest !~ '^[0-9a-f]{32}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_dot_iu_command_log: params_digest must be the md5 of the parameters (32 lower-case hex digits); the ledger never keeps a NULL digest or a raw value',
            HINT = 'md5(jsonb_build_object(...)::text) of the call''s parameters.';
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_dot_iu_command_log: actor required (the claimed actor is recorded beside session_user)';
    END IF;

    -- The gate snapshot: classified gate keys, each with a state word.
    IF p_gate_snapshot IS NOT NULL AND jsonb_typeof(p_gate_snapshot) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_dot_iu_command_log: gate_snapshot must be a JSON object {gate_key: state}';
    END IF;
    FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(coalesce(p_gate_snapshot, '{}')) AS e LOOP
        IF NOT EXISTS (SELECT 1 FROM public.iu_gate_class AS k WHERE k.gate_key = v_key)
           OR jsonb_typeof(v_value) <> 'string' OR (v_value #>> '{}') !~ '^[a-z_]{1,32}$' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = format('fn_dot_iu_command_log: gate_snapshot entry %s is not a classified gate with a state word (public.iu_gate_class)',
                                 left(v_key, 64));
        END IF;
    END LOOP;

    -- The evidence: a closed set of keys, each with a shape that cannot carry
    -- a raw parameter value (words, numbers, uuids, timestamps, gate keys).
    IF p_evidence IS NOT NULL AND jsonb_typeof(p_evidence) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_dot_iu_command_log: evidence must be a JSON object';
    END IF;
    FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(coalesce(p_evidence, '{}')) AS e LOOP
        v_ok := CASE
            WHEN v_key IN ('reason', 'answer_status') THEN
                jsonb_typeof(v_value) = 'null'
                OR (jsonb_typeof(v_value) = 'string' AND (v_value #>> '{}') ~ '^[a-z][a-z0-9_]{0,63}$')
            WHEN v_key = 'sqlstate' THEN
                jsonb_typeof(v_value) = 'string' AND (v_value #>> '{}') ~ '^[0-9A-Z]{5}$'
            WHEN v_key = 'closed_gates' THEN
                jsonb_typeof(v_value) = 'array'
                AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_value) AS g (x)
                                 WHERE jsonb_typeof(g.x) <> 'string'
                                    OR NOT EXISTS (SELECT 1 FROM public.iu_gate_class AS k
                                                    WHERE k.gate_key = g.x #>> '{}'))
            WHEN v_key IN ('statements', 'closed_count') THEN
                jsonb_typeof(v_value) = 'number' AND v_value::text ~ '^[0-9]{1,9}$'
            WHEN v_key = 'transition_id' THEN
                jsonb_typeof(v_value) = 'string'
                AND (v_value #>> '{}') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            WHEN v_key = 'action' THEN
                jsonb_typeof(v_value) = 'string' AND (v_value #>> '{}') IN ('open', 'close', 'watchdog_close')
            WHEN v_key IN ('prev_value', 'new_value') THEN
                jsonb_typeof(v_value) = 'null'
                OR (jsonb_typeof(v_value) = 'string' AND (v_value #>> '{}') IN ('true', 'false', 'other'))
            WHEN v_key IN ('expires_at', 'expired_at') THEN
                jsonb_typeof(v_value) = 'null'
                OR (jsonb_typeof(v_value) = 'string'
                    AND (v_value #>> '{}') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?([+-][0-9]{2}(:[0-9]{2}){0,2})?$')
            ELSE false
        END;
        IF NOT v_ok THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = format('fn_dot_iu_command_log: evidence key %s is not one the ledger keeps, or its value has a shape that could carry a raw parameter; nothing logged',
                                 left(v_key, 64)),
                HINT = 'Evidence keys: reason, answer_status, sqlstate, closed_gates, statements, closed_count, transition_id, action, prev_value, new_value, expires_at, expired_at.';
        END IF;
    END LOOP;

    -- clock_timestamp(): several runs in one transaction keep their real order.
    -- session_user: who is logged in, whatever actor is claimed.
    INSERT INTO public.dot_iu_command_run
        (command_name, category, run_mode, run_status, mutating, params_digest,
         gate_snapshot, evidence, actor, session_user_name, created_at)
    VALUES
        (p_command, p_category, p_run_mode, p_run_status, p_mutating, p_params_digest,
         coalesce(p_gate_snapshot, '{}'), coalesce(p_evidence, '{}'), p_actor, session_user, clock_timestamp())
    RETURNING run_id INTO v_run_id;

    RETURN v_run_id;
END
$fn$;
