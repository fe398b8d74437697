CREATE OR REPLACE FUNCTION public.fn_iu_healthcheck()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    -- least_privilege: all_governed_closed is the gate verify's (the classified
    -- governable gates, TTL enforced), not a list of its own.
    SELECT jsonb_build_object(
        'status', 'ok',
        'counts', jsonb_build_object(
            'information_units',  (SELECT count(*) FROM public.information_unit),
            'collections',        (SELECT count(*) FROM public.iu_collection),
            'collection_members', (SELECT count(*) FROM public.iu_collection_member),
            'events',             (SELECT count(*) FROM public.event_outbox),
            'route_attempts',     (SELECT count(*) FROM public.iu_route_attempt),
            'dead_letters_open',  (SELECT count(*) FROM public.iu_route_dead_letter AS d WHERE d.resolved_at IS NULL),
            'ledger_runs',        (SELECT count(*) FROM public.dot_iu_command_run),
            'catalog_rows',       (SELECT count(*) FROM public.dot_iu_command_catalog)),
        'gates', (SELECT coalesce(jsonb_object_agg(c.key,
                                      CASE WHEN c.value IN ('true', 'false') THEN to_jsonb(c.value = 'true')
                                           ELSE to_jsonb(c.value) END), '{}')
                    FROM public.dot_config AS c),
        'all_governed_closed', coalesce((public.fn_iu_gate_verify_closed(NULL::text) ->> 'all_governed_closed')::boolean,
                                        false));
$fn$;
