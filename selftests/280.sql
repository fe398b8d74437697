-- 280 self-test: the operator-runtime catalog seed (seed 004 "R280"), exercised through the
-- very files that run — migrations/sql/280.sql, the seed it includes
-- (migrations/sql/data/280/dot_iu_command_catalog.sql) and rollbacks/280.sql, included here
-- with psql's \ir, never copied — inside one transaction that always ends in ROLLBACK:
-- the idempotent re-seed (INSERT 0 0), the migration on 017's empty catalog (the 24 rows,
-- equal column for column to the live ones), the fail-closed rollback (24 → 0) and the seed
-- again (0 → 24), every target function resolvable with the registry's signature, and the
-- fail-closed ledger logger. Every DO block RAISEs when its check fails.
-- The database may be at 280 or later (034 and gate_protocol add catalog rows): T2 sets the
-- ledger and the catalog aside in this transaction before anything is counted or printed,
-- so the transcript is the same at every revision. The refusal of the rollback while the
-- ledger references a command is a refusal (an error): tests/test_rev_280_to_gate.py runs it.
-- Run: iucore selftest 280   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/280.sql)
--   (by hand, pin the search_path as iucore does: PGOPTIONS='-c search_path=pg_catalog,pg_temp'; docs/security.md)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- T0 the live catalog (every revision's rows), kept to compare with; every target function of
-- every row resolves
\ir lib/catalog_live.sql

-- T1 seed 004: 280's seed, the very INSERT … ON CONFLICT DO NOTHING 280.sql includes, re-run
-- against the live catalog inserts 0 rows
\ir ../migrations/sql/data/280/dot_iu_command_catalog.sql

-- T2 the catalog as 017 left it, in this transaction only: no ledger run, no catalog row
\ir lib/catalog_set_aside.sql

-- T2 migrations/sql/280.sql as it runs: its preflight, its seed, its post-check
\ir ../migrations/sql/280.sql

-- T2 the 24 rows 280 seeded, as the registry (src/iu_core/registry.py, revision "280") has them
SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions
  FROM public.dot_iu_command_catalog c
 ORDER BY c.command_name;

CREATE TEMP TABLE selftest280_rows ON COMMIT DROP AS
SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
  FROM public.dot_iu_command_catalog c;

-- T2 the live catalog holds exactly these 24 rows, column for column (description included); its
-- other rows, if any, are later revisions' dot_iu_* commands
DO $t2$
DECLARE
    v_missing bigint;
    v_others  text[];
BEGIN
    SELECT count(*) INTO v_missing FROM (
        SELECT r.command_name, r.category, r.mutating, r.reversible, r.target_functions, r.description
          FROM selftest280_rows r
        EXCEPT
        SELECT l.command_name, l.category, l.mutating, l.reversible, l.target_functions, l.description
          FROM selftest_catalog_live l) AS d;
    SELECT array_agg(l.command_name ORDER BY l.command_name) INTO v_others
      FROM selftest_catalog_live l
     WHERE l.command_name NOT IN (SELECT r.command_name FROM selftest280_rows r);
    IF v_missing <> 0 THEN
        RAISE EXCEPTION 'T2: % of the seeded rows are not in the live catalog as seeded', v_missing;
    END IF;
    IF v_others IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(v_others) AS o WHERE o NOT LIKE 'dot\_iu\_%') THEN
        RAISE EXCEPTION 'T2: a live catalog row is named outside dot_iu_*: %', v_others;
    END IF;
    RAISE NOTICE 'T2 the live catalog holds the 24 seeded rows exactly (name, category, mutating, reversible, targets, description)';
END
$t2$;

