-- =============================================================================
-- least_privilege — the database side of least privilege (issue 9).
--
-- Adds (schema public):
--   * iu_gate_class — the ONE classification of every key an IU Core function
--     reads as a gate or runtime switch: governable (opened only through the
--     gate protocol, with an approval and a TTL), never_flip (refused always),
--     outside_protocol (runtime keys, each with the reason why). Revision 033's
--     iu_core.auto_instantiate_enabled becomes governable;
--   * fn_iu_gate_state(text) → text — the one reading of a gate: a governable
--     gate is 'open' only while its latest transition is an approved 'open'
--     whose TTL runs, watchdog or not. fn_iu_gate_is_open, the gate verify,
--     the watchdog and the dispatcher all read it;
--   * dot_iu_command_gate — the gates each catalogued command needs (the
--     Python registry's, row for row), some only for an argument value;
--   * fn_dot_iu_execute(text, text, jsonb, text) → jsonb — the one governed
--     entry point (SECURITY DEFINER): catalog lookup, a target its own owner
--     owns, gates read afresh at every call (READ COMMITTED callers only; no
--     lock kept, so a close never waits), the call with bound parameters in a
--     sub-block that undoes a refusal, one ledger row; EXECUTE for no one but
--     the roles `iucore db grant --operator` names;
--   * dot_iu_command_catalog.logs_itself (the gate-protocol commands);
--   * dot_iu_command_run.session_user_name — who was logged in, beside the
--     claimed actor (rows from before: '(unrecorded: before least_privilege)');
--   * a CHECK on iu_collection.collection_key: no '.' or '..' segment, no
--     leading '/', no backslash, no control character (a key becomes a path).
-- Replaces (CREATE OR REPLACE, bodies in functions/least_privilege/):
--   fn_iu_gate_is_open, fn_dot_iu_command_log (hardened: md5 digest, catalog
--   category, whitelisted evidence, classified snapshot, session_user),
--   fn_iu_healthcheck, fn_iu_gate_open / close / verify_closed / watchdog.
-- Pins (ALTER FUNCTION, one statement per function): search_path = pg_catalog,
--   pg_temp on every IU Core function the earlier revisions created, definer or
--   not (whatever a SECURITY DEFINER chain calls, triggers included, runs with
--   the owner's rights); the functions above pin it themselves. public is
--   shared with Directus, whose own role may CREATE there: with public on the
--   path, an overload it plants (public.cardinality(text[]) is a better match
--   than pg_catalog.cardinality(anyarray)) would run as the owner. Every body
--   names IU Core objects schema-qualified, so nothing else needs the path.
-- Revokes: EXECUTE on every IU Core function that writes and every table
-- privilege but SELECT on the governed tables (public's and every table of
-- cutter_governance), from every role but the owner (grants made before this
-- revision; `iucore db grant` gives what a role needs).
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA (psql resolves the \ir includes relative to this file):
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/least_privilege.sql "<database url>"
-- Paired rollback: rollbacks/least_privilege.sql.
-- =============================================================================

-- @preflight

-- public is shared with Directus, whose role may CREATE there, and the DO
-- blocks below call built-ins (cardinality, array_to_string, format …): with
-- public on this session's path, a better-matching look-alike planted there
-- would run here with the migration owner's rights. For this transaction the
-- path is pg_catalog, pg_temp; every IU Core name below is schema-qualified.
-- The RESET at the end of the file gives the session its own path back.
SET LOCAL search_path = pg_catalog, pg_temp;

-- Refuse to re-apply over ourselves: none of least_privilege's objects may exist.
DO $preflight$
DECLARE
    v_present text[] := '{}';
BEGIN
    v_present := v_present || coalesce((
        SELECT array_agg('table ' || t ORDER BY t)
          FROM unnest(ARRAY['public.iu_gate_class', 'public.dot_iu_command_gate']) AS t
         WHERE to_regclass(t) IS NOT NULL), '{}');
    v_present := v_present || coalesce((
        SELECT array_agg(DISTINCT 'function public.' || p.proname)
          FROM pg_catalog.pg_proc AS p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_gate_state', 'fn_dot_iu_execute')), '{}');
    v_present := v_present || coalesce((
        SELECT array_agg('column ' || a.attrelid::regclass || '.' || a.attname ORDER BY a.attname)
          FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid IN (SELECT to_regclass(t) FROM unnest(ARRAY['public.dot_iu_command_run',
                                                                      'public.dot_iu_command_catalog']) AS t)
           AND a.attname IN ('session_user_name', 'logs_itself') AND NOT a.attisdropped), '{}');
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS co WHERE co.conname = 'iu_collection_key_safe_path') THEN
        v_present := v_present || 'constraint iu_collection_key_safe_path'::text;
    END IF;
    IF cardinality(v_present) > 0 THEN
        RAISE EXCEPTION 'least_privilege preflight: % object(s) of least_privilege already present (%) — already applied? Check "iucore db current"; to rebuild, roll back first with rollbacks/least_privilege.sql',
            cardinality(v_present), array_to_string(v_present, ', ');
    END IF;
END
$preflight$;

-- The state this revision expects: gate_protocol (catalog 30, the transition
-- table, the 4 gate functions, the logger) and the 15 keys it classifies.
DO $preflight$
DECLARE
    c_keys text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled', 'iu_core.auto_instantiate_enabled',
        'iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled',
        'iu_core.routes_master_enabled', 'iu_core.route_worker_enabled', 'piece_event_runtime.emit_enabled',
        'iu_core.delivery_live_routes', 'iu_sql_link.enabled'];
    c_functions text[] := ARRAY[
        'public.fn_iu_gate_open(text,uuid,text,text,integer)',
        'public.fn_iu_gate_close(text,text,text)',
        'public.fn_iu_gate_verify_closed(text)',
        'public.fn_iu_gate_watchdog(text)',
        'public.fn_iu_gate_is_open(text)',
        'public.fn_iu_healthcheck()',
        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)'];
    v_rows    bigint;
    v_missing text[];
BEGIN
    IF to_regclass('public.iu_gate_transition') IS NULL OR to_regclass('public.dot_iu_command_catalog') IS NULL THEN
        RAISE EXCEPTION 'least_privilege preflight: the gate protocol (public.iu_gate_transition) or the command catalog is missing — apply substrate … gate_protocol first';
    END IF;
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 30 OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_catalog AS c
                                    WHERE c.command_name = 'dot_iu_gate_open') THEN
        RAISE EXCEPTION 'least_privilege preflight: public.dot_iu_command_catalog has % row(s), expected the 30 of gate_protocol — apply gate_protocol first',
            v_rows;
    END IF;
    SELECT array_agg(f) INTO v_missing FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege preflight: function(s) this revision replaces are missing: % — the database is not at gate_protocol',
            array_to_string(v_missing, ', ');
    END IF;
    SELECT array_agg(k ORDER BY k) INTO v_missing FROM unnest(c_keys) AS k
     WHERE NOT EXISTS (SELECT 1 FROM public.dot_config AS c WHERE c.key = k);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege preflight: key(s) to classify missing from public.dot_config: %',
            array_to_string(v_missing, ', ');
    END IF;
END
$preflight$;

-- A SECURITY DEFINER function is only as safe as the schemas on its
-- search_path: if any login may create objects in public (the default before
-- PostgreSQL 15, kept by an upgraded cluster), look-alike functions planted
-- there could be chosen over the built-ins. Refuse until that is closed.
DO $preflight$
DECLARE
    v_open text[];
BEGIN
    SELECT array_agg(n.nspname ORDER BY n.nspname) INTO v_open
      FROM pg_catalog.pg_namespace AS n
     WHERE n.nspname IN ('public', 'cutter_governance')
       AND EXISTS (SELECT 1 FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'CREATE');
    IF v_open IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege preflight: every role may CREATE in schema(s) % — a SECURITY DEFINER function could be hijacked there. Run REVOKE CREATE ON SCHEMA % FROM PUBLIC (the PostgreSQL 15+ default) and retry',
            array_to_string(v_open, ', '), array_to_string(v_open, ', ');
    END IF;
END
$preflight$;

-- A role other than the schema's owner that may CREATE in public or
-- cutter_governance is expected in production (Directus's own role creates
-- its tables in public, DESIGN §7a): named, not refused. From this revision on
-- nothing such a role creates runs with the owner's rights through IU Core:
-- no IU Core function searches public (pg_catalog, pg_temp; every IU Core
-- object schema-qualified) and the dispatcher runs only its owner's functions.
DO $preflight$
DECLARE
    v_roles text[];
BEGIN
    SELECT array_agg(r.grant_text ORDER BY r.grant_text) INTO v_roles
      FROM (SELECT DISTINCT format('%s on %s', pg_catalog.pg_get_userbyid(a.grantee), n.nspname) AS grant_text
              FROM pg_catalog.pg_namespace AS n,
                   aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
             WHERE n.nspname IN ('public', 'cutter_governance')
               AND a.privilege_type = 'CREATE' AND a.grantee <> 0 AND a.grantee <> n.nspowner) AS r;
    IF v_roles IS NOT NULL THEN
        RAISE NOTICE 'least_privilege preflight: role(s) other than the schema owner may CREATE in an IU Core schema: % — expected where Directus shares public; from this revision on no IU Core function searches public and the dispatcher runs only its owner''s functions, so nothing they create there runs with the owner''s rights through IU Core',
            array_to_string(v_roles, ', ');
    END IF;
END
$preflight$;

-- The key CHECK added below must hold for the rows already there: name those
-- that would break it (a key becomes a file path on render).
DO $preflight$
DECLARE
    v_bad   text[];
    v_count bigint;
BEGIN
    SELECT count(*), (array_agg(quote_literal(c.collection_key) ORDER BY c.collection_key))[1:10]
      INTO v_count, v_bad
      FROM public.iu_collection AS c
     WHERE NOT (c.collection_key <> ''
                AND c.collection_key !~ '(^|/)[.]{1,2}(/|$)'
                AND left(c.collection_key, 1) <> '/'
                AND strpos(c.collection_key, chr(92)) = 0
                AND c.collection_key !~ '[[:cntrl:]]');
    IF v_count > 0 THEN
        RAISE EXCEPTION 'least_privilege preflight: % collection key(s) are not safe paths (a ''.'' or ''..'' segment, a leading ''/'', a backslash or a control character): % — rename them first',
            v_count, array_to_string(v_bad, ', ')
            || CASE WHEN v_count > 10 THEN format(', … and %s more', v_count - 10) ELSE '' END;
    END IF;
END
$preflight$;

-- Gates that read 'true' but will read shut from here on (not opened through
-- the protocol, or their open has expired): said, not refused — shut is the
-- safe side, and the watchdog resets them.
DO $preflight$
DECLARE
    v_stale text[];
BEGIN
    SELECT array_agg(c.key ORDER BY c.key) INTO v_stale
      FROM public.dot_config AS c
     WHERE c.value = 'true'
       AND c.key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
                     'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
                     'queue.job_substrate.enabled', 'queue.dlq.replay_enabled', 'iu_core.auto_instantiate_enabled')
       AND NOT EXISTS (SELECT 1 FROM (SELECT t.action, t.approval_id, t.expires_at
                                        FROM public.iu_gate_transition AS t
                                       WHERE t.gate_key = c.key
                                       ORDER BY t.created_at DESC, t.transition_id DESC
                                       LIMIT 1) AS lt
                        WHERE lt.action = 'open' AND lt.approval_id IS NOT NULL AND lt.expires_at > clock_timestamp());
    IF v_stale IS NOT NULL THEN
        RAISE NOTICE 'least_privilege preflight: gate(s) % read ''true'' without a running protocol open: from this revision on they read shut (iucore gate watchdog resets them)',
            array_to_string(v_stale, ', ');
    END IF;
