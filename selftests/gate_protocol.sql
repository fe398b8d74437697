-- gate_protocol self-test: seed 002 A5, the bounded gate protocol's self-test
-- T0–T9, exercised inside one transaction that always ends in ROLLBACK (the
-- runner's last line is the seed's POST: nothing persisted). Every DO block
-- RAISEs when its check fails; every refusal is checked for its SQLSTATE
-- (42501 never-flip / not governable, 23514 approval id / TTL).
-- Run: iucore selftest gate_protocol   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/gate_protocol.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- T0 baseline: all_safe = true (7 governable gates and 2 never-flip gates all 'false').
-- The 9 of seed 002 are printed, in its order; from revision least_privilege on the verify also
-- holds 033's auto_instantiate_enabled (governable there), checked in the DO block below.
CREATE TEMP VIEW selftest_gate_seed002 AS
SELECT s.key, s.ord
  FROM unnest(ARRAY['iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
                    'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
                    'queue.job_substrate.enabled', 'queue.dlq.replay_enabled',
                    'iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled'])
       WITH ORDINALITY AS s (key, ord);

SELECT (v ->> 'all_safe')::boolean AS all_safe,
       (v ->> 'all_governed_closed')::boolean AS all_governed_closed,
       (v ->> 'never_flip_intact')::boolean AS never_flip_intact,
       (SELECT count(*) FROM jsonb_array_elements(v -> 'gates') AS g
         WHERE g ->> 'key' IN (SELECT sg.key FROM selftest_gate_seed002 AS sg)) AS gate_count
  FROM public.fn_iu_gate_verify_closed() AS v;

SELECT x.g ->> 'key' AS gate_key, x.g ->> 'class' AS class, x.g ->> 'value' AS value
  FROM public.fn_iu_gate_verify_closed() AS v, jsonb_array_elements(v -> 'gates') AS x (g)
 INNER JOIN selftest_gate_seed002 AS sg ON sg.key = x.g ->> 'key'
 ORDER BY sg.ord;

DO $t0$
DECLARE
    v jsonb := public.fn_iu_gate_verify_closed();
    v_lp boolean := to_regclass('public.iu_gate_class') IS NOT NULL;
BEGIN
    IF (v ->> 'gate_count')::int IS DISTINCT FROM (CASE WHEN v_lp THEN 10 ELSE 9 END)
       OR (v_lp AND NOT (v -> 'gates') @> '[{"key": "iu_core.auto_instantiate_enabled", "class": "governable"}]') THEN
        RAISE EXCEPTION 'T0: the verify holds % gate(s): %', v ->> 'gate_count', v -> 'gates';
    END IF;
    RAISE NOTICE 'T0 the verify holds the 9 gates of seed 002 (and 033''s auto_instantiate_enabled from least_privilege on)';
END
$t0$;

-- T0 the answers of the protocol calls below, kept for the evidence SELECTs
CREATE TEMP TABLE selftest_gate_answers (step text PRIMARY KEY, answer jsonb NOT NULL) ON COMMIT DROP;

-- T1 open composer (approved): status = opened
INSERT INTO selftest_gate_answers
SELECT 'T1', public.fn_iu_gate_open('iu_core.composer_enabled', gen_random_uuid(),
                                    'selftest gate_protocol T1', 'selftest_gate', 600);

SELECT answer ->> 'status' AS status, answer ->> 'gate_key' AS gate_key,
       (answer ->> 'prev_value') || ' -> ' || (answer ->> 'new_value') AS transition,
       (answer ->> 'ttl_seconds')::int AS ttl_seconds
  FROM selftest_gate_answers WHERE step = 'T1'
 ORDER BY step;

-- T1 the gate is 'true'; one 'open' transition (approval id, TTL, expiry = now() + TTL) whose
-- run_id is the dot_iu_gate_open ledger row (md5 params digest, no raw parameters)
DO $t1$
DECLARE
    a jsonb := (SELECT answer FROM selftest_gate_answers WHERE step = 'T1');
    t record;
    r record;