-- T3 rollbacks/280.sql as it runs: its guards pass (no later revision's row, no ledger run), its
-- body removes the 24 rows, its assert proves the catalog empty
\ir ../rollbacks/280.sql

-- T3 seed 004's re-apply: the seed on the emptied catalog inserts all 24 again, unchanged
\ir ../migrations/sql/data/280/dot_iu_command_catalog.sql

DO $t3$
DECLARE
    v_differ bigint;
BEGIN
    SELECT count(*) INTO v_differ FROM (
        (SELECT r.command_name, r.category, r.mutating, r.reversible, r.target_functions, r.description
           FROM selftest280_rows r
         EXCEPT
         SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
           FROM public.dot_iu_command_catalog c)
        UNION ALL
        (SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
           FROM public.dot_iu_command_catalog c
         EXCEPT
         SELECT r.command_name, r.category, r.mutating, r.reversible, r.target_functions, r.description
           FROM selftest280_rows r)) AS d;
    IF v_differ <> 0 THEN
        RAISE EXCEPTION 'T3: after rollback and re-seed % row(s) differ from the first seed', v_differ;
    END IF;
    RAISE NOTICE 'T3 rolled back and re-seeded: the same 24 rows, column for column';
END
$t3$;

-- T4 every target function of the 24 resolves, with the registry's parameter types
SELECT 'public.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS target_function,
       format_type(p.prorettype, NULL) AS returns,
       (SELECT count(*) FROM selftest280_rows r WHERE p.proname = ANY (r.target_functions)) AS commands
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN (SELECT DISTINCT unnest(r.target_functions) FROM selftest280_rows r)
 ORDER BY 1;

-- T4 each of the 24 commands' targets resolves to exactly the registry signature
DO $t4$
DECLARE
    v_wrong text[];
BEGIN
    SELECT array_agg(r.command_name || ' -> ' || r.signature ORDER BY r.command_name) INTO v_wrong
      FROM (VALUES
        ('dot_iu_healthcheck', 'public.fn_iu_healthcheck()'),
        ('dot_iu_create_file_from_pieces', 'public.fn_iu_compose(text,text,text,uuid[],text,text[])'),
        ('dot_iu_add_piece', 'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)'),
        ('dot_iu_remove_piece', 'public.fn_iu_collection_remove_piece(uuid,uuid,text)'),
        ('dot_iu_reorder_piece', 'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)'),
        ('dot_iu_validate_collection', 'public.fn_iu_collection_validate(uuid)'),
        ('dot_iu_checkpoint_collection', 'public.fn_iu_collection_checkpoint(uuid,text)'),
        ('dot_iu_render_collection', 'public.fn_iu_collection_render(uuid)'),
        ('dot_iu_retire_piece', 'public.fn_iu_retire(uuid,text,text)'),
        ('dot_iu_soft_delete_piece', 'public.fn_iu_piece_soft_delete(uuid,text,text)'),
        ('dot_iu_restore_piece', 'public.fn_iu_piece_restore(uuid,text)'),
        ('dot_iu_clone_piece', 'public.fn_iu_create(text,text,text,text,text)'),
        ('dot_iu_workflow_from_steps', 'public.fn_iu_workflow_from_steps(text,text,jsonb,text)'),
        ('dot_iu_refresh_metadata_axes', 'public.fn_iu_refresh_metadata_axes(uuid,text)'),
        ('dot_iu_split_piece', 'public.fn_iu_piece_split(uuid,jsonb,uuid,text,boolean)'),
        ('dot_iu_merge_pieces', 'public.fn_iu_piece_merge(uuid[],text,uuid,text,boolean)'),
        ('dot_iu_route_worker_run', 'public.fn_iu_route_worker_run(text,integer)'),
        ('dot_iu_command_registry', 'public.fn_iu_observe(text,integer)'),
        ('dot_iu_command_run_health', 'public.fn_iu_observe(text,integer)'),
        ('dot_iu_collection_health', 'public.fn_iu_observe(text,integer)'),
        ('dot_iu_collection_manifest', 'public.fn_iu_observe(text,integer)'),
        ('dot_iu_composer_event_backlog', 'public.fn_iu_observe(text,integer)'),
        ('dot_iu_route_attempt_summary', 'public.fn_iu_observe(text,integer)'),
        ('dot_iu_route_dead_letter_open', 'public.fn_iu_observe(text,integer)')
      ) AS r (command_name, signature)
      LEFT JOIN public.dot_iu_command_catalog c ON c.command_name = r.command_name
     WHERE to_regprocedure(r.signature) IS NULL
        OR c.target_functions IS DISTINCT FROM
           ARRAY[(SELECT p.proname::text FROM pg_catalog.pg_proc p WHERE p.oid = to_regprocedure(r.signature))];
    IF v_wrong IS NOT NULL THEN
        RAISE EXCEPTION 'T4: target not resolvable with the registry signature: %', array_to_string(v_wrong, ', ');
    END IF;
    RAISE NOTICE 'T4 all 24 commands resolve to their registry signatures';
END
$t4$;

-- T5 fn_dot_iu_command_log accepts a catalog command: one run recorded, md5 digest, no raw parameters
CREATE TEMP TABLE selftest280_run ON COMMIT DROP AS
SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,
                                    md5('{"selftest": "280"}'), '{"iu_core.composer_enabled": "false"}',
                                    '{"reason": "selftest_280"}', 'selftest280') AS run_id;

