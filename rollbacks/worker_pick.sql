-- =============================================================================
-- worker_pick — fail-closed rollback: the substrate's route worker again.
--
-- Restores fn_iu_route_worker_run(text, integer) from the SAME file the
-- substrate ran (\ir: written once, not re-typed). That file CREATEs the
-- function, so the replaced one is dropped first; the privileges and the
-- search_path it then gets are put back as the substrate and least_privilege
-- set them (EXECUTE revoked from PUBLIC, search_path = pg_catalog, pg_temp).
--
-- The guard refuses (and nothing changes) when:
--   * the worker is not worker_pick's text (not at worker_pick, or changed
--     since: restoring the substrate's text would silently discard that);
--   * it belongs to a role other than the one running the rollback (the
--     function created again would change hands);
--   * anything else was set on it since worker_pick (settings, SECURITY
--     DEFINER, STRICT, LEAKPROOF, volatility, parallel safety, COST/ROWS, a
--     comment): the substrate's definition would drop it;
--   * a role other than its owner holds a privilege on it, or default
--     privileges would give one to the function created again (the drop would
--     lose the grant, or the create add one: revoke, roll back, grant again);
--   * another object depends on it (the drop would fail or take it along).
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA (psql resolves the \ir include relative to this file):
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/worker_pick.sql "<database url>"
-- =============================================================================

-- @guard

-- public is shared with Directus (rollbacks/least_privilege.sql says why the
-- path is pg_catalog, pg_temp here); the RESET at the end restores the session's.
SET LOCAL search_path = pg_catalog, pg_temp;

DO $guard$
DECLARE
    c_worker_pick_md5 CONSTANT text := '25a61dfaf9916e76ea2ec1a5689d00a1';
    v_fn pg_catalog.pg_proc%ROWTYPE;
    v_grantees text[];
    v_dependents text[];
    v_changed text[];
    v_me oid := (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user);
