CREATE OR REPLACE FUNCTION public.fn_dot_iu_execute(
    p_command  text,
    p_run_mode text,
    p_args     jsonb,
    p_actor    text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- Answers that mean "nothing was done" (the function's guidance says why).
    c_refusals CONSTANT text[] := ARRAY['refused', 'invalid_input', 'review_decision_not_found', 'duplicate',
                                        'not_found', 'not_soft_deleted', 'already_retired',
                                        'already_soft_deleted'];
    -- SQLSTATEs of a function that said no (privilege, a CHECK, a RAISE): refused, not failed.
    c_refusal_states CONSTANT text[] := ARRAY['42501', '23514', 'P0001'];
    v_t0       timestamptz := clock_timestamp();
    v_cmd      record;
    v_fn       record;
    v_args     jsonb := coalesce(p_args, '[]'::jsonb);
    v_actor    text := p_actor;
    v_digest   text;
    v_owner    oid;
    v_n        integer;
    v_nargs    integer;  -- the target's argument count, and how many may be left to their defaults
    v_ndefault integer;
    v_i        integer;
    v_type     regtype;
    v_elem     jsonb;
    v_exprs    text[] := '{}';
    v_rule     record;
    v_pos      integer;
    v_match    boolean;
    v_gates    text[] := '{}';
    v_snapshot jsonb := '{}';
    v_closed   text[] := '{}';
    v_sql      text;
    v_answer   jsonb;
    v_status   text;
    v_undo     boolean := false;
    v_state    text;
    v_msg      text;
    v_reason   text;
    v_evidence jsonb;
    v_run      uuid;
    v_guidance text;
    v_next     text;
BEGIN
    -- The one governed entry point (least_privilege): the command is looked up
    -- in the catalog, its gates are checked before anything is called, its
    -- target function is called with the arguments of p_args (a JSON array, by
    -- position) cast to the function's own argument types and passed ONLY as a
    -- bound parameter (EXECUTE … USING: no value is ever spliced into SQL text),
    -- in a sub-block that undoes the call when it refuses or fails, and exactly
    -- one ledger row is written through fn_dot_iu_command_log (the gate-protocol
    -- functions log themselves). The digest is md5 of the command and p_args.
    --
    -- It runs as its owner: its search_path is pg_catalog, pg_temp (public is
    -- shared with Directus, whose role may CREATE there: nothing it plants is
    -- on this path), every IU Core object is schema-qualified, every literal
    -- passed to an IU Core function has that function's own type, and the
    -- target must belong to the dispatcher's own owner. Gates are read afresh
    -- by every call and no gate row stays locked after it, so an emergency
    -- close never waits for a caller's open transaction; that is why a caller
    -- must be READ COMMITTED (a REPEATABLE READ or SERIALIZABLE snapshot would
    -- keep reading an open that has since been closed).

    IF p_run_mode IS NULL OR p_run_mode NOT IN ('plan', 'apply', 'verify') THEN
        -- The ledger's run_mode cannot hold it: refused, and not logged.
        RETURN jsonb_build_object('status', 'refused', 'reason', 'invalid_run_mode', 'command', p_command,
                                  'guidance', 'run_mode must be plan, apply or verify; nothing ran.',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    SELECT c.command_name, c.category, c.mutating, c.target_functions, c.logs_itself INTO v_cmd
      FROM public.dot_iu_command_catalog AS c WHERE c.command_name = p_command;
    IF NOT FOUND THEN
        -- The ledger records catalogued commands only: refused, never executed, not logged.
        RETURN jsonb_build_object('status', 'refused', 'reason', 'unknown_command', 'command', p_command,
                                  'mode', p_run_mode,
                                  'guidance', 'Not a command of public.dot_iu_command_catalog; nothing ran.',
                                  'next_action', 'check_command_name');
    END IF;

    v_digest := md5(jsonb_build_object('command', p_command, 'args', v_args)::text);
    IF v_actor IS NULL OR btrim(v_actor) = '' THEN
        v_actor := session_user;
        v_reason := 'actor_required';
    ELSIF current_setting('transaction_isolation') <> 'read committed' THEN
        v_reason := 'isolation_not_read_committed';
    ELSIF p_run_mode = 'verify' AND v_cmd.mutating THEN
        v_reason := 'verify_mutating';
    ELSIF jsonb_typeof(v_args) <> 'array' THEN
        v_reason := 'invalid_args';
    END IF;

    -- The target: the catalog's one function, unambiguous (no other function of
    -- that name in public), not variadic, answering jsonb — and its owner's: a
    -- function of that name that some other role created (public is shared)
    -- would run with the owner's rights from here, so it is refused.
    IF v_reason IS NULL THEN
        SELECT d.proowner INTO v_owner
          FROM pg_catalog.pg_proc AS d
         WHERE d.oid = 'public.fn_dot_iu_execute(text,text,jsonb,text)'::pg_catalog.regprocedure;
        -- argtypes 1-based like argnames (an oidvector cast to oid[] keeps its 0 lower bound)
        SELECT p.oid, p.proname, n.nspname, p.proowner, p.pronargs, p.pronargdefaults,
               ARRAY(SELECT u.t FROM unnest(p.proargtypes) WITH ORDINALITY AS u (t, o) ORDER BY u.o) AS argtypes,
               coalesce(p.proargnames, '{}') AS argnames
          INTO v_fn
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public'
           AND cardinality(v_cmd.target_functions) = 1
           AND p.proname = v_cmd.target_functions[1]
           AND p.prokind = 'f' AND p.provariadic = 0 AND p.prorettype = 'jsonb'::regtype
           AND (SELECT count(*) FROM pg_catalog.pg_proc AS o
                 WHERE o.pronamespace = p.pronamespace AND o.proname = p.proname) = 1;
        IF NOT FOUND THEN
            v_reason := 'target_unresolvable';
        ELSIF v_owner IS NULL OR v_fn.proowner IS DISTINCT FROM v_owner THEN
            v_reason := 'target_untrusted';
        ELSE
            v_nargs := v_fn.pronargs;
            v_ndefault := v_fn.pronargdefaults;
        END IF;
    END IF;

    -- The arguments: a JSON array no longer than the function's argument list,
    -- no shorter than its arguments without a default; each element of a shape
    -- its argument type can take. Each becomes an expression over $1 alone.
    IF v_reason IS NULL THEN
        v_n := jsonb_array_length(v_args);
        IF v_n > v_nargs OR v_n < v_nargs - v_ndefault THEN
            v_reason := 'invalid_args';
        END IF;
    END IF;
    IF v_reason IS NULL THEN
        FOR v_i IN 0 .. v_n - 1 LOOP
            v_type := v_fn.argtypes[v_i + 1]::regtype;
            v_elem := v_args -> v_i;
            IF v_type IN ('jsonb'::regtype, 'json'::regtype) THEN
                -- JSON null is SQL NULL, as for every other type
                v_exprs := v_exprs || format('nullif($1 -> %s, ''null''::jsonb)::%s', v_i, v_type);
            ELSIF (SELECT t.typcategory = 'A' FROM pg_catalog.pg_type AS t WHERE t.oid = v_type) THEN
                IF jsonb_typeof(v_elem) NOT IN ('array', 'null')
                   OR (jsonb_typeof(v_elem) = 'array'
                       AND EXISTS (SELECT 1 FROM jsonb_array_elements(v_elem) AS e (x)
                                    WHERE jsonb_typeof(e.x) IN ('array', 'object'))) THEN
                    v_reason := 'invalid_args';
                    EXIT;
                END IF;
                v_exprs := v_exprs || format(
                    '(CASE WHEN jsonb_typeof($1 -> %1$s) = ''array'' THEN ARRAY(SELECT e.x FROM jsonb_array_elements_text($1 -> %1$s) WITH ORDINALITY AS e (x, n) ORDER BY e.n) END)::%2$s',
                    v_i, v_type);
            ELSE
                IF jsonb_typeof(v_elem) IN ('array', 'object') THEN
                    v_reason := 'invalid_args';
                    EXIT;
                END IF;
                v_exprs := v_exprs || format('($1 ->> %s)::%s', v_i, v_type);
            END IF;
        END LOOP;
    END IF;

    IF v_reason IS NOT NULL THEN
        v_run := public.fn_dot_iu_command_log(
            p_command, v_cmd.category, p_run_mode, CASE WHEN v_reason = 'target_unresolvable' THEN 'failed' ELSE 'refused' END,
            v_cmd.mutating, v_digest, '{}'::jsonb, jsonb_build_object('reason', v_reason), v_actor);
        RETURN jsonb_build_object(
            'status', CASE WHEN v_reason = 'target_unresolvable' THEN 'failed' ELSE 'refused' END,
            'reason', v_reason, 'command', p_command, 'mode', p_run_mode, 'answer', NULL, 'run_id', v_run,
            'closed_gates', '[]'::jsonb, 'gate_snapshot', '{}'::jsonb, 'params_digest', v_digest,
            'guidance', CASE v_reason
                WHEN 'actor_required' THEN 'An actor is required: every run names who claims it.'
                WHEN 'isolation_not_read_committed' THEN format('The dispatcher runs only in a READ COMMITTED transaction (this one is %s): every call must read the gates as committed now, so that a close takes effect at the next call. Run it in its own transaction or a READ COMMITTED one.', current_setting('transaction_isolation'))
                WHEN 'verify_mutating' THEN p_command || ' mutates; verify runs read commands only (use apply).'
                WHEN 'invalid_args' THEN format('The arguments must be a JSON array of at most %s value(s), at least %s, by position, each of a shape its argument type takes.',
                                                coalesce(v_nargs::text, 'the function''s'), coalesce((v_nargs - v_ndefault)::text, 'its required'))
                WHEN 'target_untrusted' THEN 'The function the catalog names for this command is not owned by the dispatcher''s owner (no revision installed it): it is never run.'
                ELSE 'The catalog''s target function of this command does not resolve to exactly one function answering jsonb.' END,
            'next_action', CASE WHEN v_reason IN ('target_unresolvable', 'target_untrusted') THEN 'inspect_catalog'
                                WHEN v_reason = 'isolation_not_read_committed' THEN 'use_read_committed'
                                ELSE 'fix_input_and_retry' END);
    END IF;

    -- The gates this call needs (public.dot_iu_command_gate), in order: a
    -- conditional one when its argument, cast to the argument's type, equals
    -- the rule's value — or when that cannot be decided (fail closed). Read
    -- now, as committed (READ COMMITTED, checked above); no lock is kept, so a
    -- protocol close never waits for this caller and the next call sees it.
    IF p_run_mode IN ('plan', 'apply') THEN
        FOR v_rule IN
            SELECT g.gate_key, g.when_arg, g.when_value
              FROM public.dot_iu_command_gate AS g
             WHERE g.command_name = p_command
             ORDER BY g.ord, g.gate_key
        LOOP
            v_match := true;
            IF v_rule.when_arg IS NOT NULL THEN
                v_pos := array_position(v_fn.argnames, v_rule.when_arg);
                IF v_pos IS NOT NULL AND v_pos <= v_n THEN
                    BEGIN
                        EXECUTE format('SELECT %s IS NOT DISTINCT FROM $2::%s', v_exprs[v_pos],
                                       v_fn.argtypes[v_pos]::regtype)
                           INTO v_match USING v_args, v_rule.when_value;
                    EXCEPTION WHEN OTHERS THEN
                        v_match := true;
                    END;
                END IF;
            END IF;
            IF v_match THEN
                v_gates := v_gates || v_rule.gate_key;
            END IF;
        END LOOP;
        SELECT coalesce(jsonb_object_agg(g.k, public.fn_iu_gate_state(g.k)), '{}'),
               coalesce(array_agg(g.k ORDER BY g.ord) FILTER (WHERE public.fn_iu_gate_state(g.k) <> 'open'), '{}')
          INTO v_snapshot, v_closed
          FROM unnest(v_gates) WITH ORDINALITY AS g (k, ord);
    END IF;

    IF p_run_mode = 'plan' THEN
        v_run := public.fn_dot_iu_command_log(
            p_command, v_cmd.category, 'plan', 'planned', v_cmd.mutating, v_digest, v_snapshot,
            jsonb_build_object('statements', 1, 'closed_gates', to_jsonb(v_closed)), v_actor);
        RETURN jsonb_build_object('status', 'planned', 'command', p_command, 'mode', 'plan', 'answer', NULL,
                                  'run_id', v_run, 'closed_gates', to_jsonb(v_closed), 'gate_snapshot', v_snapshot,
                                  'params_digest', v_digest,
                                  'guidance', CASE WHEN cardinality(v_closed) > 0
                                                   THEN 'gate(s) shut: ' || array_to_string(v_closed, ', ') END,
                                  'next_action', CASE WHEN cardinality(v_closed) > 0 THEN 'open_gate_first' END);
    END IF;

    IF cardinality(v_closed) > 0 THEN
        v_run := public.fn_dot_iu_command_log(
            p_command, v_cmd.category, p_run_mode, 'refused', v_cmd.mutating, v_digest, v_snapshot,
            jsonb_build_object('closed_gates', to_jsonb(v_closed), 'reason', 'gate_closed'), v_actor);
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed', 'command', p_command,
                                  'mode', p_run_mode, 'answer', NULL, 'run_id', v_run,
                                  'closed_gates', to_jsonb(v_closed), 'gate_snapshot', v_snapshot,
                                  'params_digest', v_digest,
                                  'guidance', 'gate(s) shut: ' || array_to_string(v_closed, ', ')
                                              || '; open through the gate protocol',
                                  'next_action', 'open_gate_first');
    END IF;

    -- The call. Identifiers come from the catalog (%I), types from pg_proc
    -- (regtype); the values reach it only through USING.
    v_sql := format('SELECT %I.%I(%s)', v_fn.nspname, v_fn.proname, array_to_string(v_exprs, ', '));
    BEGIN
        EXECUTE v_sql INTO v_answer USING v_args;
        v_status := CASE
            WHEN v_answer ->> 'status' = ANY (c_refusals) THEN 'refused'
            WHEN jsonb_typeof(v_answer -> 'ok') = 'boolean' AND NOT (v_answer ->> 'ok')::boolean THEN 'failed'
            WHEN p_run_mode = 'verify' THEN 'verified'
            ELSE 'applied'
        END;
        v_reason := 'function_answer';
        IF v_status IN ('refused', 'failed') THEN
            v_undo := true;
            RAISE EXCEPTION USING ERRCODE = 'IUDX1', MESSAGE = 'fn_dot_iu_execute: undo a refused call';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Everything the call did is undone here. Our own undo keeps the answer;
        -- an error becomes the answer.
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        IF NOT (v_undo AND v_state = 'IUDX1') THEN
            v_status := CASE WHEN v_state = ANY (c_refusal_states) THEN 'refused' ELSE 'failed' END;
            v_reason := 'sql_error';
            v_answer := jsonb_build_object('status', v_status, 'sqlstate', v_state, 'error', v_msg);
        END IF;
    END;

    v_guidance := CASE WHEN v_reason = 'sql_error' THEN v_msg ELSE v_answer ->> 'guidance' END;
    v_next := v_answer ->> 'next_action';
    IF v_cmd.logs_itself AND v_status IN ('applied', 'verified') THEN
        -- The gate-protocol functions wrote their own row(s); the answer names the run.
        v_run := CASE WHEN (v_answer ->> 'run_id') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                      THEN (v_answer ->> 'run_id')::uuid END;
    ELSE
        v_evidence := CASE
            WHEN v_reason = 'sql_error' THEN jsonb_build_object('sqlstate', v_state, 'reason', 'sql_error')
            WHEN v_status IN ('refused', 'failed')
                THEN jsonb_build_object('answer_status', CASE WHEN (v_answer ->> 'status') ~ '^[a-z][a-z0-9_]{0,63}$'
                                                              THEN v_answer ->> 'status' END,
                                        'reason', 'function_answer')
            ELSE jsonb_build_object('answer_status', CASE WHEN (v_answer ->> 'status') ~ '^[a-z][a-z0-9_]{0,63}$'
                                                          THEN v_answer ->> 'status' END)
        END;
        v_run := public.fn_dot_iu_command_log(
            p_command, v_cmd.category, p_run_mode, v_status, v_cmd.mutating, v_digest, v_snapshot,
            v_evidence, v_actor);
    END IF;

    RETURN jsonb_build_object('status', v_status, 'command', p_command, 'mode', p_run_mode,
                              'answer', v_answer, 'run_id', v_run,
                              'closed_gates', '[]'::jsonb, 'gate_snapshot', v_snapshot,
                              'params_digest', v_digest,
                              'guidance', v_guidance, 'next_action', v_next,
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - v_t0)::numeric * 1000, 2));
END
$fn$;