SELECT r.command_name, r.category, r.run_mode, r.run_status, r.mutating, r.params_digest,
       r.gate_snapshot, r.evidence, r.actor
  FROM public.dot_iu_command_run r
 WHERE r.run_id = (SELECT sr.run_id FROM selftest280_run sr)
 ORDER BY r.command_name;

-- T5 the logger answers the run id of the row it wrote, and takes a plan run of every one of the 24
DO $t5$
DECLARE
    v_run uuid := (SELECT run_id FROM selftest280_run);
    v_before bigint := (SELECT count(*) FROM public.dot_iu_command_run);
    v_cmd record;
    v_ids uuid[] := '{}';
    v_n bigint := (SELECT count(*) FROM selftest280_rows);
BEGIN
    IF v_run IS NULL OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_run r
                                     WHERE r.run_id = v_run AND r.command_name = 'dot_iu_healthcheck'
                                       AND r.params_digest = md5('{"selftest": "280"}')
                                       AND r.created_at IS NOT NULL) THEN
        RAISE EXCEPTION 'T5: the logger answered % but no matching ledger row exists', v_run;
    END IF;
    FOR v_cmd IN SELECT * FROM selftest280_rows ORDER BY command_name LOOP
        v_ids := v_ids || public.fn_dot_iu_command_log(v_cmd.command_name, v_cmd.category, 'plan', 'planned',
                                                         v_cmd.mutating, md5(v_cmd.command_name), '{}', '{}',
                                                         'selftest280');
    END LOOP;
    IF cardinality(v_ids) <> v_n OR (SELECT count(DISTINCT x) FROM unnest(v_ids) AS x) <> v_n
       OR (SELECT count(*) FROM public.dot_iu_command_run) <> v_before + v_n THEN
        RAISE EXCEPTION 'T5: % plan runs answered % distinct id(s), ledger grew by %', v_n,
            (SELECT count(DISTINCT x) FROM unnest(v_ids) AS x),
            (SELECT count(*) FROM public.dot_iu_command_run) - v_before;
    END IF;
    RAISE NOTICE 'T5 the logger recorded a plan run of each of the % commands (% distinct run ids)', v_n, v_n;
END
$t5$;

-- T6 fail-closed: an unknown command is refused (23503) and nothing is logged;
-- a raw-parameter digest is refused by the ledger's md5 CHECK (23514)
DO $t6$
DECLARE
    v_before bigint := (SELECT count(*) FROM public.dot_iu_command_run);
    v_state text;
    v_msg text;
BEGIN
    BEGIN
        PERFORM public.fn_dot_iu_command_log('dot_iu_no_such_command', 'read', 'plan', 'planned', false,
                                             md5('x'), '{}', '{}', 'selftest280');
        RAISE EXCEPTION 'T6: the logger accepted a command missing from the catalog';
    EXCEPTION WHEN foreign_key_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_state <> '23503' OR v_msg NOT LIKE '%dot_iu_no_such_command%not in public.dot_iu_command_catalog%' THEN
        RAISE EXCEPTION 'T6: unexpected refusal % %', v_state, v_msg;
    END IF;
    RAISE NOTICE 'T6 unknown command refused_as_expected (%)', v_state;

    BEGIN
        PERFORM public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,
                                             'collection_key=secret', '{}', '{}', 'selftest280');
        RAISE EXCEPTION 'T6: the ledger stored a raw-parameter digest';
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    END;
    RAISE NOTICE 'T6 raw params_digest refused_as_expected (%)', v_state;

    IF (SELECT count(*) FROM public.dot_iu_command_run) <> v_before THEN
        RAISE EXCEPTION 'T6: a refused call left a ledger row';
    END IF;
END
$t6$;

ROLLBACK;
