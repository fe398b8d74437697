-- =============================================================================
-- least_privilege — fail-closed rollback of the least-privilege revision.
--
-- The guard REFUSES while any governable gate reads 'true' (open, or stale):
-- after the rollback the TTL is no longer enforced by every check and
-- iu_core.auto_instantiate_enabled leaves the protocol, so such a gate would
-- stay open with nothing to expire it. Otherwise: the session user of every
-- ledger row written since the upgrade is kept in its evidence
-- ({"session_user": …}) before the column goes; the dispatcher, the gate
-- reading, the command gates and the classification are dropped; the seven
-- replaced functions are restored from the SAME files their revisions ran
-- (\ir: written once, not re-typed), with the privileges those revisions set
-- and the search_path they pinned (public, pg_temp); the 28 functions the
-- upgrade only ALTERed get that path back by ALTER.
-- Not restored: grants the upgrade revoked from roles other than the owner
-- (they bypassed the governed path); re-run the grant policy of the tool
-- version you roll back to.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA (psql resolves the \ir includes relative to this file):
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/least_privilege.sql "<database url>"
-- =============================================================================

-- @guard

-- public is shared with Directus, whose role may CREATE there, and the DO
-- blocks below call built-ins (cardinality, array_to_string, format …): with
-- public on this session's path, a better-matching look-alike planted there
-- would run here with the owner's rights. For this transaction the
-- path is pg_catalog, pg_temp; every IU Core name below is schema-qualified.
-- The RESET at the end of the file gives the session its own path back.
SET LOCAL search_path = pg_catalog, pg_temp;

-- Fail closed: least_privilege must be installed, or the database is not at it.
DO $guard$
DECLARE
    v_missing text[] := '{}';
BEGIN
    v_missing := v_missing || coalesce((
        SELECT array_agg(t ORDER BY t)
          FROM unnest(ARRAY['public.iu_gate_class', 'public.dot_iu_command_gate']) AS t
         WHERE to_regclass(t) IS NULL), '{}');
    v_missing := v_missing || coalesce((
        SELECT array_agg(f ORDER BY f)
          FROM unnest(ARRAY['public.fn_iu_gate_state(text)', 'public.fn_dot_iu_execute(text,text,jsonb,text)',
                            'public.fn_iu_gate_is_open(text)', 'public.fn_iu_healthcheck()',
                            'public.fn_iu_gate_open(text,uuid,text,text,integer)',
                            'public.fn_iu_gate_close(text,text,text)', 'public.fn_iu_gate_verify_closed(text)',
                            'public.fn_iu_gate_watchdog(text)',
                            'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)']) AS f
         WHERE to_regprocedure(f) IS NULL), '{}');
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                    WHERE a.attrelid = to_regclass('public.dot_iu_command_run')
                      AND a.attname = 'session_user_name' AND NOT a.attisdropped) THEN
        v_missing := v_missing || 'column public.dot_iu_command_run.session_user_name'::text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                    WHERE a.attrelid = to_regclass('public.dot_iu_command_catalog')
                      AND a.attname = 'logs_itself' AND NOT a.attisdropped) THEN
        v_missing := v_missing || 'column public.dot_iu_command_catalog.logs_itself'::text;
    END IF;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION 'least_privilege rollback refused: % missing — the database is not at revision least_privilege; inspect it before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- Hold gate flips off until commit: no gate can be opened between the check
-- below and the restore (lock_timeout bounds the wait).
LOCK TABLE public.dot_config IN SHARE MODE;

DO $safe$
DECLARE
    v_true text[];
BEGIN
    SELECT array_agg(c.key ORDER BY c.key) INTO v_true
      FROM public.dot_config AS c
      JOIN public.iu_gate_class AS k ON k.gate_key = c.key AND k.class = 'governable'
     WHERE c.value = 'true';
    IF v_true IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege rollback refused: % governable gate(s) read ''true'' (%) — close them first (iucore gate close GATE, or iucore gate watchdog for expired ones); after the rollback nothing would enforce their TTL',
            cardinality(v_true), array_to_string(v_true, ', ');
    END IF;
END
$safe$;

-- @body

