-- least_privilege self-test: the one gate classification, a TTL that every check
-- enforces (watchdog or not), the governed entry point fn_dot_iu_execute (gates
-- before the call, bound arguments, a refused call undone, one ledger row with the
-- session user), the hardened ledger logger and the collection key CHECK —
-- exercised inside one transaction that always ends in ROLLBACK. Every DO block
-- RAISEs when its check fails.
-- Run: iucore selftest least_privilege   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/least_privilege.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Read committed: the dispatcher refuses any other level (its gate reads must be
-- fresh), so the counts below that production could move are this self-test's
-- own rows (its actor selftest_lp), never the table's total.
BEGIN;
SET transaction_isolation = 'read committed';

-- L0 the classification: every key of dot_config has exactly one class
SELECT k.class, count(*) AS gates, string_agg(k.gate_key, ', ' ORDER BY k.gate_key) AS gate_keys
  FROM public.iu_gate_class AS k
 GROUP BY k.class
 ORDER BY k.class;

-- L0 every dot_config key is classified, and every gate key any IU Core function body names is
-- a classified key (no function reads a gate that the classification does not know)
DO $l0$
DECLARE
    v_unclassified text[];
    v_unknown_reads text[];
BEGIN
    SELECT array_agg(c.key ORDER BY c.key) INTO v_unclassified
      FROM public.dot_config AS c
     WHERE NOT EXISTS (SELECT 1 FROM public.iu_gate_class AS k WHERE k.gate_key = c.key);
    SELECT array_agg(DISTINCT r.key ORDER BY r.key) INTO v_unknown_reads
      FROM pg_catalog.pg_proc AS p,
           LATERAL (SELECT m[1] AS key
                      FROM regexp_matches(p.prosrc, '''([a-z_]+([.][a-z_]+)+)''', 'g') AS m) AS r
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proname ~ '^fn_(iu|dot)_'
       AND r.key ~ '(enabled|routes)$'
       AND NOT EXISTS (SELECT 1 FROM public.iu_gate_class AS k WHERE k.gate_key = r.key);
    IF v_unclassified IS NOT NULL OR v_unknown_reads IS NOT NULL THEN
        RAISE EXCEPTION 'L0: unclassified dot_config keys %, gate keys read but not classified %',
            v_unclassified, v_unknown_reads;
    END IF;
    RAISE NOTICE 'L0 every dot_config key is classified; every gate key a function body names is classified';
END
$l0$;

-- L1 the operator-runtime and composer gates opened through the protocol (TTL 600 s)
CREATE TEMP TABLE selftest_lp (step text PRIMARY KEY, answer jsonb) ON COMMIT DROP;

INSERT INTO selftest_lp
SELECT 'L1 open ' || g, public.fn_iu_gate_open(g, gen_random_uuid(), 'selftest least_privilege', 'selftest_lp', 600)
  FROM unnest(ARRAY['iu_core.operator_runtime_enabled', 'iu_core.composer_enabled']) AS g;

SELECT k.key, public.fn_iu_gate_state(k.key) AS state, public.fn_iu_gate_is_open(k.key) AS is_open
  FROM unnest(ARRAY['iu_core.operator_runtime_enabled', 'iu_core.composer_enabled',
                    'iu_core.structure_ops_enabled', 'iu_core.routes_master_enabled',
                    'iu_core.vector_sync_enabled', 'no.such_key_enabled']) WITH ORDINALITY AS k (key, ord)
 ORDER BY k.ord;

-- L1 a value set by hand does not open a governable gate (fail closed: no protocol transition)
UPDATE public.dot_config SET value = 'true' WHERE key = 'iu_core.structure_ops_enabled';

SELECT public.fn_iu_gate_state('iu_core.structure_ops_enabled') AS state_after_hand_update,
       public.fn_iu_gate_is_open('iu_core.structure_ops_enabled') AS is_open;

-- L1 the composer open expires (back-dated in this transaction): no watchdog runs, yet every check
-- reads the gate shut — the functions' own, the verify, the dispatcher
UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 second'
 WHERE gate_key = 'iu_core.composer_enabled' AND action = 'open' AND actor = 'selftest_lp';

DO $l1$
DECLARE
    v_runs bigint := (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp');
    v_create jsonb := public.fn_iu_create('selftest-lp/expired', 'piece', 'Expired', 'selftest_lp');
    v_verify jsonb := public.fn_iu_gate_verify_closed();
    v_exec jsonb := public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply',
                                             '["selftest-lp/expired", "piece", "Expired", "selftest_lp"]',
                                             'selftest_lp');