BEGIN
    IF (SELECT value FROM public.dot_config WHERE key = 'iu_core.composer_enabled') IS DISTINCT FROM 'true' THEN
        RAISE EXCEPTION 'T1: iu_core.composer_enabled is not true after the open: %', a;
    END IF;
    SELECT * INTO t FROM public.iu_gate_transition WHERE transition_id = (a ->> 'transition_id')::uuid;
    IF t.action IS DISTINCT FROM 'open' OR t.gate_key <> 'iu_core.composer_enabled'
       OR t.prev_value <> 'false' OR t.new_value <> 'true'
       OR t.approval_id::text IS DISTINCT FROM a ->> 'approval_id' OR t.approval_id IS NULL
       OR t.ttl_seconds <> 600 OR t.expires_at <> now() + interval '600 seconds'
       OR t.actor <> 'selftest_gate' OR t.reason <> 'selftest gate_protocol T1'
       OR t.run_id::text IS DISTINCT FROM a ->> 'run_id' THEN
        RAISE EXCEPTION 'T1: the open transition is % (answer %)', to_jsonb(t), a;
    END IF;
    SELECT * INTO r FROM public.dot_iu_command_run WHERE run_id = t.run_id;
    IF r.command_name IS DISTINCT FROM 'dot_iu_gate_open' OR r.category <> 'health' OR r.run_mode <> 'apply'
       OR r.run_status <> 'applied' OR NOT r.mutating OR r.params_digest !~ '^[0-9a-f]{32}$'
       OR r.gate_snapshot <> '{"iu_core.composer_enabled": "false"}'::jsonb
       OR r.evidence ->> 'transition_id' IS DISTINCT FROM t.transition_id::text
       OR to_jsonb(r)::text LIKE '%' || t.approval_id::text || '%'
       OR to_jsonb(r)::text LIKE '%selftest gate_protocol T1%' THEN
        RAISE EXCEPTION 'T1: the ledger row of the open is %', to_jsonb(r);
    END IF;
    RAISE NOTICE 'T1 % %: one open transition (approval id, ttl 600, expires now() + 600 s) linked to its dot_iu_gate_open ledger row (md5 digest only)',
        a ->> 'status', a ->> 'gate_key';
END
$t1$;

-- T2 after open: all_governed_closed = false | never_flip_intact = true
SELECT (v ->> 'all_governed_closed')::boolean AS all_governed_closed,
       (v ->> 'never_flip_intact')::boolean AS never_flip_intact,
       (v ->> 'all_safe')::boolean AS all_safe
  FROM public.fn_iu_gate_verify_closed() AS v;

-- T3 never-flip (allow_no_review_decision): NOTICE refused_as_expected | still = false
DO $t3$
DECLARE
    v_transitions bigint := (SELECT count(*) FROM public.iu_gate_transition);
    v_runs bigint := (SELECT count(*) FROM public.dot_iu_command_run);
    v_state text;
    v_msg text;
BEGIN
    BEGIN
        PERFORM public.fn_iu_gate_open('iu_enact.allow_no_review_decision', gen_random_uuid(),
                                       'selftest gate_protocol T3', 'selftest_gate', 600);
        v_state := 'opened';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_state IS DISTINCT FROM '42501' OR v_msg NOT LIKE '%iu_enact.allow_no_review_decision is NEVER-FLIP%' THEN
        RAISE EXCEPTION 'T3: expected a 42501 NEVER-FLIP refusal, got % %', v_state, v_msg;
    END IF;
    IF (SELECT count(*) FROM public.iu_gate_transition) <> v_transitions
       OR (SELECT count(*) FROM public.dot_iu_command_run) <> v_runs THEN
        RAISE EXCEPTION 'T3: the refused open left a transition or a ledger row';
    END IF;
    RAISE NOTICE 'T3 refused_as_expected (%): %', v_state, v_msg;
END
$t3$;

SELECT key, value AS still FROM public.dot_config WHERE key = 'iu_enact.allow_no_review_decision' ORDER BY key;

-- T3b never-flip (vector_sync_enabled): NOTICE refused_as_expected | still = false
DO $t3b$
DECLARE
    v_transitions bigint := (SELECT count(*) FROM public.iu_gate_transition);
    v_state text;
    v_msg text;
