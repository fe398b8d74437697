-- =============================================================================
-- 033 — fail-closed rollback of the auto-instantiate orchestrator.
--
-- Removes the two functions, the provenance table, the gate key and the event
-- type 033 added — but only when that loses nothing and leaves nothing open:
-- no provenance row (instances still exist: roll them back by actor first), no
-- template.instance_auto_composed event in the outbox (the outbox is evidence;
-- removing its type would orphan it), the auto_instantiate gate shut, and 034's
-- catalog rows gone. Otherwise the guard refuses and nothing changes.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/033.sql "<database url>"
-- =============================================================================

-- @guard

-- Fail closed: 033's objects must all be there, or the database is not at 033.
DO $guard$
DECLARE
    v_missing text[] := '{}';
BEGIN
    IF to_regclass('public.iu_auto_instance') IS NULL THEN
        v_missing := v_missing || 'table public.iu_auto_instance'::text;
    END IF;
    IF to_regprocedure('public.fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)') IS NULL THEN
        v_missing := v_missing || 'function public.fn_iu_auto_instantiate_from_event'::text;
    END IF;
    IF to_regprocedure('public.fn_iu_auto_instantiate_rollback_by_actor(text,boolean)') IS NULL THEN
        v_missing := v_missing || 'function public.fn_iu_auto_instantiate_rollback_by_actor'::text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.dot_config c WHERE c.key = 'iu_core.auto_instantiate_enabled') THEN
        v_missing := v_missing || 'config iu_core.auto_instantiate_enabled'::text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                    WHERE r.event_domain = 'template' AND r.event_type = 'instance_auto_composed') THEN
        v_missing := v_missing || 'event type template.instance_auto_composed'::text;
    END IF;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION '033 rollback refused: % missing — the database is not at revision 033; inspect it before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- Hold writers off until commit: no instance or event can slip in between the
-- checks below and the drops (lock_timeout bounds the wait).
LOCK TABLE public.iu_auto_instance, public.event_outbox, public.dot_iu_command_catalog IN SHARE MODE;

DO $guard$
DECLARE
    v_rows    bigint;
    v_actors  text[];
    v_events  bigint;
    v_later   text[];
BEGIN
    -- 034 registers these functions as commands: it must go first.
    SELECT array_agg(c.command_name ORDER BY c.command_name) INTO v_later
      FROM public.dot_iu_command_catalog c
     WHERE c.target_functions && ARRAY['fn_iu_auto_instantiate_from_event',
                                       'fn_iu_auto_instantiate_rollback_by_actor'];
    IF v_later IS NOT NULL THEN
        RAISE EXCEPTION '033 rollback refused: catalog row(s) % still target 033''s functions — roll back 034 first',
            array_to_string(v_later, ', ');
    END IF;

    IF (SELECT c.value FROM public.dot_config c WHERE c.key = 'iu_core.auto_instantiate_enabled') = 'true' THEN
        RAISE EXCEPTION '033 rollback refused: gate iu_core.auto_instantiate_enabled is currently OPEN — close it first';
    END IF;

    SELECT count(*), array_agg(DISTINCT a.actor) INTO v_rows, v_actors FROM public.iu_auto_instance a;
    IF v_rows > 0 THEN
        RAISE EXCEPTION '033 rollback refused: % auto-instance(s) still recorded in public.iu_auto_instance (actor(s): %) — roll them back first with fn_iu_auto_instantiate_rollback_by_actor(actor, false)',
            v_rows, array_to_string(v_actors, ', ');
    END IF;

    SELECT count(*) INTO v_events FROM public.event_outbox e
     WHERE e.event_domain = 'template' AND e.event_type = 'instance_auto_composed';
    IF v_events > 0 THEN
        RAISE EXCEPTION '033 rollback refused: % template.instance_auto_composed event(s) in public.event_outbox — the outbox is evidence and unregistering the type would orphan them; export and remove them deliberately first',
            v_events;
    END IF;
END
$guard$;

-- @body

DROP FUNCTION public.fn_iu_auto_instantiate_rollback_by_actor(text, boolean);
DROP FUNCTION public.fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text);
DROP TABLE public.iu_auto_instance;
DELETE FROM public.event_type_registry
 WHERE event_domain = 'template' AND event_type = 'instance_auto_composed';
DELETE FROM public.dot_config WHERE key = 'iu_core.auto_instantiate_enabled';

-- @assert

DO $assert$
DECLARE
    v_left text[] := '{}';
BEGIN
    IF to_regclass('public.iu_auto_instance') IS NOT NULL THEN
        v_left := v_left || 'table public.iu_auto_instance'::text;
    END IF;
    v_left := v_left || coalesce((
        SELECT array_agg(DISTINCT 'function public.' || p.proname)
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_auto_instantiate_from_event',
                             'fn_iu_auto_instantiate_rollback_by_actor')), '{}');
    IF EXISTS (SELECT 1 FROM public.dot_config c WHERE c.key = 'iu_core.auto_instantiate_enabled') THEN
        v_left := v_left || 'config iu_core.auto_instantiate_enabled'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM public.event_type_registry r
                WHERE r.event_domain = 'template' AND r.event_type = 'instance_auto_composed') THEN
        v_left := v_left || 'event type template.instance_auto_composed'::text;
    END IF;
    IF cardinality(v_left) > 0 THEN
        RAISE EXCEPTION '033 rollback assert: still present after rollback: %', array_to_string(v_left, ', ');
    END IF;
    IF (SELECT count(*) FROM public.dot_iu_command_catalog) <> 24 THEN
        RAISE EXCEPTION '033 rollback assert: public.dot_iu_command_catalog is not back to the 24 rows of 280';
    END IF;
END
$assert$;

SELECT '033_rollback' AS "check",
       to_regclass('public.iu_auto_instance') IS NULL AS provenance_table_gone,
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows;
