-- worker_pick: the route worker's pick in the order its index keeps.
--
-- The substrate ordered the pick by (created_at, event_id) over an index on
-- created_at alone, so the executor sorted under the LIMIT incrementally, and
-- (FOR UPDATE keeps the LIMIT from bounding it) such a sort reads at least 32
-- rows before it hands on the first: whenever fewer than 32 events stood
-- pending, a run read the whole outbox however small its limit, probing
-- iu_route_attempt once per event (3.4 s at 1M events for a run of 7). Ordered
-- by created_at alone, an index scan feeds the LIMIT directly and a run stops
-- at its limit. Events with the same created_at keep the index's order. (The
-- planner walks the index for small limits and routes that take every event;
-- for a larger limit, or a route of one event type the outbox holds few of, it
-- reads the outbox whole and sorts it, as before; and a run that finds fewer
-- events than its limit reads the outbox to its end: README, Performance,
-- row 8g.) Everything else
-- is the substrate's text (functions/substrate/fn_iu_route_worker_run.sql),
-- with least_privilege's search_path pin written in.
CREATE OR REPLACE FUNCTION public.fn_iu_route_worker_run(route_code text, p_limit integer)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    v_route_code text := fn_iu_route_worker_run.route_code;
    v_route      public.iu_outbound_route%ROWTYPE;
    v_allowlist  text[];
    v_required   text[];
    v_mode       text;   -- dry_run | refused | live
    v_reason     text;
    v_seen       integer := 0;
    v_written    integer := 0;
    v_dead       integer := 0;
    v_run_event  uuid;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'p_limit',
                                  'guidance', 'p_limit must be an integer between 1 and 10000.',
                                  'next_action', 'retry_with_valid_limit');
    END IF;

    SELECT * INTO v_route FROM public.iu_outbound_route r WHERE r.route_code = v_route_code;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'route_not_registered',
                                  'route_code', v_route_code,
                                  'guidance', 'No row in public.iu_outbound_route has this route_code.',
                                  'next_action', 'register_route_first');
    END IF;

    -- A disabled route or a stopped worker writes nothing; it only reports the backlog.
    IF NOT v_route.enabled OR NOT public.fn_iu_gate_is_open('iu_core.route_worker_enabled') THEN
        SELECT count(*) INTO v_seen
          FROM (SELECT 1
                  FROM public.event_outbox e
                 WHERE (v_route.event_domain IS NULL OR e.event_domain = v_route.event_domain)
                   AND (v_route.event_type IS NULL OR e.event_type = v_route.event_type)
                   AND NOT (e.event_domain = 'system' AND e.event_type = 'route_worker_run')
                   AND NOT EXISTS (SELECT 1 FROM public.iu_route_attempt a
                                    WHERE a.route_code = v_route_code AND a.event_id = e.event_id)
                 LIMIT p_limit) AS pending;
        RETURN jsonb_build_object('status', 'skipped',
                                  'reason', CASE WHEN NOT v_route.enabled THEN 'route_disabled' ELSE 'worker_disabled' END,
                                  'route_code', v_route_code, 'seen', v_seen, 'attempts_written', 0,
                                  'skipped', v_seen, 'dead_lettered', 0, 'dry_run', true);
    END IF;

    -- Decide once per run how this route's attempts are written; the rules are
    -- fn_iu_route_deliver's, which is still called per event on the live path.
    SELECT coalesce(array_agg(btrim(x)) FILTER (WHERE btrim(x) <> ''), '{}')
      INTO v_allowlist
      FROM unnest(string_to_array(coalesce(
               (SELECT c.value FROM public.dot_config c WHERE c.key = 'iu_core.delivery_live_routes'), ''), ',')) AS x;

    IF NOT public.fn_iu_delivery_enabled() THEN
        v_mode := 'dry_run'; v_reason := 'delivery_disabled';
    ELSIF NOT (v_route_code = ANY (v_allowlist)) THEN
        v_mode := 'refused'; v_reason := 'route_not_allowlisted';
    ELSIF v_route.dry_run THEN
        v_mode := 'dry_run'; v_reason := 'route_dry_run';
    ELSIF NOT (v_route.target_kind = 'sql_function' AND v_route.target_ref = 'fn_iu_structure_consumer') THEN
        v_mode := 'refused'; v_reason := 'feature_not_supported';
    ELSE
        v_mode := 'live'; v_reason := NULL;
    END IF;

    -- payload_contract->'required': keys every payload must carry for this route.
    SELECT coalesce(array_agg(k), '{}')
      INTO v_required
      FROM jsonb_array_elements_text(
               CASE WHEN jsonb_typeof(v_route.payload_contract -> 'required') = 'array'
                    THEN v_route.payload_contract -> 'required' ELSE '[]'::jsonb END) AS k;

    -- One set-based statement. SKIP LOCKED: concurrent workers never take the
    -- same event; ON CONFLICT: a late duplicate is dropped, never re-delivered.
    -- The worker never feeds on its own route_worker_run records.
    WITH picked AS MATERIALIZED (
        SELECT e.event_id, e.payload
          FROM public.event_outbox e
         WHERE (v_route.event_domain IS NULL OR e.event_domain = v_route.event_domain)
           AND (v_route.event_type IS NULL OR e.event_type = v_route.event_type)
           AND NOT (e.event_domain = 'system' AND e.event_type = 'route_worker_run')
           AND NOT EXISTS (SELECT 1 FROM public.iu_route_attempt a
                            WHERE a.route_code = v_route_code AND a.event_id = e.event_id)
         ORDER BY e.created_at
         LIMIT p_limit
           FOR UPDATE OF e SKIP LOCKED
    ), judged AS MATERIALIZED (
        SELECT p.event_id,
               m.missing,
               CASE WHEN cardinality(m.missing) = 0 AND v_mode = 'live'
                    THEN public.fn_iu_route_deliver(v_route_code, p.event_id) END AS delivery
          FROM picked p
          CROSS JOIN LATERAL (
              SELECT ARRAY(SELECT k FROM unnest(v_required) AS k WHERE NOT (p.payload ? k)) AS missing
          ) m
    ), dead AS (
        INSERT INTO public.iu_route_dead_letter (route_code, event_id, reason, detail)
        SELECT v_route_code, j.event_id, 'payload_contract_violation',
               jsonb_build_object('missing_keys', to_jsonb(j.missing), 'required', to_jsonb(v_required))
          FROM judged j
         WHERE cardinality(j.missing) > 0
        ON CONFLICT (route_code, event_id) DO NOTHING
        RETURNING event_id
    ), written AS (
        INSERT INTO public.iu_route_attempt (route_code, event_id, attempt_status, detail)
        SELECT v_route_code, j.event_id,
               CASE WHEN cardinality(j.missing) > 0 THEN 'failed'
                    WHEN v_mode = 'live' THEN
                        CASE j.delivery ->> 'status' WHEN 'sent' THEN 'sent'
                                                     WHEN 'dry_run' THEN 'dry_run'
                                                     ELSE 'refused' END
                    ELSE v_mode END,
               CASE WHEN cardinality(j.missing) > 0
                        THEN jsonb_build_object('reason', 'payload_contract_violation',
                                                'missing_keys', to_jsonb(j.missing), 'dead_lettered', true)
                    WHEN v_mode = 'live'
                        THEN jsonb_build_object('delivery', j.delivery)
                    ELSE jsonb_build_object('reason', v_reason, 'mode', v_mode)
               END
          FROM judged j
        ON CONFLICT (route_code, event_id) DO NOTHING
        RETURNING attempt_status
    )
    SELECT (SELECT count(*) FROM picked),
           (SELECT count(*) FROM written),
           (SELECT count(*) FROM dead)
      INTO v_seen, v_written, v_dead;

    -- A run that did work leaves a record (never picked up by any worker).
    IF v_written > 0 THEN
        v_run_event := public.fn_iu_emit_event(
            'system', 'route_worker_run',
            'route:' || v_route_code || ':run:' || gen_random_uuid()::text,
            jsonb_build_object('route_code', v_route_code, 'seen', v_seen,
                               'attempts_written', v_written, 'dead_lettered', v_dead,
                               'mode', v_mode, 'reason', v_reason),
            current_user::text);
    END IF;

    -- attempts_written counts every attempt row (dead-lettered ones are 'failed'
    -- attempts); skipped = seen - attempts_written.
    RETURN jsonb_build_object('status', 'completed', 'route_code', v_route_code,
                              'seen', v_seen, 'attempts_written', v_written,
                              'skipped', v_seen - v_written, 'dead_lettered', v_dead,
                              'dry_run', v_mode <> 'live', 'mode', v_mode, 'reason', v_reason,
                              'run_event_id', v_run_event);
END
$fn$;