BEGIN
    BEGIN
        PERFORM public.fn_iu_gate_open('iu_core.vector_sync_enabled', gen_random_uuid(),
                                       'selftest gate_protocol T3b', 'selftest_gate', 600);
        v_state := 'opened';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_state IS DISTINCT FROM '42501' OR v_msg NOT LIKE '%iu_core.vector_sync_enabled is NEVER-FLIP%' THEN
        RAISE EXCEPTION 'T3b: expected a 42501 NEVER-FLIP refusal, got % %', v_state, v_msg;
    END IF;
    IF (SELECT count(*) FROM public.iu_gate_transition) <> v_transitions THEN
        RAISE EXCEPTION 'T3b: the refused open left a transition';
    END IF;
    RAISE NOTICE 'T3b refused_as_expected (%): %', v_state, v_msg;
END
$t3b$;

SELECT key, value AS still FROM public.dot_config WHERE key = 'iu_core.vector_sync_enabled' ORDER BY key;

-- T4 non-governable (routes_master_enabled): NOTICE refused_as_expected; its value unchanged
DO $t4$
DECLARE
    v_before text := (SELECT value FROM public.dot_config WHERE key = 'iu_core.routes_master_enabled');
    v_transitions bigint := (SELECT count(*) FROM public.iu_gate_transition);
    v_state text;
    v_msg text;
BEGIN
    BEGIN
        PERFORM public.fn_iu_gate_open('iu_core.routes_master_enabled', gen_random_uuid(),
                                       'selftest gate_protocol T4', 'selftest_gate', 600);
        v_state := 'opened';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_state IS DISTINCT FROM '42501'
       OR v_msg NOT LIKE '%iu_core.routes_master_enabled is not a governable runtime gate (fail-closed)%' THEN
        RAISE EXCEPTION 'T4: expected a 42501 not-governable refusal, got % %', v_state, v_msg;
    END IF;
    IF (SELECT value FROM public.dot_config WHERE key = 'iu_core.routes_master_enabled') IS DISTINCT FROM v_before
       OR (SELECT count(*) FROM public.iu_gate_transition) <> v_transitions THEN
        RAISE EXCEPTION 'T4: the refused open changed the gate or left a transition';
    END IF;
    RAISE NOTICE 'T4 refused_as_expected (%): %', v_state, v_msg;
END
$t4$;

-- T5 null approval_id (structure_ops): NOTICE refused_as_expected; still false
DO $t5$
DECLARE
    v_transitions bigint := (SELECT count(*) FROM public.iu_gate_transition);
    v_state text;
    v_msg text;
BEGIN
    BEGIN
        PERFORM public.fn_iu_gate_open('iu_core.structure_ops_enabled', NULL,
                                       'selftest gate_protocol T5', 'selftest_gate', 600);
        v_state := 'opened';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_state IS DISTINCT FROM '23514' OR v_msg NOT LIKE '%approval_id required%iu_core.structure_ops_enabled%' THEN
        RAISE EXCEPTION 'T5: expected a 23514 approval_id refusal, got % %', v_state, v_msg;
    END IF;
    IF (SELECT value FROM public.dot_config WHERE key = 'iu_core.structure_ops_enabled') IS DISTINCT FROM 'false'
       OR (SELECT count(*) FROM public.iu_gate_transition) <> v_transitions THEN
        RAISE EXCEPTION 'T5: the refused open changed the gate or left a transition';
    END IF;
    RAISE NOTICE 'T5 refused_as_expected (%): %', v_state, v_msg;
END
$t5$;

-- T5b a TTL outside (0, 3600] s (0, 3601, NULL) is refused too (23514); still false
DO $t5b$
DECLARE
    v_ttl integer;
    v_state text;
    v_msg text;
    v_got text := '';
BEGIN
    FOREACH v_ttl IN ARRAY ARRAY[0, 3601, NULL] LOOP
        v_state := NULL;
        v_msg := NULL;
        BEGIN
            PERFORM public.fn_iu_gate_open('iu_core.structure_ops_enabled', gen_random_uuid(),
                                           'selftest gate_protocol T5b', 'selftest_gate', v_ttl);
            v_state := 'opened';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        END;
        IF v_state IS DISTINCT FROM '23514' OR v_msg NOT LIKE '%ttl_seconds must be in (0, 3600]%' THEN
            RAISE EXCEPTION 'T5b: ttl % — expected a 23514 TTL refusal, got % %', coalesce(v_ttl::text, 'NULL'), v_state, v_msg;
        END IF;
        v_got := v_got || format(' ttl %s: %s;', coalesce(v_ttl::text, 'NULL'), v_state);
    END LOOP;
    IF (SELECT value FROM public.dot_config WHERE key = 'iu_core.structure_ops_enabled') IS DISTINCT FROM 'false' THEN
        RAISE EXCEPTION 'T5b: a refused open changed iu_core.structure_ops_enabled';
    END IF;
    RAISE NOTICE 'T5b refused_as_expected:%', v_got;