-- Who really ran each command since the upgrade stays in the row.
UPDATE public.dot_iu_command_run
   SET evidence = evidence || jsonb_build_object('session_user', session_user_name)
 WHERE session_user_name <> '(unrecorded: before least_privilege)';

DROP FUNCTION public.fn_dot_iu_execute(text, text, jsonb, text);

-- The replaced functions, restored from the files their revisions ran.
DROP FUNCTION public.fn_iu_gate_is_open(text);
\ir ../migrations/sql/functions/substrate/fn_iu_gate_is_open.sql

DROP FUNCTION public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text);
\ir ../migrations/sql/functions/substrate/fn_dot_iu_command_log.sql
REVOKE EXECUTE ON FUNCTION public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text) FROM PUBLIC;

DROP FUNCTION public.fn_iu_healthcheck();
\ir ../migrations/sql/functions/substrate/fn_iu_healthcheck.sql

DROP FUNCTION public.fn_iu_gate_open(text, uuid, text, text, integer);
\ir ../migrations/sql/functions/gate_protocol/fn_iu_gate_open.sql
REVOKE EXECUTE ON FUNCTION public.fn_iu_gate_open(text, uuid, text, text, integer) FROM PUBLIC;

DROP FUNCTION public.fn_iu_gate_close(text, text, text);
\ir ../migrations/sql/functions/gate_protocol/fn_iu_gate_close.sql
REVOKE EXECUTE ON FUNCTION public.fn_iu_gate_close(text, text, text) FROM PUBLIC;

DROP FUNCTION public.fn_iu_gate_verify_closed(text);
\ir ../migrations/sql/functions/gate_protocol/fn_iu_gate_verify_closed.sql

DROP FUNCTION public.fn_iu_gate_watchdog(text);
\ir ../migrations/sql/functions/gate_protocol/fn_iu_gate_watchdog.sql
REVOKE EXECUTE ON FUNCTION public.fn_iu_gate_watchdog(text) FROM PUBLIC;

DROP FUNCTION public.fn_iu_gate_state(text);

-- The search_path the earlier revisions pinned, on the functions the upgrade
-- only ALTERed (the ones restored above come back with their own).
\ir ../migrations/sql/functions/least_privilege/search_path_restore.sql

DROP TABLE public.dot_iu_command_gate;
DROP TABLE public.iu_gate_class;

ALTER TABLE public.iu_collection DROP CONSTRAINT iu_collection_key_safe_path;
ALTER TABLE public.dot_iu_command_run DROP COLUMN session_user_name;
ALTER TABLE public.dot_iu_command_catalog DROP COLUMN logs_itself;

-- @assert

-- The exact prior baseline: gate_protocol's catalog (30), its 4 gate functions
-- and the substrate's readers back, nothing of least_privilege left.
DO $assert$
DECLARE
    -- The 35 functions of substrate … gate_protocol, each pinned to public, pg_temp there.
    c_chain text[] := ARRAY[
        'public.fn_dot_config_touch()', 'public.fn_event_outbox_type_validate()',
        'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)',
        'public.fn_iu_collection_remove_piece(uuid,uuid,text)', 'public.fn_iu_collection_render(uuid)',
        'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)', 'public.fn_iu_collection_validate(uuid)',
        'public.fn_iu_compose(text,text,text,uuid[],text,text[])', 'public.fn_iu_core_routes_enabled()',
        'public.fn_iu_create(text,text,text,text,text)', 'public.fn_iu_delivery_enabled()',
        'public.fn_iu_emit_event(text,text,text,jsonb,text)', 'public.fn_iu_observe(text,integer)',
        'public.fn_iu_piece_emit_event(text,uuid,jsonb,text)', 'public.fn_iu_piece_merge(uuid[],text,uuid,text,boolean)',
        'public.fn_iu_piece_split(uuid,jsonb,uuid,text,boolean)', 'public.fn_iu_refresh_metadata_axes(uuid,text)',
        'public.fn_iu_retire(uuid,text,text)', 'public.fn_iu_route_deliver(text,uuid)',
        'public.fn_iu_route_worker_run(text,integer)', 'public.fn_iu_structure_consumer(uuid)',
        'public.fn_iu_workflow_from_steps(text,text,jsonb,text)',
        'public.fn_iu_collection_checkpoint(uuid,text)', 'public.fn_iu_composer_emit(text,uuid,jsonb,text)',
        'public.fn_iu_piece_restore(uuid,text)', 'public.fn_iu_piece_soft_delete(uuid,text,text)',
        'public.fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)',
        'public.fn_iu_auto_instantiate_rollback_by_actor(text,boolean)',
        'public.fn_iu_gate_is_open(text)', 'public.fn_iu_gate_verify_closed(text)', 'public.fn_iu_healthcheck()',
        'public.fn_iu_gate_open(text,uuid,text,text,integer)', 'public.fn_iu_gate_close(text,text,text)',
        'public.fn_iu_gate_watchdog(text)',
        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)'];
    v_missing text[];
    v_left    text[] := '{}';
