-- rollbacks/worker_pick.sql: the substrate's file pins public, pg_temp; the
-- worker gets least_privilege's pin back (functions/least_privilege/
-- search_path_pin.sql). In an included file for sqlfluff's sake: see
-- .sqlfluffignore and docs/sql-conventions.md.
ALTER FUNCTION public.fn_iu_route_worker_run(text, integer) SET search_path = pg_catalog, pg_temp;