BEGIN
    IF (SELECT value FROM public.dot_config WHERE key = 'iu_core.composer_enabled') IS DISTINCT FROM 'true'
       OR public.fn_iu_gate_is_open('iu_core.composer_enabled')
       OR public.fn_iu_gate_state('iu_core.composer_enabled') <> 'expired' THEN
        RAISE EXCEPTION 'L1: an expired open still reads open (or the value moved without a watchdog)';
    END IF;
    IF v_create ->> 'status' IS DISTINCT FROM 'refused' OR v_create ->> 'gate' <> 'iu_core.composer_enabled' THEN
        RAISE EXCEPTION 'L1: fn_iu_create under an expired gate answered %', v_create;
    END IF;
    IF (v_verify ->> 'all_governed_closed')::boolean  -- the operator-runtime gate is open, for real
       OR v_verify -> 'stale_open' <> '["iu_core.composer_enabled", "iu_core.structure_ops_enabled"]'::jsonb
       OR v_verify -> 'open' <> '["iu_core.operator_runtime_enabled"]'::jsonb
       OR v_verify ->> 'guidance' NOT LIKE '%watchdog%' THEN
        RAISE EXCEPTION 'L1: the verify answered %', v_verify;
    END IF;
    IF v_exec ->> 'status' IS DISTINCT FROM 'refused' OR v_exec -> 'closed_gates' <> '["iu_core.composer_enabled"]'
       OR v_exec -> 'answer' <> 'null' OR (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp') <> v_runs + 1
       OR EXISTS (SELECT 1 FROM public.information_unit WHERE canonical_address = 'selftest-lp/expired') THEN
        RAISE EXCEPTION 'L1: the dispatcher under an expired gate answered %', v_exec;
    END IF;
    INSERT INTO selftest_lp VALUES ('L1 verify', v_verify), ('L1 exec', v_exec);
    RAISE NOTICE 'L1 expired open: is_open false, fn_iu_create refused, the verify counts it shut (stale_open), the dispatcher refused before the call';
END
$l1$;

SELECT answer -> 'stale_open' AS stale_open, answer ->> 'next_action' AS next_action
  FROM selftest_lp WHERE step = 'L1 verify'
 ORDER BY step;

SELECT answer ->> 'status' AS status, answer ->> 'reason' AS reason, answer -> 'closed_gates' AS closed_gates,
       answer -> 'gate_snapshot' AS gate_snapshot
  FROM selftest_lp WHERE step = 'L1 exec'
 ORDER BY step;

-- L2 the dispatcher with both gates open: applied, one ledger row (md5 of the arguments, the
-- session user beside the claimed actor, no raw value)
INSERT INTO selftest_lp
SELECT 'L2 reopen', public.fn_iu_gate_open('iu_core.composer_enabled', gen_random_uuid(),
                                           'selftest least_privilege', 'selftest_lp', 600);

INSERT INTO selftest_lp
SELECT 'L2 clone', public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply',
                                            '["selftest-lp/piece-1", "piece", "Secret title q7", "selftest_lp"]',
                                            'selftest_lp');

SELECT a.answer ->> 'status' AS status, a.answer -> 'answer' ->> 'status' AS function_answer,
       r.run_mode, r.run_status, r.actor, r.session_user_name = session_user AS session_user_recorded,
       r.params_digest = md5(jsonb_build_object('command', 'dot_iu_clone_piece',
                                                'args', '["selftest-lp/piece-1", "piece", "Secret title q7", "selftest_lp"]'::jsonb)::text) AS digest_of_args,
       to_jsonb(r)::text LIKE '%Secret title q7%' AS raw_value_in_ledger,
       r.gate_snapshot, r.evidence
  FROM selftest_lp AS a
 INNER JOIN public.dot_iu_command_run AS r ON r.run_id = (a.answer ->> 'run_id')::uuid
 WHERE a.step = 'L2 clone'
 ORDER BY r.created_at;

-- L2 a refused answer is undone and logged once; an error too; plan logs without calling;
-- an unknown command is refused and never logged; verify runs read commands only
DO $l2$
DECLARE
    v_runs bigint := (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp');
    v_units bigint := (SELECT count(*) FROM public.information_unit WHERE created_by = 'selftest_lp');
    v_events bigint := (SELECT count(*) FROM public.event_outbox WHERE actor = 'selftest_lp' AND created_at >= now());
    v_dup jsonb := public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply',
                                            '["selftest-lp/piece-1", "piece", "Again", "selftest_lp"]', 'selftest_lp');
    v_piece uuid := (SELECT iu_id FROM public.information_unit WHERE canonical_address = 'selftest-lp/piece-1');
    v_escape jsonb;
    v_plan jsonb;
    v_unknown jsonb;
    v_verify jsonb;
    v_args jsonb;