END
$preflight$;

-- @body

-- -----------------------------------------------------------------------------
-- 1. The one gate classification
-- -----------------------------------------------------------------------------
CREATE TABLE public.iu_gate_class (
    gate_key text PRIMARY KEY REFERENCES public.dot_config (key),
    class    text NOT NULL CHECK (class IN ('governable', 'never_flip', 'outside_protocol')),
    reason   text NOT NULL CHECK (btrim(reason) <> '')
);

COMMENT ON TABLE public.iu_gate_class IS
    'least_privilege: the one classification of every dot_config key an IU Core function reads as a gate or runtime switch. governable: opened only through fn_iu_gate_open (approval id, TTL), read open only while that TTL runs; never_flip: refused always; outside_protocol: a runtime key, not governed by the gate protocol (reason says why). An unclassified key reads shut.';

INSERT INTO public.iu_gate_class (gate_key, class, reason) VALUES
    ('iu_core.composer_enabled', 'governable',
     'Every composer mutator (birth gate, compose, add/remove/reorder, checkpoint, workflow, auto-instantiation) refuses while it is shut.'),
    ('iu_core.structure_ops_enabled', 'governable',
     'Retire, soft-delete/restore and live split/merge refuse while it is shut.'),
    ('iu_core.delivery_enabled', 'governable',
     'Route delivery is dry-run while it is shut, whatever the allowlist says.'),
    ('iu_core.three_axis_auto_refresh_enabled', 'governable',
     'fn_iu_refresh_metadata_axes refuses while it is shut.'),
    ('iu_core.operator_runtime_enabled', 'governable',
     'fn_dot_iu_execute refuses every apply that needs it (every command but the gate protocol and the dry-run route worker).'),
    ('queue.job_substrate.enabled', 'governable',
     'The job substrate queue stays inert while it is shut (seed 002 A4: one of the 7 governable gates).'),
    ('queue.dlq.replay_enabled', 'governable',
     'Dead-letter replay refuses while it is shut (seed 002 A4: one of the 7 governable gates).'),
    ('iu_core.auto_instantiate_enabled', 'governable',
     'Live auto-instantiation and the live rollback by actor (033) refuse while it is shut; from least_privilege on it opens only through the protocol (issue 9).'),
    ('iu_enact.allow_no_review_decision', 'never_flip',
     'Enacting without a review decision is never allowed: split/merge take a real cutter_governance.review_decision.'),
    ('iu_core.vector_sync_enabled', 'never_flip',
     'No vector-index write from IU Core, ever.'),
    ('iu_core.routes_master_enabled', 'outside_protocol',
     'The runtime master switch of event emission (seed 002 A3, emit gating step 1): an operations kill switch, on in production; governing it per change would let a shut gate stop the audit trail of the changes themselves.'),
    ('iu_core.route_worker_enabled', 'outside_protocol',
     'Runtime switch of the route worker: off makes a worker run skip; the worker is dry-run by construction, live delivery is governed by iu_core.delivery_enabled.'),
    ('piece_event_runtime.emit_enabled', 'outside_protocol',
     'Runtime switch of event emission (seed 002 A3, emit gating step 2), checked after the master switch; operations, not a per-change approval.'),
    ('iu_core.delivery_live_routes', 'outside_protocol',
     'Not a gate: the comma-separated allowlist of routes that may deliver live; it only narrows what the governable iu_core.delivery_enabled allows.'),
    ('iu_sql_link.enabled', 'outside_protocol',
     'Reserved runtime key of the IU-to-SQL link; no IU Core function reads it, and it stays off.');

