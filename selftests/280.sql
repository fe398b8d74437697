-- 280 self-test: the operator-runtime catalog seed (seed 004 "R280") — the 24
-- rows of the registry's revision-"280" commands, the idempotent re-seed
-- (INSERT 0 0), every target function resolvable and the fail-closed ledger
-- logger — exercised inside one transaction that always ends in ROLLBACK.
-- Every DO block RAISEs when its check fails.
-- The database may be at 280 (24 catalog rows) or later (034: 26, gate_protocol:
-- 30): everything printed is filtered to the 24 names of 280, and what depends
-- on the revision is compared inside the DO blocks, never printed.
-- Run: iucore selftest 280   (by hand: psql -X -v ON_ERROR_STOP=1 -f selftests/280.sql)

-- Repeatable read: production keeps writing while a self-test runs; one snapshot
-- means the counts compared before/after a call see only this transaction's writes.
BEGIN;
SET transaction_isolation = 'repeatable read';

-- T0 the 24 rows of 280, as the registry (src/iu_core/registry.py, revision "280") has them
SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN (
        'dot_iu_healthcheck', 'dot_iu_create_file_from_pieces', 'dot_iu_add_piece',
        'dot_iu_remove_piece', 'dot_iu_reorder_piece', 'dot_iu_validate_collection',
        'dot_iu_checkpoint_collection', 'dot_iu_render_collection', 'dot_iu_retire_piece',
        'dot_iu_soft_delete_piece', 'dot_iu_restore_piece', 'dot_iu_clone_piece',
        'dot_iu_workflow_from_steps', 'dot_iu_refresh_metadata_axes', 'dot_iu_split_piece',
        'dot_iu_merge_pieces', 'dot_iu_route_worker_run', 'dot_iu_command_registry',
        'dot_iu_command_run_health', 'dot_iu_collection_health', 'dot_iu_collection_manifest',
        'dot_iu_composer_event_backlog', 'dot_iu_route_attempt_summary',
        'dot_iu_route_dead_letter_open')
 ORDER BY c.command_name;

-- T0 the catalog holds exactly those 24 rows (name, category, mutating, reversible, targets,
-- description), and every other row belongs to a later revision (034's 2, gate_protocol's 4)
DO $t0$
DECLARE
    n_exact  integer;
    n_named  integer;
    v_others text[];
