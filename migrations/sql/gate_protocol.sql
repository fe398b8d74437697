-- =============================================================================
-- gate_protocol — the bounded gate protocol (seed 002, A4).
--
-- Adds (schema public):
--   * iu_gate_transition — one row per gate transition (open / close /
--     watchdog_close), with the approval id, TTL, expiry, actor, reason and
--     the ledger run that recorded it;
--   * fn_iu_gate_open(text, uuid, text, text, integer) → jsonb — opens a
--     governable gate with an approval id and a TTL in (0, 3600] s;
--   * fn_iu_gate_close(text, text, text) → jsonb — forces a governable or
--     never-flip gate to 'false';
--   * fn_iu_gate_verify_closed(text) → jsonb (STABLE) — the 9-gate verify;
--   * fn_iu_gate_watchdog(text) → jsonb — closes every governable gate whose
--     open has expired (or that was opened outside the protocol);
--   * 4 catalog rows (dot_iu_gate_open / close / watchdog / verify_closed).
--
-- Fail-closed core (seed 002 A4, verbatim in behaviour):
--   never-flip gate           → RAISE insufficient_privilege (42501)
--   not a governable gate     → RAISE insufficient_privilege (42501)
--   approval_id IS NULL       → RAISE check_violation (23514)
--   ttl not in (0, 3600]      → RAISE check_violation (23514)
-- Every transition is written to iu_gate_transition AND to the run ledger
-- through fn_dot_iu_command_log (an md5 params digest, never raw parameters).
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/gate_protocol.sql "<database url>"
-- Paired rollback: rollbacks/gate_protocol.sql.
-- =============================================================================

-- @preflight

-- Refuse to re-apply over ourselves: table, 4 functions and 4 catalog rows absent.
DO $preflight$
DECLARE
    v_present text[] := '{}';
BEGIN
    IF to_regclass('public.iu_gate_transition') IS NOT NULL THEN
        v_present := v_present || 'table public.iu_gate_transition'::text;
    END IF;
    v_present := v_present || coalesce((
        SELECT array_agg(DISTINCT 'function public.' || p.proname)
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_gate_open', 'fn_iu_gate_close',
                             'fn_iu_gate_verify_closed', 'fn_iu_gate_watchdog')), '{}');
    IF to_regclass('public.dot_iu_command_catalog') IS NOT NULL THEN
        v_present := v_present || coalesce((
            SELECT array_agg('catalog row ' || c.command_name ORDER BY c.command_name)
              FROM public.dot_iu_command_catalog c
             WHERE c.command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                                      'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed')), '{}');
    END IF;
    IF cardinality(v_present) > 0 THEN
        RAISE EXCEPTION 'gate_protocol preflight: % object(s) of the gate protocol already present (%) — already applied? Check "iucore db current"; to rebuild, roll back first with rollbacks/gate_protocol.sql',
            cardinality(v_present), array_to_string(v_present, ', ');
    END IF;
END
$preflight$;

-- The state this revision expects: the catalog of 034 (26 rows), the logger,
-- and all 9 protocol gates present in dot_config.
DO $preflight$
DECLARE
    c_gates text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled',
        'iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled'];
    v_rows    bigint;
    v_missing text[];
BEGIN
    IF to_regclass('public.dot_iu_command_catalog') IS NULL THEN
        RAISE EXCEPTION 'gate_protocol preflight: public.dot_iu_command_catalog is missing — apply substrate … 034 first';
    END IF;
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 26 THEN
        RAISE EXCEPTION 'gate_protocol preflight: public.dot_iu_command_catalog has % row(s), expected 26 (the 034 state) — apply 034 first',
            v_rows;
    END IF;

    IF to_regprocedure('public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)') IS NULL THEN
        RAISE EXCEPTION 'gate_protocol preflight: the ledger logger public.fn_dot_iu_command_log is missing — the database is not at revision 034';
    END IF;

    SELECT array_agg(g) INTO v_missing FROM unnest(c_gates) AS g
     WHERE NOT EXISTS (SELECT 1 FROM public.dot_config c WHERE c.key = g);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'gate_protocol preflight: protocol gate(s) missing from public.dot_config: %',
            array_to_string(v_missing, ', ');
    END IF;
END
$preflight$;

-- @body