BEGIN
    v_escape := public.fn_dot_iu_execute('dot_iu_create_file_from_pieces', 'apply',
        jsonb_build_array('selftest-lp/../../escaped', 'file', 'Escape', jsonb_build_array(v_piece), 'selftest_lp'),
        'selftest_lp');
    v_plan := public.fn_dot_iu_execute('dot_iu_retire_piece', 'plan',
        jsonb_build_array(v_piece, 'selftest', 'selftest_lp'), 'selftest_lp');
    v_unknown := public.fn_dot_iu_execute('dot_iu_no_such_command', 'apply', '[]', 'selftest_lp');
    v_verify := public.fn_dot_iu_execute('dot_iu_clone_piece', 'verify', '[]', 'selftest_lp');
    v_args := public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply', '[{"a": 1}, "piece", "T", "x"]', 'selftest_lp');

    IF v_dup ->> 'status' <> 'refused' OR v_dup -> 'answer' ->> 'status' <> 'duplicate' THEN
        RAISE EXCEPTION 'L2: a duplicate clone answered %', v_dup;
    END IF;
    IF v_escape ->> 'status' <> 'refused' OR v_escape -> 'answer' ->> 'sqlstate' <> '23514'
       OR EXISTS (SELECT 1 FROM public.iu_collection WHERE collection_key LIKE 'selftest-lp/%') THEN
        RAISE EXCEPTION 'L2: a collection key leaving its root answered %', v_escape;
    END IF;
    IF v_plan ->> 'status' <> 'planned'
       OR v_plan -> 'closed_gates' <> '["iu_core.structure_ops_enabled"]'
       OR (SELECT lifecycle_status FROM public.information_unit WHERE iu_id = v_piece) <> 'active' THEN
        RAISE EXCEPTION 'L2: plan answered % (or called the function)', v_plan;
    END IF;
    IF v_unknown ->> 'status' <> 'refused' OR v_unknown ->> 'reason' <> 'unknown_command' OR v_unknown ? 'run_id' THEN
        RAISE EXCEPTION 'L2: an unknown command answered %', v_unknown;
    END IF;
    IF v_verify ->> 'reason' <> 'verify_mutating' OR v_args ->> 'reason' <> 'invalid_args' THEN
        RAISE EXCEPTION 'L2: verify of a mutator answered %, an object for a text argument %', v_verify, v_args;
    END IF;
    IF (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp') <> v_runs + 5
       OR (SELECT count(*) FROM public.information_unit WHERE created_by = 'selftest_lp') <> v_units
       OR (SELECT count(*) FROM public.event_outbox WHERE actor = 'selftest_lp' AND created_at >= now()) <> v_events THEN
        RAISE EXCEPTION 'L2: 5 logged calls (duplicate, escape, plan, verify, args; unknown not logged) wrote % ledger rows, % units, % events',
            (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp') - v_runs,
            (SELECT count(*) FROM public.information_unit WHERE created_by = 'selftest_lp') - v_units,
            (SELECT count(*) FROM public.event_outbox WHERE actor = 'selftest_lp' AND created_at >= now()) - v_events;
    END IF;
    INSERT INTO selftest_lp VALUES ('L2 dup', v_dup), ('L2 escape', v_escape), ('L2 plan', v_plan),
                                   ('L2 unknown', v_unknown), ('L2 verify', v_verify), ('L2 args', v_args);
    RAISE NOTICE 'L2 refusals undone and logged once each; the unknown command not logged';
END
$l2$;

SELECT a.step, a.answer ->> 'status' AS status,
       coalesce(a.answer ->> 'reason', a.answer -> 'answer' ->> 'status') AS why,
       r.run_mode, r.run_status, r.evidence
  FROM selftest_lp AS a
  LEFT JOIN public.dot_iu_command_run AS r ON r.run_id = (a.answer ->> 'run_id')::uuid
 WHERE a.step IN ('L2 dup', 'L2 escape', 'L2 plan', 'L2 unknown', 'L2 verify', 'L2 args')
 ORDER BY a.step;

-- L3 the logger refuses a NULL digest, a raw value in the evidence, an unclassified gate in the
-- snapshot and a category that is not the catalog's (23514 each); the ledger is unchanged
DO $l3$
DECLARE
    v_runs bigint := (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp');
    v_case record;
    v_state text;
    v_got text := '';
BEGIN
    FOR v_case IN
        SELECT * FROM (VALUES
            ('null digest', 'health', NULL::text, '{}'::jsonb, '{}'::jsonb),
            ('raw digest', 'health', 'collection_key=secret', '{}', '{}'),
            ('raw evidence', 'health', md5('x'), '{}', '{"title": "Secret title q7"}'),
            ('free text reason', 'health', md5('x'), '{}', '{"reason": "Secret title q7"}'),
            ('false snapshot', 'health', md5('x'), '{"my.private_gate": "true"}', '{}'),
            ('false category', 'collection', md5('x'), '{}', '{}')) AS c (name, category, digest, snap, ev)
    LOOP
        v_state := NULL;
        BEGIN
            PERFORM public.fn_dot_iu_command_log('dot_iu_healthcheck', v_case.category, 'verify', 'verified', false,
                                                 v_case.digest, v_case.snap, v_case.ev, 'selftest_lp');
            v_state := 'logged';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
        END;
        IF v_state IS DISTINCT FROM '23514' THEN
            RAISE EXCEPTION 'L3: % was %', v_case.name, v_state;
        END IF;
        v_got := v_got || format(' %s: %s;', v_case.name, v_state);
    END LOOP;
    IF (SELECT count(*) FROM public.dot_iu_command_run WHERE actor = 'selftest_lp') <> v_runs THEN
        RAISE EXCEPTION 'L3: a refused log call left a ledger row';
    END IF;
    RAISE NOTICE 'L3 refused_as_expected:%', v_got;
END
$l3$;

-- L4 who may call what: the dispatcher and the logger are SECURITY DEFINER with search_path
-- pg_catalog, pg_temp (never public, which Directus shares); PUBLIC executes no IU Core function
-- that writes
SELECT p.proname, p.prosecdef AS security_definer, p.proconfig AS settings,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee = 0) AS public_execute
  FROM pg_catalog.pg_proc AS p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('fn_dot_iu_execute', 'fn_dot_iu_command_log')
 ORDER BY p.proname;

SELECT count(*) AS writers, count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
            WHERE a.grantee = 0)) AS executable_by_public
  FROM pg_catalog.pg_proc AS p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname ~ '^fn_(iu|dot)_'
   AND p.provolatile = 'v' AND p.prorettype <> 'trigger'::regtype;