BEGIN
    SELECT count(*) INTO n_exact
      FROM public.dot_iu_command_catalog c
      JOIN (VALUES
        ('dot_iu_healthcheck', 'health', false, true, ARRAY['fn_iu_healthcheck'], 'counts and gates'),
        ('dot_iu_create_file_from_pieces', 'collection', true, true, ARRAY['fn_iu_compose'], 'compose a collection from pieces, in order'),
        ('dot_iu_add_piece', 'collection', true, true, ARRAY['fn_iu_collection_add_piece'], 'add a piece to a collection (append or at a position)'),
        ('dot_iu_remove_piece', 'collection', true, true, ARRAY['fn_iu_collection_remove_piece'], 'remove a piece from a collection (the piece stays)'),
        ('dot_iu_reorder_piece', 'collection', true, true, ARRAY['fn_iu_collection_reorder_piece'], 'move a piece to a new position'),
        ('dot_iu_validate_collection', 'collection', false, true, ARRAY['fn_iu_collection_validate'], 'validate a collection, fail-closed'),
        ('dot_iu_checkpoint_collection', 'collection', true, true, ARRAY['fn_iu_collection_checkpoint'], 'render + record + emit collection_rendered'),
        ('dot_iu_render_collection', 'read', false, true, ARRAY['fn_iu_collection_render'], 'render a collection''s manifest'),
        ('dot_iu_retire_piece', 'lifecycle', true, false, ARRAY['fn_iu_retire'], 'retire a piece globally (not reversible)'),
        ('dot_iu_soft_delete_piece', 'lifecycle', true, true, ARRAY['fn_iu_piece_soft_delete'], 'soft-delete a piece (restorable)'),
        ('dot_iu_restore_piece', 'lifecycle', true, true, ARRAY['fn_iu_piece_restore'], 'restore a soft-deleted piece'),
        ('dot_iu_clone_piece', 'piece', true, true, ARRAY['fn_iu_create'], 'author a new piece through the fn_iu_create birth gate'),
        ('dot_iu_workflow_from_steps', 'collection', true, true, ARRAY['fn_iu_workflow_from_steps'], 'a workflow collection from a list of steps'),
        ('dot_iu_refresh_metadata_axes', 'piece', true, true, ARRAY['fn_iu_refresh_metadata_axes'], 'recompute a piece''s metadata axes'),
        ('dot_iu_split_piece', 'piece', true, false, ARRAY['fn_iu_piece_split'], 'split a piece (review decision required)'),
        ('dot_iu_merge_pieces', 'piece', true, false, ARRAY['fn_iu_piece_merge'], 'merge pieces (review decision required)'),
        ('dot_iu_route_worker_run', 'health', true, true, ARRAY['fn_iu_route_worker_run'], 'run the route worker once (dry-run delivery unless gated live)'),
        ('dot_iu_command_registry', 'read', false, true, ARRAY['fn_iu_observe'], 'operator command registry + run aggregates'),
        ('dot_iu_command_run_health', 'read', false, true, ARRAY['fn_iu_observe'], 'operator-runtime run health'),
        ('dot_iu_collection_health', 'read', false, true, ARRAY['fn_iu_observe'], 'collection health'),
        ('dot_iu_collection_manifest', 'read', false, true, ARRAY['fn_iu_observe'], 'collection manifests'),
        ('dot_iu_composer_event_backlog', 'read', false, true, ARRAY['fn_iu_observe'], 'composer event backlog'),
        ('dot_iu_route_attempt_summary', 'read', false, true, ARRAY['fn_iu_observe'], 'route attempt summary'),
        ('dot_iu_route_dead_letter_open', 'read', false, true, ARRAY['fn_iu_observe'], 'open dead letters')
      ) AS r (command_name, category, mutating, reversible, target_functions, description)
        ON (c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description)
         = (r.command_name, r.category, r.mutating, r.reversible, r.target_functions, r.description);
    SELECT count(*) INTO n_named FROM public.dot_iu_command_catalog c WHERE c.command_name LIKE 'dot\_iu\_%';
    SELECT array_agg(c.command_name ORDER BY c.command_name) INTO v_others
      FROM public.dot_iu_command_catalog c
     WHERE c.command_name NOT IN (
            'dot_iu_healthcheck', 'dot_iu_create_file_from_pieces', 'dot_iu_add_piece',
            'dot_iu_remove_piece', 'dot_iu_reorder_piece', 'dot_iu_validate_collection',
            'dot_iu_checkpoint_collection', 'dot_iu_render_collection', 'dot_iu_retire_piece',
            'dot_iu_soft_delete_piece', 'dot_iu_restore_piece', 'dot_iu_clone_piece',
            'dot_iu_workflow_from_steps', 'dot_iu_refresh_metadata_axes', 'dot_iu_split_piece',
            'dot_iu_merge_pieces', 'dot_iu_route_worker_run', 'dot_iu_command_registry',
            'dot_iu_command_run_health', 'dot_iu_collection_health', 'dot_iu_collection_manifest',
            'dot_iu_composer_event_backlog', 'dot_iu_route_attempt_summary',
            'dot_iu_route_dead_letter_open');
    IF n_exact <> 24 THEN
        RAISE EXCEPTION 'T0: % of the 24 rows of 280 are in the catalog exactly as seeded (name, category, mutating, reversible, targets, description)', n_exact;
    END IF;
    IF n_named <> (SELECT count(*) FROM public.dot_iu_command_catalog) THEN
        RAISE EXCEPTION 'T0: a catalog row is named outside dot_iu_*';
    END IF;
    IF v_others IS NOT NULL
       AND NOT (v_others <@ ARRAY['dot_iu_auto_instantiate_from_event', 'dot_iu_auto_instantiate_rollback_by_actor',
                                  'dot_iu_gate_close', 'dot_iu_gate_open', 'dot_iu_gate_verify_closed',
                                  'dot_iu_gate_watchdog']) THEN
        RAISE EXCEPTION 'T0: catalog rows of no known revision: %', v_others;
    END IF;
    RAISE NOTICE 'T0 the 24 rows of 280 are there exactly as seeded; any other row is 034''s or gate_protocol''s';
