CREATE FUNCTION public.fn_iu_healthcheck()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = public, pg_temp
AS $fn$
    SELECT jsonb_build_object(
        'status', 'ok',
        'counts', jsonb_build_object(
            'information_units',  (SELECT count(*) FROM public.information_unit),
            'collections',        (SELECT count(*) FROM public.iu_collection),
            'collection_members', (SELECT count(*) FROM public.iu_collection_member),
            'events',             (SELECT count(*) FROM public.event_outbox),
            'route_attempts',     (SELECT count(*) FROM public.iu_route_attempt),
            'dead_letters_open',  (SELECT count(*) FROM public.iu_route_dead_letter d WHERE d.resolved_at IS NULL),
            'ledger_runs',        (SELECT count(*) FROM public.dot_iu_command_run),
            'catalog_rows',       (SELECT count(*) FROM public.dot_iu_command_catalog)),
        'gates', (SELECT coalesce(jsonb_object_agg(c.key,
                                      CASE WHEN c.value IN ('true', 'false') THEN to_jsonb(c.value = 'true')
                                           ELSE to_jsonb(c.value) END), '{}')
                    FROM public.dot_config c),
        'all_governed_closed', NOT EXISTS (
            SELECT 1 FROM public.dot_config c
             WHERE c.value = 'true'
               AND c.key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled',
                             'iu_core.delivery_enabled', 'iu_core.three_axis_auto_refresh_enabled',
                             'iu_core.operator_runtime_enabled', 'queue.job_substrate.enabled',
                             'queue.dlq.replay_enabled')));
$fn$;