-- L5 a role that may CREATE in public (Directus's own does) plants a better match for a built-in
-- than pg_catalog's: cardinality(text[]) against cardinality(anyarray). Nothing inside IU Core calls
-- it — the dispatcher, the logger, the gate functions and a composer mutator run as before
CREATE FUNCTION public.cardinality(p_array text[])
RETURNS integer
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE EXCEPTION 'L5: the look-alike public.cardinality(text[]) was called (with % element(s))',
        pg_catalog.cardinality(p_array);
END
$fn$;

DO $l5$
DECLARE
    v_open jsonb := public.fn_dot_iu_execute(
        'dot_iu_gate_open', 'apply',
        jsonb_build_array('iu_core.composer_enabled', gen_random_uuid(), 'selftest L5', 'selftest_lp', 60),
        'selftest_lp');
    v_clone jsonb := public.fn_dot_iu_execute('dot_iu_clone_piece', 'apply',
                                              '["selftest-lp/l5", "piece", "L5", "selftest_lp"]', 'selftest_lp');
    v_refused jsonb := public.fn_dot_iu_execute('dot_iu_clone_piece', 'verify', '[]', 'selftest_lp');
    v_verify jsonb := public.fn_dot_iu_execute('dot_iu_gate_verify_closed', 'verify', '[null]', 'selftest_lp');
    v_close jsonb := public.fn_dot_iu_execute(
        'dot_iu_gate_close', 'apply', '["iu_core.composer_enabled", "selftest L5", "selftest_lp"]', 'selftest_lp');
BEGIN
    IF v_open ->> 'status' <> 'applied' OR v_clone ->> 'status' <> 'applied'
       OR v_refused ->> 'reason' <> 'verify_mutating' OR v_verify ->> 'status' <> 'verified'
       OR v_close ->> 'status' <> 'applied' THEN
        RAISE EXCEPTION 'L5: open %, clone %, refusal %, verify %, close %',
            v_open ->> 'status', v_clone ->> 'status', v_refused ->> 'reason', v_verify ->> 'status',
            v_close ->> 'status';
    END IF;
    RAISE NOTICE 'L5 the look-alike in public was never called: gate open, clone, a refusal, verify, gate close ran';
END
$l5$;

ROLLBACK;