END
$t5b$;

-- T6 close composer: status = closed
INSERT INTO selftest_gate_answers
SELECT 'T6', public.fn_iu_gate_close('iu_core.composer_enabled', 'selftest gate_protocol T6', 'selftest_gate');

SELECT answer ->> 'status' AS status, answer ->> 'gate_key' AS gate_key,
       (answer ->> 'prev_value') || ' -> ' || (answer ->> 'new_value') AS transition,
       (answer ->> 'was_open')::boolean AS was_open
  FROM selftest_gate_answers WHERE step = 'T6'
 ORDER BY step;

-- T6 the gate is 'false'; one close transition whose run_id is its dot_iu_gate_close ledger row
DO $t6$
DECLARE
    a jsonb := (SELECT answer FROM selftest_gate_answers WHERE step = 'T6');
    t record;
BEGIN
    SELECT * INTO t FROM public.iu_gate_transition WHERE transition_id = (a ->> 'transition_id')::uuid;
    IF (SELECT value FROM public.dot_config WHERE key = 'iu_core.composer_enabled') IS DISTINCT FROM 'false'
       OR t.action IS DISTINCT FROM 'close' OR t.prev_value <> 'true' OR t.new_value <> 'false'
       OR t.run_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_run r
                       WHERE r.run_id = t.run_id AND r.command_name = 'dot_iu_gate_close'
                         AND r.run_mode = 'apply' AND r.run_status = 'applied') THEN
        RAISE EXCEPTION 'T6: the close left % (answer %)', to_jsonb(t), a;
    END IF;
    RAISE NOTICE 'T6 % %: gate false, one close transition linked to its dot_iu_gate_close ledger row', a ->> 'status', a ->> 'gate_key';
END
$t6$;

-- T7 open delivery (approved, TTL 60 s); a watchdog sweep now closes nothing (the open has not expired)
INSERT INTO selftest_gate_answers
SELECT 'T7 open', public.fn_iu_gate_open('iu_core.delivery_enabled', gen_random_uuid(),
                                         'selftest gate_protocol T7', 'selftest_gate', 60);

DO $t7$
DECLARE
    w jsonb := public.fn_iu_gate_watchdog('selftest_gate');
BEGIN
    IF (SELECT answer ->> 'status' FROM selftest_gate_answers WHERE step = 'T7 open') IS DISTINCT FROM 'opened'
       OR w ->> 'status' IS DISTINCT FROM 'ok' OR (w ->> 'closed_count')::int IS DISTINCT FROM 0
       OR (SELECT value FROM public.dot_config WHERE key = 'iu_core.delivery_enabled') IS DISTINCT FROM 'true'
       OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_run r
                       WHERE r.run_id = (w ->> 'run_id')::uuid AND r.command_name = 'dot_iu_gate_watchdog'
                         AND r.run_mode = 'verify' AND r.run_status = 'verified') THEN
        RAISE EXCEPTION 'T7: before expiry the watchdog answered %', w;
    END IF;
    RAISE NOTICE 'T7 delivery opened; watchdog before expiry: closed_count = %, delivery still true, the sweep audited as a verify run',
        w ->> 'closed_count';
END
$t7$;

-- T7 back-date the expiry of that open
UPDATE public.iu_gate_transition SET expires_at = now() - interval '1 second'
 WHERE transition_id = (SELECT (answer ->> 'transition_id')::uuid FROM selftest_gate_answers WHERE step = 'T7 open');

-- T7 watchdog: T7-before delivery = true | T7-watchdog closed_count = 1 | T7-after delivery = false
DO $t7$
DECLARE
    v_before text := (SELECT value FROM public.dot_config WHERE key = 'iu_core.delivery_enabled');
    w jsonb := public.fn_iu_gate_watchdog('selftest_gate');
    v_after text := (SELECT value FROM public.dot_config WHERE key = 'iu_core.delivery_enabled');