END
$t0$;

-- T1 seed 004: re-running 280's INSERT … ON CONFLICT DO NOTHING (verbatim) inserts 0 rows
INSERT INTO public.dot_iu_command_catalog
    (command_name, category, mutating, reversible, target_functions, description)
VALUES
    ('dot_iu_healthcheck', 'health', false, true, ARRAY['fn_iu_healthcheck'],
     'counts and gates'),
    ('dot_iu_create_file_from_pieces', 'collection', true, true, ARRAY['fn_iu_compose'],
     'compose a collection from pieces, in order'),
    ('dot_iu_add_piece', 'collection', true, true, ARRAY['fn_iu_collection_add_piece'],
     'add a piece to a collection (append or at a position)'),
    ('dot_iu_remove_piece', 'collection', true, true, ARRAY['fn_iu_collection_remove_piece'],
     'remove a piece from a collection (the piece stays)'),
    ('dot_iu_reorder_piece', 'collection', true, true, ARRAY['fn_iu_collection_reorder_piece'],
     'move a piece to a new position'),
    ('dot_iu_validate_collection', 'collection', false, true, ARRAY['fn_iu_collection_validate'],
     'validate a collection, fail-closed'),
    ('dot_iu_checkpoint_collection', 'collection', true, true, ARRAY['fn_iu_collection_checkpoint'],
     'render + record + emit collection_rendered'),
    ('dot_iu_render_collection', 'read', false, true, ARRAY['fn_iu_collection_render'],
     'render a collection''s manifest'),
    ('dot_iu_retire_piece', 'lifecycle', true, false, ARRAY['fn_iu_retire'],
     'retire a piece globally (not reversible)'),
    ('dot_iu_soft_delete_piece', 'lifecycle', true, true, ARRAY['fn_iu_piece_soft_delete'],
     'soft-delete a piece (restorable)'),
    ('dot_iu_restore_piece', 'lifecycle', true, true, ARRAY['fn_iu_piece_restore'],
     'restore a soft-deleted piece'),
    ('dot_iu_clone_piece', 'piece', true, true, ARRAY['fn_iu_create'],
     'author a new piece through the fn_iu_create birth gate'),
    ('dot_iu_workflow_from_steps', 'collection', true, true, ARRAY['fn_iu_workflow_from_steps'],
     'a workflow collection from a list of steps'),
    ('dot_iu_refresh_metadata_axes', 'piece', true, true, ARRAY['fn_iu_refresh_metadata_axes'],
     'recompute a piece''s metadata axes'),
    ('dot_iu_split_piece', 'piece', true, false, ARRAY['fn_iu_piece_split'],
     'split a piece (review decision required)'),
    ('dot_iu_merge_pieces', 'piece', true, false, ARRAY['fn_iu_piece_merge'],
     'merge pieces (review decision required)'),
    ('dot_iu_route_worker_run', 'health', true, true, ARRAY['fn_iu_route_worker_run'],
     'run the route worker once (dry-run delivery unless gated live)'),
    ('dot_iu_command_registry', 'read', false, true, ARRAY['fn_iu_observe'],
     'operator command registry + run aggregates'),
    ('dot_iu_command_run_health', 'read', false, true, ARRAY['fn_iu_observe'],
     'operator-runtime run health'),
    ('dot_iu_collection_health', 'read', false, true, ARRAY['fn_iu_observe'],
     'collection health'),
    ('dot_iu_collection_manifest', 'read', false, true, ARRAY['fn_iu_observe'],
     'collection manifests'),
    ('dot_iu_composer_event_backlog', 'read', false, true, ARRAY['fn_iu_observe'],
     'composer event backlog'),
    ('dot_iu_route_attempt_summary', 'read', false, true, ARRAY['fn_iu_observe'],
     'route attempt summary'),
    ('dot_iu_route_dead_letter_open', 'read', false, true, ARRAY['fn_iu_observe'],
     'open dead letters')
ON CONFLICT (command_name) DO NOTHING;

