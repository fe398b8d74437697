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
\ir functions/gate_protocol/fn_iu_gate_open.sql

-- -----------------------------------------------------------------------------
-- 3. fn_iu_gate_close: forces 'false' for governable and never-flip gates
-- -----------------------------------------------------------------------------
\ir functions/gate_protocol/fn_iu_gate_close.sql

-- -----------------------------------------------------------------------------
-- 4. fn_iu_gate_verify_closed: the 9-gate verify (read-only, fail-closed)
-- -----------------------------------------------------------------------------
\ir functions/gate_protocol/fn_iu_gate_verify_closed.sql

-- -----------------------------------------------------------------------------
-- 5. fn_iu_gate_watchdog: close every governable gate whose open has expired
-- -----------------------------------------------------------------------------
-- Each gate it closes gets one 'watchdog_close' transition and one
-- dot_iu_gate_watchdog ledger row (the transition's run_id); a sweep that
-- closes nothing writes one 'verify' ledger row, so every call is audited.
\ir functions/gate_protocol/fn_iu_gate_watchdog.sql

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
