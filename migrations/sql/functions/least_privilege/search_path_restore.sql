-- least_privilege rollback: the search_path the earlier revisions pinned
-- (public, pg_temp), back on the 28 functions least_privilege only ALTERed —
-- the same functions search_path_pin.sql names, in the same order. (Included
-- for the reason search_path_pin.sql says: sqlfluff cannot parse the list.)
-- substrate
ALTER FUNCTION public.fn_dot_config_touch() SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_event_outbox_type_validate() SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_collection_add_piece(uuid, uuid, text, integer, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_collection_remove_piece(uuid, uuid, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_collection_render(uuid) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_collection_reorder_piece(uuid, uuid, integer, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_collection_validate(uuid) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_compose(text, text, text, uuid[], text, text[]) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_core_routes_enabled() SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_create(text, text, text, text, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_delivery_enabled() SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_emit_event(text, text, text, jsonb, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_observe(text, integer) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_piece_emit_event(text, uuid, jsonb, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_piece_merge(uuid[], text, uuid, text, boolean) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_piece_split(uuid, jsonb, uuid, text, boolean) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_refresh_metadata_axes(uuid, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_retire(uuid, text, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_route_deliver(text, uuid) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_route_worker_run(text, integer) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_structure_consumer(uuid) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_workflow_from_steps(text, text, jsonb, text) SET search_path = public, pg_temp;
-- 016
ALTER FUNCTION public.fn_iu_collection_checkpoint(uuid, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_composer_emit(text, uuid, jsonb, text) SET search_path = public, pg_temp;
-- 017
ALTER FUNCTION public.fn_iu_piece_restore(uuid, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_piece_soft_delete(uuid, text, text) SET search_path = public, pg_temp;
-- 033
ALTER FUNCTION public.fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text) SET search_path = public, pg_temp;
ALTER FUNCTION public.fn_iu_auto_instantiate_rollback_by_actor(text, boolean) SET search_path = public, pg_temp;