-- T2 the same INSERT against a catalog without the 24 rows re-creates them exactly:
-- keep a copy, remove them (and their ledger runs) in this transaction only, re-seed, compare
CREATE TEMP TABLE selftest280_rows ON COMMIT DROP AS
SELECT c.command_name, c.category, c.mutating, c.reversible, c.target_functions, c.description
  FROM public.dot_iu_command_catalog c
 WHERE c.command_name IN (
        'dot_iu_healthcheck', 'dot_iu_create_file_from_pieces', 'dot_iu_add_piece',
        'dot_iu_remove_piece', 'dot_iu_reorder_piece', 'dot_iu_validate_collection',
        'dot_iu_checkpoint_collection', 'dot_iu_render_collection', 'dot_iu_retire_piece',
        'dot_iu_soft_delete_piece', 'dot_iu_restore_piece', 'dot_iu_clone_piece',
        'dot_iu_workflow_from_steps', 'dot_iu_refresh_metadata_axes', 'dot_iu_split_piece',
        'dot_iu_merge_pieces', 'dot_iu_route_worker_run', 'dot_iu_command_registry',
        'dot_iu_command_run_health', 'dot_iu_collection_health', 'dot_iu_collection_manifest',
        'dot_iu_composer_event_backlog', 'dot_iu_route_attempt_summary',
        'dot_iu_route_dead_letter_open');

DO $t2$
DECLARE
    n bigint;
BEGIN
    DELETE FROM public.dot_iu_command_run r
     WHERE r.command_name IN (SELECT s.command_name FROM selftest280_rows s);
    DELETE FROM public.dot_iu_command_catalog c
     WHERE c.command_name IN (SELECT s.command_name FROM selftest280_rows s);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 24 THEN
        RAISE EXCEPTION 'T2: removed % catalog rows, expected the 24 of 280', n;
    END IF;
    RAISE NOTICE 'T2 the 24 rows of 280 removed (in this transaction only)';
END
$t2$;

-- T2 280's INSERT (verbatim again) now inserts all 24
INSERT INTO public.dot_iu_command_catalog
    (command_name, category, mutating, reversible, target_functions, description)
VALUES
    ('dot_iu_healthcheck', 'health', false, true, ARRAY['fn_iu_healthcheck'],
     'counts and gates'),
    ('dot_iu_create_file_from_pieces', 'collection', true, true, ARRAY['fn_iu_compose'],
     'compose a collection from pieces, in order'),
    ('dot_iu_add_piece', 'collection', true, true, ARRAY['fn_iu_collection_add_piece'],
     'add a piece to a collection (append or at a position)'),
    ('dot_iu_remove_piece', 'collection', true, true, ARRAY['fn_iu_collection_remove_piece'],
     'remove a piece from a collection (the piece stays)'),
    ('dot_iu_reorder_piece', 'collection', true, true, ARRAY['fn_iu_collection_reorder_piece'],
     'move a piece to a new position'),
    ('dot_iu_validate_collection', 'collection', false, true, ARRAY['fn_iu_collection_validate'],
     'validate a collection, fail-closed'),
    ('dot_iu_checkpoint_collection', 'collection', true, true, ARRAY['fn_iu_collection_checkpoint'],
     'render + record + emit collection_rendered'),
    ('dot_iu_render_collection', 'read', false, true, ARRAY['fn_iu_collection_render'],
     'render a collection''s manifest'),
    ('dot_iu_retire_piece', 'lifecycle', true, false, ARRAY['fn_iu_retire'],
     'retire a piece globally (not reversible)'),
    ('dot_iu_soft_delete_piece', 'lifecycle', true, true, ARRAY['fn_iu_piece_soft_delete'],
     'soft-delete a piece (restorable)'),
    ('dot_iu_restore_piece', 'lifecycle', true, true, ARRAY['fn_iu_piece_restore'],
     'restore a soft-deleted piece'),
    ('dot_iu_clone_piece', 'piece', true, true, ARRAY['fn_iu_create'],
     'author a new piece through the fn_iu_create birth gate'),
    ('dot_iu_workflow_from_steps', 'collection', true, true, ARRAY['fn_iu_workflow_from_steps'],
     'a workflow collection from a list of steps'),
    ('dot_iu_refresh_metadata_axes', 'piece', true, true, ARRAY['fn_iu_refresh_metadata_axes'],
     'recompute a piece''s metadata axes'),
    ('dot_iu_split_piece', 'piece', true, false, ARRAY['fn_iu_piece_split'],
     'split a piece (review decision required)'),
    ('dot_iu_merge_pieces', 'piece', true, false, ARRAY['fn_iu_piece_merge'],
     'merge pieces (review decision required)'),
    ('dot_iu_route_worker_run', 'health', true, true, ARRAY['fn_iu_route_worker_run'],
     'run the route worker once (dry-run delivery unless gated live)'),
    ('dot_iu_command_registry', 'read', false, true, ARRAY['fn_iu_observe'],
     'operator command registry + run aggregates'),
    ('dot_iu_command_run_health', 'read', false, true, ARRAY['fn_iu_observe'],
     'operator-runtime run health'),
    ('dot_iu_collection_health', 'read', false, true, ARRAY['fn_iu_observe'],
     'collection health'),
    ('dot_iu_collection_manifest', 'read', false, true, ARRAY['fn_iu_observe'],
     'collection manifests'),
    ('dot_iu_composer_event_backlog', 'read', false, true, ARRAY['fn_iu_observe'],
     'composer event backlog'),
    ('dot_iu_route_attempt_summary', 'read', false, true, ARRAY['fn_iu_observe'],
     'route attempt summary'),
    ('dot_iu_route_dead_letter_open', 'read', false, true, ARRAY['fn_iu_observe'],
     'open dead letters')