-- -----------------------------------------------------------------------------
-- 2. The gates each command needs, and which commands log themselves
-- -----------------------------------------------------------------------------
ALTER TABLE public.dot_iu_command_catalog
    ADD COLUMN logs_itself boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN public.dot_iu_command_catalog.logs_itself IS
    'least_privilege: the target function writes its own ledger row(s) (the gate protocol); fn_dot_iu_execute adds none when it succeeds.';

UPDATE public.dot_iu_command_catalog
   SET logs_itself = true
 WHERE command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog');

CREATE TABLE public.dot_iu_command_gate (
    command_name text NOT NULL REFERENCES public.dot_iu_command_catalog (command_name) ON DELETE CASCADE,
    gate_key     text NOT NULL REFERENCES public.iu_gate_class (gate_key),
    ord          smallint NOT NULL,
    when_arg     text,
    when_value   text,
    PRIMARY KEY (command_name, gate_key),
    CONSTRAINT dot_iu_command_gate_when_pair CHECK ((when_arg IS NULL) = (when_value IS NULL))
);

COMMENT ON TABLE public.dot_iu_command_gate IS
    'least_privilege: the gates fn_dot_iu_execute checks before it calls a command (apply) or reports (plan), in ord order. A row with when_arg applies only when that argument of the target function, cast to its type, equals when_value (or when that cannot be decided: fail closed). Equals the Python registry row for row.';