BEGIN
    SELECT array_agg(f) INTO v_missing
      FROM unnest(ARRAY['public.fn_iu_gate_is_open(text)', 'public.fn_iu_healthcheck()',
                        'public.fn_iu_gate_open(text,uuid,text,text,integer)',
                        'public.fn_iu_gate_close(text,text,text)', 'public.fn_iu_gate_verify_closed(text)',
                        'public.fn_iu_gate_watchdog(text)',
                        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)']) AS f
     WHERE to_regprocedure(f) IS NULL;
    IF to_regprocedure('public.fn_iu_gate_state(text)') IS NOT NULL THEN
        v_left := v_left || 'fn_iu_gate_state'::text;
    END IF;
    IF to_regprocedure('public.fn_dot_iu_execute(text,text,jsonb,text)') IS NOT NULL THEN
        v_left := v_left || 'fn_dot_iu_execute'::text;
    END IF;
    IF to_regclass('public.iu_gate_class') IS NOT NULL OR to_regclass('public.dot_iu_command_gate') IS NOT NULL THEN
        v_left := v_left || 'iu_gate_class / dot_iu_command_gate'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                WHERE a.attrelid IN ('public.dot_iu_command_run'::regclass, 'public.dot_iu_command_catalog'::regclass)
                  AND a.attname IN ('session_user_name', 'logs_itself') AND NOT a.attisdropped)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS co WHERE co.conname = 'iu_collection_key_safe_path') THEN
        v_left := v_left || 'a column or the collection key CHECK'::text;
    END IF;
    IF v_missing IS NOT NULL OR cardinality(v_left) > 0
       OR (SELECT count(*) FROM public.dot_iu_command_catalog) <> 30 THEN
        RAISE EXCEPTION 'least_privilege rollback assert: not back to gate_protocol (not restored: %; left over: %; catalog % rows, expected 30)',
            coalesce(array_to_string(v_missing, ', '), 'none'), coalesce(nullif(array_to_string(v_left, ', '), ''), 'none'),
            (SELECT count(*) FROM public.dot_iu_command_catalog);
    END IF;
    -- Every function of the chain is back on the path its revision pinned.
    SELECT array_agg(f ORDER BY f) INTO v_missing
      FROM unnest(c_chain) AS f
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS p
                        WHERE p.oid = to_regprocedure(f)
                          AND p.proconfig = ARRAY['search_path=public, pg_temp']);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege rollback assert: function(s) not back on search_path = public, pg_temp: %',
            array_to_string(v_missing, ', ');
    END IF;
    -- The restored writers are not for PUBLIC again; the restored readers are.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS p,
                      aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE p.oid IN ('public.fn_iu_gate_open(text,uuid,text,text,integer)'::regprocedure,
                                'public.fn_iu_gate_close(text,text,text)'::regprocedure,
                                'public.fn_iu_gate_watchdog(text)'::regprocedure,
                                'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)'::regprocedure)
                  AND a.grantee = 0) THEN
        RAISE EXCEPTION 'least_privilege rollback assert: a restored writer is executable by PUBLIC';
    END IF;
END
$assert$;

SELECT 'least_privilege_rollback' AS "check",
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows,
       to_regprocedure('public.fn_dot_iu_execute(text,text,jsonb,text)') IS NULL AS dispatcher_gone,
       to_regclass('public.iu_gate_class') IS NULL AS classification_gone,
       (v ->> 'gate_count')::int AS protocol_gates
  FROM public.fn_iu_gate_verify_closed() AS v;

RESET search_path;