ON CONFLICT (command_name) DO NOTHING;

-- T2 the re-seeded rows equal the rows that were there, column for column
DO $t2$
DECLARE
    missing bigint;
    extra bigint;
BEGIN
    SELECT count(*) INTO missing FROM (
        SELECT command_name, category, mutating, reversible, target_functions, description FROM selftest280_rows
        EXCEPT
        SELECT command_name, category, mutating, reversible, target_functions, description
          FROM public.dot_iu_command_catalog) AS d;
    SELECT count(*) INTO extra FROM (
        SELECT command_name, category, mutating, reversible, target_functions, description
          FROM public.dot_iu_command_catalog WHERE command_name IN (SELECT command_name FROM selftest280_rows)
        EXCEPT
        SELECT command_name, category, mutating, reversible, target_functions, description FROM selftest280_rows) AS d;
    IF (SELECT count(*) FROM selftest280_rows) <> 24 OR missing <> 0 OR extra <> 0 THEN
        RAISE EXCEPTION 'T2: the re-seed differs from the catalog it replaced (% row(s) missing, % differing)', missing, extra;
    END IF;
    RAISE NOTICE 'T2 the re-seeded 24 rows equal the catalog rows they replaced, column for column';
END
$t2$;

-- T3 every target function of the 24 resolves, with the registry's parameter types
SELECT 'public.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS target_function,
       format_type(p.prorettype, NULL) AS returns,
       (SELECT count(*) FROM selftest280_rows r WHERE p.proname = ANY (r.target_functions)) AS commands
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN (SELECT DISTINCT unnest(r.target_functions) FROM selftest280_rows r)
 ORDER BY 1;

-- T3 each of the 24 commands' targets resolves to exactly the registry signature, and no
-- catalog row (at any revision) names a target function that does not resolve
DO $t3$
DECLARE
    v_wrong text[];
    v_unresolved text[];
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
        RAISE EXCEPTION 'T3: target not resolvable with the registry signature: %', array_to_string(v_wrong, ', ');
    END IF;

    SELECT array_agg(DISTINCT t ORDER BY t) INTO v_unresolved
      FROM public.dot_iu_command_catalog c, unnest(c.target_functions) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = t);
    IF v_unresolved IS NOT NULL THEN
        RAISE EXCEPTION 'T3: catalog target function(s) not resolvable: %', array_to_string(v_unresolved, ', ');
    END IF;
    RAISE NOTICE 'T3 all 24 commands resolve to their registry signatures; every catalog target function resolves';