-- -----------------------------------------------------------------------------
-- 1. The transition log
-- -----------------------------------------------------------------------------
CREATE TABLE public.iu_gate_transition (
    transition_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    gate_key      text NOT NULL,
    action        text NOT NULL CHECK (action IN ('open', 'close', 'watchdog_close')),
    prev_value    text,
    new_value     text,
    approval_id   uuid,
    ttl_seconds   int,
    expires_at    timestamptz,
    actor         text NOT NULL,
    reason        text,
    run_id        uuid,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_iu_gate_transition_gate ON public.iu_gate_transition (gate_key, created_at DESC);

COMMENT ON TABLE public.iu_gate_transition IS
    'Gate protocol (seed 002): every open / close / watchdog_close of a protocol gate, with approval id, TTL, expiry, actor, reason and the dot_iu_command_run row (run_id) that recorded it.';

-- -----------------------------------------------------------------------------
-- 2. fn_iu_gate_open: the fail-closed core
-- -----------------------------------------------------------------------------
-- SECURITY DEFINER: an operator role holding EXECUTE (not PUBLIC) opens a gate
-- without holding UPDATE on dot_config; every path through it is recorded.
CREATE FUNCTION public.fn_iu_gate_open(
    p_gate_key    text,
    p_approval_id uuid,
    p_reason      text,
    p_actor       text,
    p_ttl_seconds integer)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_never_flip CONSTANT text[] := ARRAY['iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled'];
    c_governable CONSTANT text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled'];
    v_prev       text;
    v_expires    timestamptz;
    v_transition uuid := gen_random_uuid();
    v_run        uuid;
BEGIN
    IF p_gate_key = ANY (c_never_flip) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_open: %s is NEVER-FLIP: no approval opens it — to enact, supply a real review_decision_id', p_gate_key),
            HINT = 'Split/merge take a cutter_governance.review_decision id; this gate stays false.';
    END IF;
    IF p_gate_key IS NULL OR NOT (p_gate_key = ANY (c_governable)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_open: %s is not a governable runtime gate (fail-closed)', coalesce(p_gate_key, 'NULL')),
            HINT = 'Governable: ' || array_to_string(c_governable, ', ');
    END IF;
    IF p_approval_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('fn_iu_gate_open: approval_id required (Điều 32) to open %s', p_gate_key);
    END IF;
    IF p_ttl_seconds IS NULL OR p_ttl_seconds <= 0 OR p_ttl_seconds > 3600 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('fn_iu_gate_open: ttl_seconds must be in (0, 3600], got %s', coalesce(p_ttl_seconds::text, 'NULL'));
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_open: actor required (every transition names who made it)';
    END IF;

    SELECT c.value INTO v_prev FROM public.dot_config c WHERE c.key = p_gate_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('fn_iu_gate_open: gate %s has no row in public.dot_config (fail-closed)', p_gate_key);
    END IF;

    v_expires := now() + make_interval(secs => p_ttl_seconds);
    UPDATE public.dot_config SET value = 'true' WHERE key = p_gate_key;

    v_run := public.fn_dot_iu_command_log(
        'dot_iu_gate_open', 'health', 'apply', 'applied', true,
        md5(jsonb_build_object('gate_key', p_gate_key, 'approval_id', p_approval_id, 'reason', p_reason,
                               'actor', p_actor, 'ttl_seconds', p_ttl_seconds)::text),
        jsonb_build_object(p_gate_key, v_prev),
        jsonb_build_object('transition_id', v_transition, 'action', 'open',
                           'prev_value', v_prev, 'new_value', 'true', 'expires_at', v_expires),
        p_actor);

    INSERT INTO public.iu_gate_transition
        (transition_id, gate_key, action, prev_value, new_value, approval_id, ttl_seconds,
         expires_at, actor, reason, run_id, created_at)
    VALUES
        (v_transition, p_gate_key, 'open', v_prev, 'true', p_approval_id, p_ttl_seconds,
         v_expires, p_actor, p_reason, v_run, clock_timestamp());

    RETURN jsonb_build_object('status', 'opened', 'gate_key', p_gate_key,
                              'prev_value', v_prev, 'new_value', 'true',
                              'approval_id', p_approval_id, 'ttl_seconds', p_ttl_seconds,
                              'expires_at', v_expires,
                              'transition_id', v_transition, 'run_id', v_run);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 3. fn_iu_gate_close: forces 'false' for governable and never-flip gates
-- -----------------------------------------------------------------------------
CREATE FUNCTION public.fn_iu_gate_close(
    p_gate_key text,
    p_reason   text,
    p_actor    text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_never_flip CONSTANT text[] := ARRAY['iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled'];
    c_governable CONSTANT text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled'];
    v_prev       text;
    v_transition uuid := gen_random_uuid();
    v_run        uuid;
BEGIN
    IF p_gate_key IS NULL OR NOT (p_gate_key = ANY (c_governable || c_never_flip)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('fn_iu_gate_close: %s is not a governable runtime gate (fail-closed)', coalesce(p_gate_key, 'NULL')),
            HINT = 'The protocol closes: ' || array_to_string(c_governable || c_never_flip, ', ');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_close: actor required (every transition names who made it)';
    END IF;

    SELECT c.value INTO v_prev FROM public.dot_config c WHERE c.key = p_gate_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = format('fn_iu_gate_close: gate %s has no row in public.dot_config (fail-closed)', p_gate_key);
    END IF;

    UPDATE public.dot_config SET value = 'false' WHERE key = p_gate_key;

    v_run := public.fn_dot_iu_command_log(
        'dot_iu_gate_close', 'health', 'apply', 'applied', true,
        md5(jsonb_build_object('gate_key', p_gate_key, 'reason', p_reason, 'actor', p_actor)::text),
        jsonb_build_object(p_gate_key, v_prev),
        jsonb_build_object('transition_id', v_transition, 'action', 'close',
                           'prev_value', v_prev, 'new_value', 'false'),
        p_actor);

    INSERT INTO public.iu_gate_transition
        (transition_id, gate_key, action, prev_value, new_value, actor, reason, run_id, created_at)
    VALUES
        (v_transition, p_gate_key, 'close', v_prev, 'false', p_actor, p_reason, v_run, clock_timestamp());

    RETURN jsonb_build_object('status', 'closed', 'gate_key', p_gate_key,
                              'prev_value', v_prev, 'new_value', 'false',
                              'was_open', v_prev IS DISTINCT FROM 'false',
                              'transition_id', v_transition, 'run_id', v_run);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 4. fn_iu_gate_verify_closed: the 9-gate verify (read-only, fail-closed)
-- -----------------------------------------------------------------------------
CREATE FUNCTION public.fn_iu_gate_verify_closed(p_gate_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_answer jsonb;
BEGIN
    -- Closed means exactly 'false'; a missing row (NULL) or any other value is
    -- NOT safe: fail closed.
    WITH g (key, class, ord) AS (
        VALUES ('iu_core.composer_enabled', 'governable', 1),
               ('iu_core.structure_ops_enabled', 'governable', 2),
               ('iu_core.delivery_enabled', 'governable', 3),
               ('iu_core.three_axis_auto_refresh_enabled', 'governable', 4),
               ('iu_core.operator_runtime_enabled', 'governable', 5),
               ('queue.job_substrate.enabled', 'governable', 6),
               ('queue.dlq.replay_enabled', 'governable', 7),
               ('iu_enact.allow_no_review_decision', 'never_flip', 8),
               ('iu_core.vector_sync_enabled', 'never_flip', 9)
    ), s AS (
        SELECT g.key, c.value, g.class, g.ord,
               (c.value IS NOT DISTINCT FROM 'false') AS closed
          FROM g
          LEFT JOIN public.dot_config c ON c.key = g.key
         WHERE p_gate_key IS NULL OR g.key = p_gate_key
    )
    SELECT CASE WHEN count(*) = 0 THEN NULL ELSE
           jsonb_build_object(
               'status', 'ok',
               'gate_count', count(*),
               'gates', jsonb_agg(jsonb_build_object('key', s.key, 'value', s.value, 'class', s.class)
                                  ORDER BY s.ord),
               'all_governed_closed', coalesce(bool_and(s.closed) FILTER (WHERE s.class = 'governable'), true),
               'never_flip_intact', coalesce(bool_and(s.closed) FILTER (WHERE s.class = 'never_flip'), true),
               'all_safe', bool_and(s.closed)) END
      INTO v_answer
      FROM s;

    IF v_answer IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'gate_key',
                                  'guidance', 'Not one of the 9 protocol gates (7 governable, 2 never-flip); pass NULL for all.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    RETURN v_answer;
END
$fn$;

-- -----------------------------------------------------------------------------
-- 5. fn_iu_gate_watchdog: close every governable gate whose open has expired
-- -----------------------------------------------------------------------------
-- Each gate it closes gets one 'watchdog_close' transition and one
-- dot_iu_gate_watchdog ledger row (the transition's run_id); a sweep that
-- closes nothing writes one 'verify' ledger row, so every call is audited.
CREATE FUNCTION public.fn_iu_gate_watchdog(p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_governable CONSTANT text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled'];
    v_gate       record;
    v_transition uuid;
    v_run        uuid;
    v_reason     text;
    v_closed     jsonb := '[]';
BEGIN
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'fn_iu_gate_watchdog: actor required (every transition names who made it)';
    END IF;

    -- A governable gate that is 'true' stays open only while its latest
    -- transition is an 'open' that has not expired. Expired, never opened
    -- through the protocol, or re-opened by hand after a close: closed.
    FOR v_gate IN
        SELECT c.key, lt.action AS last_action, lt.expires_at AS last_expires_at
          FROM public.dot_config c
          LEFT JOIN LATERAL (
                SELECT t.action, t.expires_at
                  FROM public.iu_gate_transition t
                 WHERE t.gate_key = c.key
                 ORDER BY t.created_at DESC, t.transition_id DESC
                 LIMIT 1) AS lt ON true
         WHERE c.key = ANY (c_governable)
           AND c.value = 'true'
         ORDER BY c.key
           FOR UPDATE OF c
    LOOP
        IF v_gate.last_action = 'open' AND v_gate.last_expires_at >= now() THEN
            CONTINUE;
        END IF;

        v_reason := CASE
            WHEN v_gate.last_action = 'open'
                THEN format('watchdog: open expired at %s', v_gate.last_expires_at)
            WHEN v_gate.last_action IS NULL
                THEN 'watchdog: open without a protocol transition (no TTL)'
            ELSE 'watchdog: re-opened outside the protocol after a ' || v_gate.last_action
        END;
        v_transition := gen_random_uuid();

        UPDATE public.dot_config SET value = 'false' WHERE key = v_gate.key;

        v_run := public.fn_dot_iu_command_log(
            'dot_iu_gate_watchdog', 'health', 'apply', 'applied', true,
            md5(jsonb_build_object('gate_key', v_gate.key, 'actor', p_actor)::text),
            jsonb_build_object(v_gate.key, 'true'),
            jsonb_build_object('transition_id', v_transition, 'action', 'watchdog_close',
                               'prev_value', 'true', 'new_value', 'false',
                               'expired_at', v_gate.last_expires_at),
            p_actor);

        INSERT INTO public.iu_gate_transition
            (transition_id, gate_key, action, prev_value, new_value, actor, reason, run_id, created_at)
        VALUES
            (v_transition, v_gate.key, 'watchdog_close', 'true', 'false', p_actor, v_reason, v_run,
             clock_timestamp());

        v_closed := v_closed || jsonb_build_object('gate_key', v_gate.key,
                                                   'expired_at', v_gate.last_expires_at,
                                                   'reason', v_reason,
                                                   'transition_id', v_transition, 'run_id', v_run);
    END LOOP;

    -- A sweep that closed nothing is still audited: one ledger row per call at
    -- least (a 'verify' run: checked, nothing to do).
    v_run := NULL;
    IF jsonb_array_length(v_closed) = 0 THEN
        v_run := public.fn_dot_iu_command_log(
            'dot_iu_gate_watchdog', 'health', 'verify', 'verified', true,
            md5(jsonb_build_object('actor', p_actor)::text),
            (SELECT coalesce(jsonb_object_agg(c.key, c.value), '{}')
               FROM public.dot_config c WHERE c.key = ANY (c_governable)),
            jsonb_build_object('closed_count', 0),
            p_actor);
    END IF;

    RETURN jsonb_build_object('status', 'ok',
                              'closed_count', jsonb_array_length(v_closed),
                              'closed', v_closed,
                              'run_id', v_run,
                              'checked_at', now());
END
$fn$;

-- Open, close and the watchdog change gates: not for PUBLIC. The verify is a read.
REVOKE EXECUTE ON FUNCTION public.fn_iu_gate_open(text, uuid, text, text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_gate_close(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_gate_watchdog(text) FROM PUBLIC;

-- -----------------------------------------------------------------------------
-- 6. The 4 catalog rows (seed 002 A4)
-- -----------------------------------------------------------------------------
INSERT INTO public.dot_iu_command_catalog
    (command_name, category, mutating, reversible, target_functions, description)
VALUES
    ('dot_iu_gate_open', 'health', true, true, ARRAY['fn_iu_gate_open'],
     'open a governable gate with an approval id and a TTL in (0, 3600] s'),
    ('dot_iu_gate_close', 'health', true, true, ARRAY['fn_iu_gate_close'],
     'close a gate'),
    ('dot_iu_gate_watchdog', 'health', true, true, ARRAY['fn_iu_gate_watchdog'],
     'close every governable gate whose open has expired'),
    ('dot_iu_gate_verify_closed', 'read', false, true, ARRAY['fn_iu_gate_verify_closed'],
     'the 9-gate verify: all_safe, all_governed_closed, never_flip_intact');

-- @postcheck

DO $postcheck$
DECLARE
    c_functions text[] := ARRAY[
        'public.fn_iu_gate_open(text,uuid,text,text,integer)',
        'public.fn_iu_gate_close(text,text,text)',
        'public.fn_iu_gate_verify_closed(text)',
        'public.fn_iu_gate_watchdog(text)'];
    c_mutating text[] := ARRAY[
        'public.fn_iu_gate_open(text,uuid,text,text,integer)',
        'public.fn_iu_gate_close(text,text,text)',
        'public.fn_iu_gate_watchdog(text)'];
    v_rows    bigint;
    v_missing text[];
    v_vol     text;
BEGIN
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 30 THEN
        RAISE EXCEPTION 'gate_protocol post-check: public.dot_iu_command_catalog has % row(s), expected 30', v_rows;
    END IF;

    SELECT array_agg(f) INTO v_missing FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'gate_protocol post-check: function(s) not resolvable: %', array_to_string(v_missing, ', ');
    END IF;

    -- Volatility (seed 002): open / close / watchdog v, verify_closed s.
    SELECT string_agg(p.proname || '=' || p.provolatile::text, ',' ORDER BY p.proname) INTO v_vol
      FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT to_regprocedure(f)::oid FROM unnest(c_functions) AS f);
    IF v_vol IS DISTINCT FROM 'fn_iu_gate_close=v,fn_iu_gate_open=v,fn_iu_gate_verify_closed=s,fn_iu_gate_watchdog=v' THEN
        RAISE EXCEPTION 'gate_protocol post-check: unexpected volatility %', v_vol;
    END IF;

    SELECT array_agg(p.proname) INTO v_missing
      FROM pg_catalog.pg_proc p
     WHERE p.oid IN (SELECT to_regprocedure(f)::oid FROM unnest(c_functions) AS f)
       AND p.prosecdef
       AND NOT coalesce('search_path=public, pg_temp' = ANY (p.proconfig), false);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'gate_protocol post-check: SECURITY DEFINER without search_path = public, pg_temp: %',
            array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(f) INTO v_missing
      FROM unnest(c_mutating) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'gate_protocol post-check: PUBLIC can still EXECUTE: %', array_to_string(v_missing, ', ');
    END IF;

    IF to_regclass('public.iu_gate_transition') IS NULL
       OR to_regclass('public.ix_iu_gate_transition_gate') IS NULL THEN
        RAISE EXCEPTION 'gate_protocol post-check: table public.iu_gate_transition or index ix_iu_gate_transition_gate missing';
    END IF;

    SELECT count(*) INTO v_rows
      FROM public.dot_iu_command_catalog c
     WHERE (c.command_name, c.category, c.mutating, c.reversible, c.target_functions) IN (
               ('dot_iu_gate_open', 'health', true, true, ARRAY['fn_iu_gate_open']),
               ('dot_iu_gate_close', 'health', true, true, ARRAY['fn_iu_gate_close']),
               ('dot_iu_gate_watchdog', 'health', true, true, ARRAY['fn_iu_gate_watchdog']),
               ('dot_iu_gate_verify_closed', 'read', false, true, ARRAY['fn_iu_gate_verify_closed']));
    IF v_rows <> 4 THEN
        RAISE EXCEPTION 'gate_protocol post-check: % of the 4 gate catalog rows present as registered, expected 4', v_rows;
    END IF;
END
$postcheck$;

SELECT 'gate_protocol_catalog' AS "check",
       count(*) AS catalog_rows,
       count(*) = 30 AS expected_30
  FROM public.dot_iu_command_catalog;

SELECT 'gate_protocol_new_rows' AS "check",
       string_agg(c.command_name || '|' || c.category || '|mut=' || c.mutating || '|rev=' || c.reversible,
                  ', ' ORDER BY c.command_name) AS rows_present
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN ('dot_iu_gate_open', 'dot_iu_gate_close',
                          'dot_iu_gate_watchdog', 'dot_iu_gate_verify_closed');

SELECT 'gate_protocol_functions' AS "check",
       string_agg(p.proname || '=' || p.provolatile::text, ', ' ORDER BY p.proname) AS volatility
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('fn_iu_gate_open', 'fn_iu_gate_close',
                     'fn_iu_gate_verify_closed', 'fn_iu_gate_watchdog');

SELECT 'gate_protocol_verify' AS "check",
       (v ->> 'all_safe')::boolean AS all_safe,
       (v ->> 'all_governed_closed')::boolean AS all_governed_closed,
       (v ->> 'never_flip_intact')::boolean AS never_flip_intact,
       (SELECT count(*) FROM public.iu_gate_transition) AS transition_rows
  FROM public.fn_iu_gate_verify_closed() AS v;
