-- =============================================================================
-- worker_pick — the route worker's pick in its index's order, so a run can stop at its limit.
--
-- Replaces (CREATE OR REPLACE, body in functions/worker_pick/): the route
--   worker fn_iu_route_worker_run(text, integer). Its pick was ordered by
--   (created_at, event_id) over an index on created_at alone; the incremental
--   sort that put under the LIMIT reads at least 32 rows, so with fewer than
--   32 events pending a run read the whole outbox however small its limit
--   (the function file says how that was measured). It is ordered by
--   created_at alone now; nothing else of the function changes, and
--   CREATE OR REPLACE keeps its owner and its grants.
-- Takes no lock on a table: production's writers never wait on it.
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA (psql resolves the \ir include relative to this file):
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/worker_pick.sql "<database url>"
-- Paired rollback: rollbacks/worker_pick.sql.
-- =============================================================================

-- @preflight

-- public is shared with Directus (least_privilege.sql says why the path is
-- pg_catalog, pg_temp for this transaction); the RESET at the end gives the
-- session its own path back.
SET LOCAL search_path = pg_catalog, pg_temp;

-- The state this revision expects: least_privilege applied, and the worker as
-- the substrate wrote it (md5 of its body as PostgreSQL keeps it; applying the
-- substrate file yields exactly this, and every upgrade in the test suite
-- checks it), pinned by least_privilege, not SECURITY DEFINER.
DO $preflight$
DECLARE
    c_substrate_md5 CONSTANT text := '4a287dd00716a56298fc42ae79497150';
    c_worker_pick_md5 CONSTANT text := '25a61dfaf9916e76ea2ec1a5689d00a1';
    v_fn pg_catalog.pg_proc%ROWTYPE;
BEGIN
    IF to_regprocedure('public.fn_dot_iu_execute(text,text,jsonb,text)') IS NULL
       OR to_regclass('public.iu_gate_class') IS NULL THEN
        RAISE EXCEPTION 'worker_pick preflight: least_privilege is not applied (public.fn_dot_iu_execute or public.iu_gate_class missing) — apply least_privilege first';
    END IF;
    SELECT * INTO v_fn FROM pg_catalog.pg_proc AS p
     WHERE p.oid = to_regprocedure('public.fn_iu_route_worker_run(text,integer)');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker_pick preflight: public.fn_iu_route_worker_run(text, integer) is missing — the substrate''s route worker must be present';
    END IF;
    IF md5(v_fn.prosrc) = c_worker_pick_md5 THEN
        RAISE EXCEPTION 'worker_pick preflight: public.fn_iu_route_worker_run already orders its pick by created_at alone — already applied? Check "iucore db current"; to rebuild, roll back first with rollbacks/worker_pick.sql';
    END IF;
    IF md5(v_fn.prosrc) <> c_substrate_md5 THEN
        RAISE EXCEPTION 'worker_pick preflight: public.fn_iu_route_worker_run is not the substrate''s text (md5 %, expected %): it was changed outside the chain, and replacing it would discard that change — compare it with migrations/sql/functions/substrate/fn_iu_route_worker_run.sql',
            md5(v_fn.prosrc), c_substrate_md5;
    END IF;
    IF v_fn.prosecdef OR v_fn.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp'] THEN
        RAISE EXCEPTION 'worker_pick preflight: public.fn_iu_route_worker_run is SECURITY DEFINER or not pinned as least_privilege left it (config %) — apply least_privilege first',
            v_fn.proconfig;
    END IF;
    -- CREATE OR REPLACE resets these to its own text's (keeping owner, grants and comment).
    IF v_fn.proisstrict OR v_fn.proleakproof OR v_fn.provolatile <> 'v' OR v_fn.proparallel <> 'u'
       OR v_fn.procost <> 100 OR v_fn.prorows <> 0 THEN
        RAISE EXCEPTION 'worker_pick preflight: public.fn_iu_route_worker_run was changed outside the chain (strict %, leakproof %, volatility %, parallel %, cost %, rows %), and replacing it would silently reset that — undo it first',
            v_fn.proisstrict, v_fn.proleakproof, v_fn.provolatile, v_fn.proparallel, v_fn.procost, v_fn.prorows;
    END IF;
    IF NOT pg_has_role(v_fn.proowner, 'MEMBER') THEN
        RAISE EXCEPTION 'worker_pick preflight: public.fn_iu_route_worker_run belongs to %, and only its owner may replace it — run the upgrade as %',
            v_fn.proowner::regrole, v_fn.proowner::regrole;
    END IF;
END
$preflight$;

-- @body

\ir functions/worker_pick/fn_iu_route_worker_run.sql

-- @postcheck

-- The new text, still SECURITY INVOKER, still pinned, still not PUBLIC's.
DO $postcheck$
DECLARE
    c_worker_pick_md5 CONSTANT text := '25a61dfaf9916e76ea2ec1a5689d00a1';
    v_fn pg_catalog.pg_proc%ROWTYPE;
BEGIN
    SELECT * INTO v_fn FROM pg_catalog.pg_proc AS p
     WHERE p.oid = to_regprocedure('public.fn_iu_route_worker_run(text,integer)');
    IF NOT FOUND OR md5(v_fn.prosrc) <> c_worker_pick_md5 THEN
        RAISE EXCEPTION 'worker_pick post-check: public.fn_iu_route_worker_run is not worker_pick''s text (md5 %)', md5(v_fn.prosrc);
    END IF;
    IF v_fn.prosecdef OR v_fn.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp'] THEN
        RAISE EXCEPTION 'worker_pick post-check: public.fn_iu_route_worker_run is SECURITY DEFINER or lost its pinned search_path (config %)', v_fn.proconfig;
    END IF;
    IF EXISTS (SELECT 1 FROM aclexplode(coalesce(v_fn.proacl, acldefault('f', v_fn.proowner))) AS a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') THEN
        RAISE EXCEPTION 'worker_pick post-check: PUBLIC may execute public.fn_iu_route_worker_run';
    END IF;
END
$postcheck$;

SELECT 'worker_pick_worker' AS "check", md5(p.prosrc) AS body_md5, p.proconfig::text AS config
  FROM pg_catalog.pg_proc AS p
 WHERE p.oid = 'public.fn_iu_route_worker_run(text,integer)'::regprocedure;

RESET search_path;