END
$t3$;

-- T4 fn_dot_iu_command_log accepts a catalog command: one run recorded, md5 digest, no raw parameters
CREATE TEMP TABLE selftest280_run ON COMMIT DROP AS
SELECT public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,
                                    md5('{"selftest": "280"}'), '{"iu_core.composer_enabled": "false"}',
                                    '{"reason": "selftest_280"}', 'selftest280') AS run_id;

SELECT r.command_name, r.category, r.run_mode, r.run_status, r.mutating, r.params_digest,
       r.gate_snapshot, r.evidence, r.actor
  FROM public.dot_iu_command_run r
 WHERE r.run_id = (SELECT sr.run_id FROM selftest280_run sr)
 ORDER BY r.command_name;

-- T4 the logger answers the run id of the row it wrote, and takes a plan run of every one of the 24
DO $t4$
DECLARE
    v_run uuid := (SELECT run_id FROM selftest280_run);
    v_before bigint := (SELECT count(*) FROM public.dot_iu_command_run);
    v_cmd record;
    v_ids uuid[] := '{}';
BEGIN
    IF v_run IS NULL OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_run r
                                     WHERE r.run_id = v_run AND r.command_name = 'dot_iu_healthcheck'
                                       AND r.params_digest = md5('{"selftest": "280"}')
                                       AND r.created_at IS NOT NULL) THEN
        RAISE EXCEPTION 'T4: the logger answered % but no matching ledger row exists', v_run;
    END IF;
    FOR v_cmd IN SELECT * FROM selftest280_rows ORDER BY command_name LOOP
        v_ids := v_ids || public.fn_dot_iu_command_log(v_cmd.command_name, v_cmd.category, 'plan', 'planned',
                                                         v_cmd.mutating, md5(v_cmd.command_name), '{}', '{}',
                                                         'selftest280');
    END LOOP;
    IF cardinality(v_ids) <> 24 OR (SELECT count(DISTINCT x) FROM unnest(v_ids) AS x) <> 24
       OR (SELECT count(*) FROM public.dot_iu_command_run) <> v_before + 24 THEN
        RAISE EXCEPTION 'T4: 24 plan runs answered % distinct id(s), ledger grew by %',
            (SELECT count(DISTINCT x) FROM unnest(v_ids) AS x),
            (SELECT count(*) FROM public.dot_iu_command_run) - v_before;
    END IF;
    RAISE NOTICE 'T4 the logger recorded a plan run of each of the 24 commands (24 distinct run ids)';
END
$t4$;

-- T5 fail-closed: an unknown command is refused (23503) and nothing is logged;
-- a raw-parameter digest is refused by the ledger's md5 CHECK (23514)
DO $t5$
DECLARE
    v_before bigint := (SELECT count(*) FROM public.dot_iu_command_run);
    v_state text;
    v_msg text;
BEGIN
    BEGIN
        PERFORM public.fn_dot_iu_command_log('dot_iu_no_such_command', 'read', 'plan', 'planned', false,
                                             md5('x'), '{}', '{}', 'selftest280');
        RAISE EXCEPTION 'T5: the logger accepted a command missing from the catalog';
    EXCEPTION WHEN foreign_key_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    END;
    IF v_state <> '23503' OR v_msg NOT LIKE '%dot_iu_no_such_command%not in public.dot_iu_command_catalog%' THEN
        RAISE EXCEPTION 'T5: unexpected refusal % %', v_state, v_msg;
    END IF;
    RAISE NOTICE 'T5 unknown command refused_as_expected (%)', v_state;

    BEGIN
        PERFORM public.fn_dot_iu_command_log('dot_iu_healthcheck', 'health', 'verify', 'verified', false,
                                             'collection_key=secret', '{}', '{}', 'selftest280');
        RAISE EXCEPTION 'T5: the ledger stored a raw-parameter digest';
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    END;
    RAISE NOTICE 'T5 raw params_digest refused_as_expected (%)', v_state;

    IF (SELECT count(*) FROM public.dot_iu_command_run) <> v_before THEN
        RAISE EXCEPTION 'T5: a refused call left a ledger row';
    END IF;
END
$t5$;

ROLLBACK;