BEGIN
    SELECT * INTO v_fn FROM pg_catalog.pg_proc AS p
     WHERE p.oid = to_regprocedure('public.fn_iu_route_worker_run(text,integer)');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker_pick rollback refused: public.fn_iu_route_worker_run(text, integer) is missing — the database is not at worker_pick';
    END IF;
    IF md5(v_fn.prosrc) <> c_worker_pick_md5 THEN
        RAISE EXCEPTION 'worker_pick rollback refused: public.fn_iu_route_worker_run is not worker_pick''s text (md5 %): not at worker_pick, or changed since, and restoring the substrate''s text would discard that change',
            md5(v_fn.prosrc);
    END IF;
    -- What CREATE would not give back: the owner (the function would belong to whoever
    -- runs this), and anything set on the function since worker_pick.
    IF v_fn.proowner <> v_me THEN
        RAISE EXCEPTION 'worker_pick rollback refused: public.fn_iu_route_worker_run belongs to %, and the function this rollback creates again would belong to % — run the rollback as %',
            v_fn.proowner::regrole, current_user, v_fn.proowner::regrole;
    END IF;
    v_changed := array_remove(ARRAY[
        CASE WHEN v_fn.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']
             THEN 'settings ' || coalesce(v_fn.proconfig::text, '{}') END,
        CASE WHEN v_fn.prosecdef THEN 'SECURITY DEFINER' END,
        CASE WHEN v_fn.proisstrict THEN 'STRICT' END,
        CASE WHEN v_fn.proleakproof THEN 'LEAKPROOF' END,
        CASE WHEN v_fn.provolatile <> 'v' THEN 'volatility ' || v_fn.provolatile::text END,
        CASE WHEN v_fn.proparallel <> 'u' THEN 'parallel ' || v_fn.proparallel::text END,
        CASE WHEN v_fn.procost <> 100 OR v_fn.prorows <> 0 THEN 'COST ' || v_fn.procost || ' ROWS ' || v_fn.prorows END,
        CASE WHEN obj_description(v_fn.oid, 'pg_proc') IS NOT NULL THEN 'a comment' END], NULL);
    IF cardinality(v_changed) > 0 THEN
        RAISE EXCEPTION 'worker_pick rollback refused: public.fn_iu_route_worker_run was changed since worker_pick (%), and the substrate''s definition would silently drop that — undo it first',
            array_to_string(v_changed, ', ');
    END IF;
    SELECT array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
      INTO v_grantees
      FROM aclexplode(coalesce(v_fn.proacl, acldefault('f', v_fn.proowner))) AS a
     WHERE a.grantee <> v_fn.proowner;
    IF v_grantees IS NOT NULL THEN
        RAISE EXCEPTION 'worker_pick rollback refused: % hold(s) a privilege on public.fn_iu_route_worker_run, which the rollback drops and creates again — revoke it, roll back, and grant it again',
            array_to_string(v_grantees, ', ');
    END IF;
    -- Default privileges would grant the re-created function to others (PUBLIC's is revoked below).
    SELECT array_agg(DISTINCT a.grantee::regrole::text)
      INTO v_grantees
      FROM pg_catalog.pg_default_acl AS d, aclexplode(d.defaclacl) AS a
     WHERE d.defaclrole = v_me AND d.defaclobjtype = 'f'
       AND d.defaclnamespace IN (0, 'public'::regnamespace)
       AND a.grantee NOT IN (0, v_me);
    IF v_grantees IS NOT NULL THEN
        RAISE EXCEPTION 'worker_pick rollback refused: default privileges of % give % EXECUTE on the functions it creates, so the worker this rollback creates again would be theirs to call — ALTER DEFAULT PRIVILEGES … REVOKE it first',
            current_user, array_to_string(v_grantees, ', ');
    END IF;
    SELECT array_agg(pg_describe_object(d.classid, d.objid, d.objsubid))
      INTO v_dependents
      FROM pg_catalog.pg_depend AS d
     WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = v_fn.oid AND d.deptype = 'n';
    IF v_dependents IS NOT NULL THEN
        RAISE EXCEPTION 'worker_pick rollback refused: % depend(s) on public.fn_iu_route_worker_run, which the rollback drops — remove the dependency first',
            array_to_string(v_dependents, ', ');
    END IF;
END
$guard$;

-- @body

DROP FUNCTION public.fn_iu_route_worker_run(text, integer);
\ir ../migrations/sql/functions/substrate/fn_iu_route_worker_run.sql
REVOKE EXECUTE ON FUNCTION public.fn_iu_route_worker_run(text, integer) FROM PUBLIC;
\ir ../migrations/sql/functions/worker_pick/search_path_restore.sql

-- @assert

-- Exactly the substrate's text, SECURITY INVOKER, least_privilege's path, and
-- executable by its owner alone.
DO $assert$
DECLARE
    c_substrate_md5 CONSTANT text := '4a287dd00716a56298fc42ae79497150';
    v_fn pg_catalog.pg_proc%ROWTYPE;
BEGIN
    SELECT * INTO v_fn FROM pg_catalog.pg_proc AS p
     WHERE p.oid = to_regprocedure('public.fn_iu_route_worker_run(text,integer)');
    IF NOT FOUND OR md5(v_fn.prosrc) <> c_substrate_md5 THEN
        RAISE EXCEPTION 'worker_pick rollback assert: public.fn_iu_route_worker_run is not the substrate''s text';
    END IF;
    IF v_fn.prosecdef OR v_fn.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp'] THEN
        RAISE EXCEPTION 'worker_pick rollback assert: public.fn_iu_route_worker_run is SECURITY DEFINER or not pinned as least_privilege left it (config %)',
            v_fn.proconfig;
    END IF;
    IF EXISTS (SELECT 1 FROM aclexplode(coalesce(v_fn.proacl, acldefault('f', v_fn.proowner))) AS a
                WHERE a.grantee <> v_fn.proowner) THEN
        RAISE EXCEPTION 'worker_pick rollback assert: a role other than the owner may use public.fn_iu_route_worker_run';
    END IF;
END
$assert$;

RESET search_path;
