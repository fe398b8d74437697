CREATE OR REPLACE FUNCTION public.fn_iu_gate_verify_closed(p_gate_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_answer jsonb;
BEGIN
    -- least_privilege: the protocol gates are public.iu_gate_class's governable
    -- and never-flip rows, each read through fn_iu_gate_state. A governable gate
    -- is closed when it is 'false', or 'true' but shut because its open expired
    -- or never went through the protocol ("stale": every check reads it shut;
    -- the watchdog resets it to 'false'). A missing row or any other value is
    -- NOT closed, and a never-flip gate is intact only at exactly 'false':
    -- fail closed.
    WITH s AS (
        SELECT k.gate_key AS key, c.value, k.class,
               public.fn_iu_gate_state(k.gate_key) AS state
          FROM public.iu_gate_class AS k
          LEFT JOIN public.dot_config AS c ON c.key = k.gate_key
         WHERE k.class IN ('governable', 'never_flip')
           AND (p_gate_key IS NULL OR k.gate_key = p_gate_key)
    ), j AS (
        SELECT s.key, s.value, s.class, s.state,
               (s.value IS NOT DISTINCT FROM 'false'
                OR (s.class = 'governable' AND s.state IN ('expired', 'unprotocolled'))) AS closed,
               (s.class = 'governable' AND s.state IN ('expired', 'unprotocolled')) AS stale
          FROM s
    )
    SELECT CASE WHEN count(*) = 0 THEN NULL ELSE
           jsonb_build_object(
               'status', 'ok',
               'gate_count', count(*),
               'gates', jsonb_agg(jsonb_build_object('key', j.key, 'value', j.value, 'class', j.class,
                                                     'state', j.state)
                                  ORDER BY j.class, j.key),
               'all_governed_closed', coalesce(bool_and(j.closed) FILTER (WHERE j.class = 'governable'), true),
               'never_flip_intact', coalesce(bool_and(j.closed) FILTER (WHERE j.class = 'never_flip'), true),
               'all_safe', bool_and(j.closed),
               'open', coalesce(jsonb_agg(j.key ORDER BY j.key) FILTER (WHERE j.state = 'open'), '[]'),
               'stale_open', coalesce(jsonb_agg(j.key ORDER BY j.key) FILTER (WHERE j.stale), '[]'))
           || CASE WHEN bool_or(j.stale)
                   THEN jsonb_build_object(
                            'guidance', format('%s gate(s) read ''true'' but are shut (their open expired, or they were not opened through the gate protocol): %s. Every check treats them as shut; the watchdog (iucore gate watchdog) resets them to ''false''.',
                                               count(*) FILTER (WHERE j.stale),
                                               string_agg(j.key, ', ' ORDER BY j.key) FILTER (WHERE j.stale)),
                            'next_action', 'run_gate_watchdog')
                   ELSE '{}'::jsonb END
           END
      INTO v_answer
      FROM j;

    IF v_answer IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'gate_key',
                                  'guidance', 'Not one of the protocol gates (the governable and never-flip gates of public.iu_gate_class); pass NULL for all.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    RETURN v_answer;
END
$fn$;