BEGIN
    IF v_before IS DISTINCT FROM 'true' OR (w ->> 'closed_count')::int IS DISTINCT FROM 1
       OR w -> 'closed' -> 0 ->> 'gate_key' IS DISTINCT FROM 'iu_core.delivery_enabled'
       OR v_after IS DISTINCT FROM 'false' THEN
        RAISE EXCEPTION 'T7: before %, watchdog %, after %', v_before, w, v_after;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.iu_gate_transition t
                     JOIN public.dot_iu_command_run r ON r.run_id = t.run_id
                    WHERE t.transition_id = (w -> 'closed' -> 0 ->> 'transition_id')::uuid
                      AND t.action = 'watchdog_close' AND r.command_name = 'dot_iu_gate_watchdog'
                      AND r.run_mode = 'apply' AND r.run_status = 'applied') THEN
        RAISE EXCEPTION 'T7: the watchdog close has no watchdog_close transition linked to its ledger row: %', w;
    END IF;
    INSERT INTO selftest_gate_answers VALUES ('T7 watchdog', w);
    RAISE NOTICE 'T7-before delivery = % | T7-watchdog closed_count = % | T7-after delivery = %',
        v_before, w ->> 'closed_count', v_after;
END
$t7$;

-- T7 what the watchdog closed, and why
SELECT c ->> 'gate_key' AS gate_key, c ->> 'reason' AS reason
  FROM selftest_gate_answers a, jsonb_array_elements(a.answer -> 'closed') AS c
 WHERE a.step = 'T7 watchdog'
 ORDER BY 1;

-- T8 final verify: all_safe = true
SELECT (v ->> 'all_safe')::boolean AS all_safe,
       (v ->> 'all_governed_closed')::boolean AS all_governed_closed,
       (v ->> 'never_flip_intact')::boolean AS never_flip_intact
  FROM public.fn_iu_gate_verify_closed() AS v;

-- T9 ledger during test: the four transitions, in order
SELECT t.gate_key, t.action, t.prev_value || ' -> ' || t.new_value AS transition
  FROM public.iu_gate_transition t
 WHERE t.actor = 'selftest_gate' AND t.created_at >= now()
 ORDER BY t.created_at, t.transition_id;

-- T9 and the run ledger: one dot_iu_gate_* row per call, its gate snapshot taken before the call
-- (the idle sweep is a verify run over the 7 governable gates of seed 002; from least_privilege
-- on 033's auto_instantiate_enabled is swept too, and left out of the count here)
SELECT r.command_name, r.run_mode, r.run_status,
       (SELECT count(*) FROM jsonb_object_keys(r.gate_snapshot) AS k (key)
         WHERE k.key <> 'iu_core.auto_instantiate_enabled') AS gates_in_snapshot,
       coalesce((SELECT string_agg(s.k, ', ' ORDER BY s.k) FROM jsonb_each_text(r.gate_snapshot) AS s (k, v)
                  WHERE s.v = 'true'), '-') AS open_in_snapshot
  FROM public.dot_iu_command_run r
 WHERE r.actor = 'selftest_gate' AND r.created_at >= now()
 ORDER BY r.created_at, r.run_id;

-- T9 every transition's run_id is a ledger row whose evidence names that transition
DO $t9$
DECLARE
    n_transitions bigint;
    n_linked bigint;
BEGIN
    SELECT count(*), count(r.run_id) FILTER (WHERE r.evidence ->> 'transition_id' = t.transition_id::text
                                                  AND r.actor = t.actor)
      INTO n_transitions, n_linked
      FROM public.iu_gate_transition t
      LEFT JOIN public.dot_iu_command_run r ON r.run_id = t.run_id
     WHERE t.actor = 'selftest_gate' AND t.created_at >= now();
    IF n_transitions <> 4 OR n_linked <> 4 THEN
        RAISE EXCEPTION 'T9: % transition(s), % linked to the ledger row that names them', n_transitions, n_linked;
    END IF;
    RAISE NOTICE 'T9 4 transitions, each linked to the ledger row that names it';
END
$t9$;

ROLLBACK;
