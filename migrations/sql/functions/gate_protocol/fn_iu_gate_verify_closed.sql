CREATE FUNCTION public.fn_iu_gate_verify_closed(p_gate_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_answer jsonb;
BEGIN
    -- Closed means exactly 'false'; a missing row (NULL) or any other value is
    -- NOT safe: fail closed.
    WITH g (key, class, ord) AS (
        VALUES ('iu_core.composer_enabled', 'governable', 1),
               ('iu_core.structure_ops_enabled', 'governable', 2),
               ('iu_core.delivery_enabled', 'governable', 3),
               ('iu_core.three_axis_auto_refresh_enabled', 'governable', 4),
               ('iu_core.operator_runtime_enabled', 'governable', 5),
               ('queue.job_substrate.enabled', 'governable', 6),
               ('queue.dlq.replay_enabled', 'governable', 7),
               ('iu_enact.allow_no_review_decision', 'never_flip', 8),
               ('iu_core.vector_sync_enabled', 'never_flip', 9)
    ), s AS (
        SELECT g.key, c.value, g.class, g.ord,
               (c.value IS NOT DISTINCT FROM 'false') AS closed
          FROM g
          LEFT JOIN public.dot_config c ON c.key = g.key
         WHERE p_gate_key IS NULL OR g.key = p_gate_key
    )
    SELECT CASE WHEN count(*) = 0 THEN NULL ELSE
           jsonb_build_object(
               'status', 'ok',
               'gate_count', count(*),
               'gates', jsonb_agg(jsonb_build_object('key', s.key, 'value', s.value, 'class', s.class)
                                  ORDER BY s.ord),
               'all_governed_closed', coalesce(bool_and(s.closed) FILTER (WHERE s.class = 'governable'), true),
               'never_flip_intact', coalesce(bool_and(s.closed) FILTER (WHERE s.class = 'never_flip'), true),
               'all_safe', bool_and(s.closed)) END
      INTO v_answer
      FROM s;

    IF v_answer IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'gate_key',
                                  'guidance', 'Not one of the 9 protocol gates (7 governable, 2 never-flip); pass NULL for all.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    RETURN v_answer;
END
$fn$;
