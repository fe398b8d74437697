CREATE OR REPLACE FUNCTION public.fn_iu_gate_state(p_gate_key text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    -- The one reading of a gate (least_privilege), for every check: the
    -- functions' own (fn_iu_gate_is_open), the dispatcher's, the verify, the
    -- watchdog. A governable gate is 'open' only while its latest protocol
    -- transition is an approved 'open' whose TTL still runs, whether or not the
    -- watchdog has swept. Everything else is some kind of shut (fail closed):
    --   unclassified   the key is not in public.iu_gate_class
    --   missing        no row in public.dot_config
    --   shut           'false' (outside_protocol: anything but 'true')
    --   expired        governable, 'true', its open's TTL has run out
    --   unprotocolled  governable, 'true', but not opened through the protocol
    --   invalid        governable, neither 'true' nor 'false'
    --   flipped        never-flip, not 'false' (a violation; still reads shut)
    SELECT CASE
               WHEN k.class IS NULL THEN 'unclassified'
               WHEN c.value IS NULL THEN 'missing'
               WHEN k.class = 'outside_protocol' THEN CASE WHEN c.value = 'true' THEN 'open' ELSE 'shut' END
               WHEN k.class = 'never_flip' THEN CASE WHEN c.value = 'false' THEN 'shut' ELSE 'flipped' END
               WHEN c.value = 'false' THEN 'shut'
               WHEN c.value <> 'true' THEN 'invalid'
               WHEN lt.action = 'open' AND lt.approval_id IS NOT NULL
                    AND lt.expires_at > clock_timestamp() THEN 'open'
               WHEN lt.action = 'open' THEN 'expired'
               ELSE 'unprotocolled'
           END
      FROM (SELECT p_gate_key AS gate_key) AS q
      LEFT JOIN public.iu_gate_class AS k ON k.gate_key = q.gate_key
      LEFT JOIN public.dot_config AS c ON c.key = q.gate_key
      LEFT JOIN LATERAL (
                SELECT t.action, t.approval_id, t.expires_at
                  FROM public.iu_gate_transition AS t
                 WHERE t.gate_key = q.gate_key
                 ORDER BY t.created_at DESC, t.transition_id DESC
                 LIMIT 1) AS lt ON true;
$fn$;