-- Every command but the gate protocol and the dry-run route worker needs the
-- operator-runtime gate (seed 000 §4), then the gates its function checks.
INSERT INTO public.dot_iu_command_gate (command_name, gate_key, ord)
SELECT c.command_name, 'iu_core.operator_runtime_enabled', 1
  FROM public.dot_iu_command_catalog AS c
 WHERE c.command_name NOT IN ('dot_iu_gate_open', 'dot_iu_gate_close', 'dot_iu_gate_watchdog',
                              'dot_iu_gate_verify_closed', 'dot_iu_route_worker_run');

INSERT INTO public.dot_iu_command_gate (command_name, gate_key, ord, when_arg, when_value) VALUES
    ('dot_iu_create_file_from_pieces', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_add_piece', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_remove_piece', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_reorder_piece', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_checkpoint_collection', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_clone_piece', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_workflow_from_steps', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_retire_piece', 'iu_core.structure_ops_enabled', 2, NULL, NULL),
    ('dot_iu_soft_delete_piece', 'iu_core.structure_ops_enabled', 2, NULL, NULL),
    ('dot_iu_restore_piece', 'iu_core.structure_ops_enabled', 2, NULL, NULL),
    ('dot_iu_split_piece', 'iu_core.structure_ops_enabled', 2, NULL, NULL),
    ('dot_iu_merge_pieces', 'iu_core.structure_ops_enabled', 2, NULL, NULL),
    ('dot_iu_refresh_metadata_axes', 'iu_core.three_axis_auto_refresh_enabled', 2, NULL, NULL),
    ('dot_iu_auto_instantiate_from_event', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_auto_instantiate_from_event', 'iu_core.auto_instantiate_enabled', 3, 'p_emit_mode', 'live'),
    ('dot_iu_auto_instantiate_rollback_by_actor', 'iu_core.composer_enabled', 2, NULL, NULL),
    ('dot_iu_auto_instantiate_rollback_by_actor', 'iu_core.auto_instantiate_enabled', 3, 'p_dry_run', 'false');

-- -----------------------------------------------------------------------------
-- 3. The ledger records who was logged in; collection keys are safe paths
-- -----------------------------------------------------------------------------
-- A constant default first (no table rewrite: every existing row reads the
-- marker), then session_user for every row from here on.
ALTER TABLE public.dot_iu_command_run
    ADD COLUMN session_user_name text NOT NULL DEFAULT '(unrecorded: before least_privilege)';
ALTER TABLE public.dot_iu_command_run
    ALTER COLUMN session_user_name SET DEFAULT session_user;

COMMENT ON COLUMN public.dot_iu_command_run.session_user_name IS
    'least_privilege: session_user of the run (who was logged in), beside the actor the caller claims. Rows written before least_privilege read ''(unrecorded: before least_privilege)''.';

ALTER TABLE public.iu_collection
    ADD CONSTRAINT iu_collection_key_safe_path CHECK (
        collection_key <> ''
        AND collection_key !~ '(^|/)[.]{1,2}(/|$)'
        AND left(collection_key, 1) <> '/'
        AND strpos(collection_key, chr(92)) = 0
        AND collection_key !~ '[[:cntrl:]]');

-- -----------------------------------------------------------------------------
-- 4. The one gate reading, and every gate check on it
-- -----------------------------------------------------------------------------
\ir functions/least_privilege/fn_iu_gate_state.sql

\ir functions/least_privilege/fn_iu_gate_is_open.sql

\ir functions/least_privilege/fn_iu_gate_verify_closed.sql

\ir functions/least_privilege/fn_iu_healthcheck.sql

\ir functions/least_privilege/fn_iu_gate_open.sql

\ir functions/least_privilege/fn_iu_gate_close.sql

\ir functions/least_privilege/fn_iu_gate_watchdog.sql

-- -----------------------------------------------------------------------------
-- 5. The hardened ledger logger and the governed entry point
-- -----------------------------------------------------------------------------
\ir functions/least_privilege/fn_dot_iu_command_log.sql

\ir functions/least_privilege/fn_dot_iu_execute.sql

-- Nobody but the owner's definer functions writes; roles get EXECUTE on the
-- dispatcher through `iucore db grant --operator`. (CREATE OR REPLACE keeps
-- the ACL of a replaced function; restated here for every writer it touches.)
REVOKE ALL ON FUNCTION public.fn_dot_iu_execute(text, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.fn_iu_gate_open(text, uuid, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.fn_iu_gate_close(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.fn_iu_gate_watchdog(text) FROM PUBLIC;

-- -----------------------------------------------------------------------------
-- 6. Grants made before this revision that bypass the governed path
-- -----------------------------------------------------------------------------
-- The old operator policy granted EXECUTE on the mutators and the logger and
-- DML on the data tables: with them a login could write without a gate or
-- forge the ledger (and with INSERT on cutter_governance.review_decision forge
-- the review decision split/merge require). Every role but an object's owner
-- loses EXECUTE on every IU Core function that writes (volatile, not a trigger
-- function) and every table privilege but SELECT on the tables only governed
-- functions write: public's IU Core tables and every table of cutter_governance.
-- Each revocation is named; `iucore db grant` gives a role what it needs.
DO $revoke$
DECLARE
    v_obj record;
BEGIN
    FOR v_obj IN
        SELECT format('FUNCTION %s', p.oid::regprocedure) AS what, pg_catalog.pg_get_userbyid(a.grantee) AS grantee,
               'EXECUTE' AS privilege
          FROM pg_catalog.pg_proc AS p,
               aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
         WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)
           AND p.proname ~ '^fn_(iu|dot)_'
           AND p.provolatile = 'v' AND p.prorettype <> 'trigger'::regtype
           AND p.proname <> 'fn_dot_iu_execute'
           AND a.grantee <> 0 AND a.grantee <> p.proowner
        UNION
        SELECT format('TABLE %s', c.oid::regclass), pg_catalog.pg_get_userbyid(a.grantee), a.privilege_type
          FROM pg_catalog.pg_class AS c,
               aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
         WHERE c.relkind = 'r'
           AND (c.relnamespace = 'cutter_governance'::regnamespace
                OR (c.relnamespace = 'public'::regnamespace
                    AND (c.relname ~ '^(dot|iu)_'
                         OR c.relname IN ('information_unit', 'event_outbox', 'event_type_registry'))))
           AND a.grantee <> 0 AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT'
         ORDER BY 1, 2, 3
    LOOP
        -- lint: allow hidden-ddl (a REVOKE only takes away; the object is a regprocedure/regclass text, the privilege an aclexplode keyword, the grantee quoted by %I)
        EXECUTE format('REVOKE %s ON %s FROM %I CASCADE', v_obj.privilege, v_obj.what, v_obj.grantee);
        RAISE NOTICE 'least_privilege: revoked % on % from %', v_obj.privilege, v_obj.what, v_obj.grantee;
    END LOOP;
END
$revoke$;

-- -----------------------------------------------------------------------------
-- 7. Every IU Core function searches pg_catalog, then pg_temp — never public
-- -----------------------------------------------------------------------------
-- public is shared with Directus, whose role may CREATE there. PostgreSQL
-- prefers an exact argument match wherever it sits on the path, so with public
-- on it an overload planted there (public.cardinality(text[]) against
-- pg_catalog.cardinality(anyarray), public.format(text, text), an operator
-- ||(text[], text) …) would be chosen over the built-in and run with the
-- rights of whoever runs the function: the owner, for everything a SECURITY
-- DEFINER function calls. pg_temp is searched for tables and types only, and
-- last. Every body names IU Core objects schema-qualified (a test scans them).
-- The functions least_privilege (re)creates above pin the same path themselves;
-- the other 28, one ALTER FUNCTION each, grouped by the revision that made them:
\ir functions/least_privilege/search_path_pin.sql

-- @postcheck

DO $postcheck$
DECLARE
    -- Every IU Core function of the chain: the 9 of this revision, the 28 it pins.
    c_pinned text[] := ARRAY[
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
        'public.fn_iu_gate_state(text)', 'public.fn_iu_gate_is_open(text)', 'public.fn_iu_gate_verify_closed(text)',
        'public.fn_iu_healthcheck()', 'public.fn_iu_gate_open(text,uuid,text,text,integer)',
        'public.fn_iu_gate_close(text,text,text)', 'public.fn_iu_gate_watchdog(text)',
        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)',
        'public.fn_dot_iu_execute(text,text,jsonb,text)'];
    c_functions text[] := ARRAY[
        'public.fn_iu_gate_state(text)',
        'public.fn_iu_gate_is_open(text)',
        'public.fn_iu_gate_verify_closed(text)',
        'public.fn_iu_healthcheck()',
        'public.fn_iu_gate_open(text,uuid,text,text,integer)',
        'public.fn_iu_gate_close(text,text,text)',
        'public.fn_iu_gate_watchdog(text)',
        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)',
        'public.fn_dot_iu_execute(text,text,jsonb,text)'];
    v_missing text[];
    v_n       bigint;
BEGIN
    SELECT array_agg(f) INTO v_missing FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege post-check: function(s) not resolvable: %', array_to_string(v_missing, ', ');
    END IF;

    -- Every IU Core function searches pg_catalog, then pg_temp, and nothing else.
    SELECT array_agg(f ORDER BY f) INTO v_missing
      FROM unnest(c_pinned) AS f
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS p
                        WHERE p.oid = to_regprocedure(f)
                          AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp']);
    IF v_missing IS NOT NULL OR cardinality(c_pinned) <> 37 THEN
        RAISE EXCEPTION 'least_privilege post-check: function(s) whose search_path is not exactly pg_catalog, pg_temp: %',
            coalesce(array_to_string(v_missing, ', '), 'none (but the list is not the 37 of the chain)');
    END IF;

    -- Every key in dot_config is classified (an unclassified key reads shut),
    -- and the classes are the ones this revision declares.
    SELECT array_agg(c.key ORDER BY c.key) INTO v_missing
      FROM public.dot_config AS c
     WHERE NOT EXISTS (SELECT 1 FROM public.iu_gate_class AS k WHERE k.gate_key = c.key);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege post-check: dot_config key(s) without a class in public.iu_gate_class: %',
            array_to_string(v_missing, ', ');
    END IF;
    IF (SELECT string_agg(k.class || '=' || k.n, ',' ORDER BY k.class)
          FROM (SELECT class, count(*) AS n FROM public.iu_gate_class GROUP BY class) AS k)
       IS DISTINCT FROM 'governable=8,never_flip=2,outside_protocol=5' THEN
        RAISE EXCEPTION 'least_privilege post-check: public.iu_gate_class is not 8 governable, 2 never-flip, 5 outside the protocol';
    END IF;

    -- The dispatcher and the logger: SECURITY DEFINER, search_path pinned with
    -- pg_temp last; no PUBLIC EXECUTE on any IU Core function that writes.
    SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) INTO v_missing
      FROM pg_catalog.pg_proc AS p
     WHERE p.oid IN (to_regprocedure('public.fn_dot_iu_execute(text,text,jsonb,text)'),
                     to_regprocedure('public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)'))
       AND NOT (p.prosecdef AND coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false));
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege post-check: not SECURITY DEFINER with search_path = pg_catalog, pg_temp: %',
            array_to_string(v_missing, ', ');
    END IF;
    SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) INTO v_missing
      FROM pg_catalog.pg_proc AS p
     WHERE p.pronamespace IN ('public'::regnamespace, 'cutter_governance'::regnamespace)
       AND p.proname ~ '^fn_(iu|dot)_'
       AND p.provolatile = 'v' AND p.prorettype <> 'trigger'::regtype
       AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
                      AND NOT (p.proname = 'fn_dot_iu_execute' AND a.grantee <> 0));
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege post-check: function(s) that write are executable by PUBLIC or another role: %',
            array_to_string(v_missing, ', ');
    END IF;

    -- Every command's gates are classified, every conditional argument is an
    -- argument of the command's target function, and no command is missing
    -- the operator-runtime gate but the five that must not need it.
    SELECT array_agg(g.command_name || '.' || g.when_arg ORDER BY g.command_name) INTO v_missing
      FROM public.dot_iu_command_gate AS g
      JOIN public.dot_iu_command_catalog AS c USING (command_name)
     WHERE g.when_arg IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS p
                        WHERE p.pronamespace = 'public'::regnamespace
                          AND p.proname = c.target_functions[1]
                          AND g.when_arg = ANY (p.proargnames));
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege post-check: conditional gate argument(s) not on the target function: %',
            array_to_string(v_missing, ', ');
    END IF;
    SELECT count(*) INTO v_n FROM public.dot_iu_command_gate;
    IF v_n <> 42 THEN
        RAISE EXCEPTION 'least_privilege post-check: public.dot_iu_command_gate has % row(s), expected 42', v_n;
    END IF;
    IF (SELECT count(*) FROM public.dot_iu_command_catalog WHERE logs_itself) <> 3 THEN
        RAISE EXCEPTION 'least_privilege post-check: exactly the 3 gate-protocol writers log themselves';
    END IF;

    -- No role but the owner holds a write privilege on a governed table
    -- (public's IU Core tables, every table of cutter_governance).
    SELECT array_agg(DISTINCT c.oid::regclass::text) INTO v_missing
      FROM pg_catalog.pg_class AS c,
           aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
     WHERE c.relkind = 'r'
       AND (c.relnamespace = 'cutter_governance'::regnamespace
            OR (c.relnamespace = 'public'::regnamespace
                AND (c.relname ~ '^(dot|iu)_'
                     OR c.relname IN ('information_unit', 'event_outbox', 'event_type_registry'))))
       AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT';
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'least_privilege post-check: a role other than the owner can still write: %',
            array_to_string(v_missing, ', ');
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                    WHERE a.attrelid = 'public.dot_iu_command_run'::regclass
                      AND a.attname = 'session_user_name' AND a.attnotnull AND NOT a.attisdropped)
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS co
                       WHERE co.conrelid = 'public.iu_collection'::regclass
                         AND co.conname = 'iu_collection_key_safe_path' AND co.convalidated) THEN
        RAISE EXCEPTION 'least_privilege post-check: dot_iu_command_run.session_user_name or the collection key CHECK is missing';
    END IF;
END
$postcheck$;

SELECT 'least_privilege_gate_class' AS "check",
       count(*) FILTER (WHERE k.class = 'governable') AS governable,
       count(*) FILTER (WHERE k.class = 'never_flip') AS never_flip,
       count(*) FILTER (WHERE k.class = 'outside_protocol') AS outside_protocol,
       (SELECT count(*) FROM public.dot_config) AS config_keys
  FROM public.iu_gate_class AS k;

SELECT 'least_privilege_gates' AS "check",
       (v ->> 'all_safe')::boolean AS all_safe,
       (v ->> 'gate_count')::int AS protocol_gates,
       v -> 'stale_open' AS stale_open
  FROM public.fn_iu_gate_verify_closed() AS v;

SELECT 'least_privilege_dispatcher' AS "check",
       p.prosecdef AS security_definer,
       p.proconfig AS settings,
       (SELECT count(*) FROM public.dot_iu_command_gate) AS command_gates,
       (SELECT count(DISTINCT g.command_name) FROM public.dot_iu_command_gate AS g) AS gated_commands
  FROM pg_catalog.pg_proc AS p
 WHERE p.oid = 'public.fn_dot_iu_execute(text,text,jsonb,text)'::regprocedure;

RESET search_path;
