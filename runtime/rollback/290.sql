-- =============================================================================
-- runtime/rollback/290 — the paired rollback of runtime/290 (seed 001 §8:
-- "soft-delete 3 minted IUs, drop collection + memberships").
--
-- Through the governed functions: each membership leaves the collection by
-- fn_iu_collection_remove_piece (a piece_removed_from_collection composer event
-- each), each of the three minted pieces is soft-deleted by 017's
-- fn_iu_piece_soft_delete (a piece_soft_deleted event each; restorable with
-- fn_iu_piece_restore), then the empty collection row is deleted — the one
-- direct write: the surface the seeds name has no governed collection drop.
-- The composer and structure-ops gates are opened through the gate protocol
-- for this transaction's window and closed before it ends. Events already in
-- the outbox stay: they are history, and the run ledger keeps md5 digests only
-- (seed 000 §4), so no ledger row names the data.
--
-- Fail-closed guard: refused unless the collection is exactly what 290 left —
-- its three minted pieces, nothing else — and nothing outside it references
-- them: a membership in another collection, a supersession, an
-- auto-instantiation provenance row. The rollback cannot put those back, so it
-- never takes them away.
--
-- Sections: @guard, @body, @assert (docs/sql-conventions.md).
--   iucore runtime rollback 290 --approval-id <uuid> [--rehearse]
--   PGOPTIONS='-c iucore.approval_id=<uuid>' psql -X -1 -v ON_ERROR_STOP=1 -f runtime/rollback/290.sql "<database url>"
-- =============================================================================

-- @guard

-- One transaction or nothing (see runtime/290.sql).
DO $guard$
BEGIN
    IF statement_timestamp() = now() THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: not inside one transaction — run the file with psql -1 (--single-transaction), or with iucore runtime rollback 290';
    END IF;
END
$guard$;

DO $guard$
DECLARE
    v_approval text := nullif(btrim(coalesce(current_setting('iucore.approval_id', true), '')), '');
BEGIN
    IF v_approval IS NULL THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: no approval id — pass one: iucore runtime rollback 290 --approval-id <uuid>; by hand: PGOPTIONS=''-c iucore.approval_id=<uuid>'' psql -X -1 -v ON_ERROR_STOP=1 -f runtime/rollback/290.sql';
    END IF;
    BEGIN
        PERFORM v_approval::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: approval id % is not a uuid', quote_literal(v_approval);
    END;
END
$guard$;

DO $guard$
DECLARE
    v_missing text[];
BEGIN
    SELECT array_agg(f ORDER BY f) INTO v_missing
      FROM unnest(ARRAY[
               'public.fn_iu_gate_open(text,uuid,text,text,integer)',
               'public.fn_iu_gate_close(text,text,text)',
               'public.fn_iu_gate_verify_closed(text)',
               'public.fn_iu_collection_remove_piece(uuid,uuid,text)',
               'public.fn_iu_piece_soft_delete(uuid,text,text)']) AS f
     WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: governed function(s) missing: % — the database is not at head; iucore db upgrade head first',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- Exactly what 290 left: the collection, active, holding its three minted
-- pieces and nothing else, each still active.
DO $guard$
DECLARE
    v_cid     uuid;
    v_status  text;
    v_foreign text[];
    v_minted  bigint;
BEGIN
    SELECT c.collection_id, c.status INTO v_cid, v_status
      FROM public.iu_collection c WHERE c.collection_key = 'iu_core.runtime290.file-001';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: collection iu_core.runtime290.file-001 does not exist — 290 is not applied; nothing to roll back';
    END IF;
    IF v_status <> 'active' THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: collection iu_core.runtime290.file-001 is %, not active — it changed since 290; inspect it before rolling back',
            v_status;
    END IF;

    SELECT array_agg(format('%s (%s, by %s)', iu.canonical_address, iu.lifecycle_status, iu.created_by)
                     ORDER BY m.piece_order)
               FILTER (WHERE NOT (iu.created_by = 'runtime_290'
                                  AND iu.canonical_address LIKE 'iu\_core/runtime290/file-001/%'
                                  AND iu.lifecycle_status = 'active' AND iu.deleted_at IS NULL)),
           count(*) FILTER (WHERE iu.created_by = 'runtime_290'
                              AND iu.canonical_address LIKE 'iu\_core/runtime290/file-001/%'
                              AND iu.lifecycle_status = 'active' AND iu.deleted_at IS NULL)
      INTO v_foreign, v_minted
      FROM public.iu_collection_member m
      JOIN public.information_unit iu ON iu.iu_id = m.iu_id
     WHERE m.collection_id = v_cid;
    IF v_foreign IS NOT NULL THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: the collection holds piece(s) 290 did not mint or that are no longer active: % — removing them would lose a membership this rollback cannot put back',
            array_to_string(v_foreign, '; ');
    END IF;
    IF v_minted <> 3 THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: the collection holds % of the 3 pieces 290 minted — it changed since 290; inspect it before rolling back',
            v_minted;
    END IF;
END
$guard$;

-- Nothing outside the collection may reference the data.
DO $guard$
DECLARE
    v_ids   uuid[];
    v_cid   uuid;
    v_found text[] := '{}';
    v_list  text;
BEGIN
    SELECT c.collection_id, array_agg(m.iu_id) INTO v_cid, v_ids
      FROM public.iu_collection c
      JOIN public.iu_collection_member m ON m.collection_id = c.collection_id
     WHERE c.collection_key = 'iu_core.runtime290.file-001'
     GROUP BY c.collection_id;

    SELECT string_agg(DISTINCT c.collection_key, ', ') INTO v_list
      FROM public.iu_collection_member m
      JOIN public.iu_collection c ON c.collection_id = m.collection_id
     WHERE m.iu_id = ANY (v_ids) AND m.collection_id <> v_cid;
    IF v_list IS NOT NULL THEN
        v_found := v_found || format('the minted pieces are members of other collection(s): %s', v_list);
    END IF;

    SELECT string_agg(iu.canonical_address, ', ') INTO v_list
      FROM public.information_unit iu WHERE iu.superseded_by && v_ids;
    IF v_list IS NOT NULL THEN
        v_found := v_found || format('unit(s) superseded by the minted pieces: %s', v_list);
    END IF;

    IF to_regclass('public.iu_auto_instance') IS NOT NULL THEN
        EXECUTE 'SELECT string_agg(c.collection_key, '', '')
                   FROM public.iu_auto_instance a
                   JOIN public.iu_collection c ON c.collection_id = a.instance_collection_id
                  WHERE a.template_collection_id = $1'
           INTO v_list USING v_cid;
        IF v_list IS NOT NULL THEN
            v_found := v_found || format('auto-instance(s) provenanced to this collection as their template: %s', v_list);
        END IF;
    END IF;

    IF cardinality(v_found) > 0 THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: % — the rollback cannot put these back; resolve them first',
            array_to_string(v_found, '; ');
    END IF;
END
$guard$;

DO $guard$
DECLARE
    v_gates jsonb := public.fn_iu_gate_verify_closed(NULL);
BEGIN
    IF NOT coalesce((v_gates ->> 'all_safe')::boolean, false) THEN
        RAISE EXCEPTION 'runtime/rollback/290 refused: protocol gate(s) open: % — close them (iucore gate close GATE) or let their TTL run out (iucore gate watchdog) first',
            (SELECT string_agg(g ->> 'key', ', ') FROM jsonb_array_elements(v_gates -> 'gates') AS g
              WHERE g ->> 'value' IS DISTINCT FROM 'false');
    END IF;
END
$guard$;

-- @body

-- The two gates the governed functions need, open for this window only (TTL 300 s).
SELECT g ->> 'status' AS gate_open, g ->> 'gate_key' AS gate_key, g ->> 'ttl_seconds' AS ttl_seconds
  FROM (SELECT public.fn_iu_gate_open(k, current_setting('iucore.approval_id')::uuid,
                                      'runtime/rollback/290: roll back iu_core.runtime290.file-001',
                                      'runtime_290', 300) AS g
          FROM unnest(ARRAY['iu_core.composer_enabled', 'iu_core.structure_ops_enabled'])
               WITH ORDINALITY AS u (k, ord)
         ORDER BY u.ord) AS o;

DO $body$
DECLARE
    v_cid    uuid;
    v_member record;
    v_answer jsonb;
    v_ids    uuid[] := '{}';
BEGIN
    SELECT c.collection_id INTO v_cid
      FROM public.iu_collection c WHERE c.collection_key = 'iu_core.runtime290.file-001'
       FOR UPDATE;

    -- Last first: every removal leaves the remaining orders compact.
    FOR v_member IN
        SELECT m.iu_id, m.label FROM public.iu_collection_member m
         WHERE m.collection_id = v_cid ORDER BY m.piece_order DESC
    LOOP
        v_answer := public.fn_iu_collection_remove_piece(v_cid, v_member.iu_id, 'runtime_290');
        IF v_answer ->> 'status' IS DISTINCT FROM 'removed' THEN
            RAISE EXCEPTION 'runtime/rollback/290: fn_iu_collection_remove_piece did not remove %: %', v_member.label, v_answer;
        END IF;
        v_ids := v_ids || v_member.iu_id;
        RAISE NOTICE 'removed % from the collection', v_member.label;
    END LOOP;

    FOR v_member IN
        SELECT iu.iu_id, iu.canonical_address FROM public.information_unit iu
         WHERE iu.iu_id = ANY (v_ids) ORDER BY iu.canonical_address
    LOOP
        v_answer := public.fn_iu_piece_soft_delete(v_member.iu_id, 'runtime/rollback/290', 'runtime_290');
        IF v_answer ->> 'status' IS DISTINCT FROM 'soft_deleted' THEN
            RAISE EXCEPTION 'runtime/rollback/290: fn_iu_piece_soft_delete did not soft-delete %: %', v_member.canonical_address, v_answer;
        END IF;
        RAISE NOTICE 'soft-deleted % (restorable)', v_member.canonical_address;
    END LOOP;

    DELETE FROM public.iu_collection c WHERE c.collection_id = v_cid;
    RAISE NOTICE 'dropped the empty collection iu_core.runtime290.file-001';
END
$body$;

SELECT k AS gate_key,
       public.fn_iu_gate_close(k, 'runtime/rollback/290: done', 'runtime_290') ->> 'status' AS gate_close
  FROM unnest(ARRAY['iu_core.structure_ops_enabled', 'iu_core.composer_enabled']) AS k;

-- @assert

DO $assert$
DECLARE
    v_deleted bigint;
    v_events  jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM public.iu_collection c WHERE c.collection_key = 'iu_core.runtime290.file-001') THEN
        RAISE EXCEPTION 'runtime/rollback/290 assert: collection iu_core.runtime290.file-001 is still there';
    END IF;

    SELECT count(*) INTO v_deleted
      FROM public.information_unit iu
     WHERE iu.deleted_at = now() AND iu.deleted_by = 'runtime_290' AND iu.delete_reason = 'runtime/rollback/290'
       AND iu.lifecycle_status = 'soft_deleted' AND iu.created_by = 'runtime_290'
       AND iu.canonical_address LIKE 'iu\_core/runtime290/file-001/%'
       AND NOT EXISTS (SELECT 1 FROM public.iu_collection_member m WHERE m.iu_id = iu.iu_id);
    IF v_deleted <> 3 THEN
        RAISE EXCEPTION 'runtime/rollback/290 assert: % piece(s) soft-deleted by this run, expected the 3 that 290 minted', v_deleted;
    END IF;

    SELECT jsonb_object_agg(t.event_type, t.n) INTO v_events
      FROM (SELECT e.event_type, count(DISTINCT e.event_id) AS n FROM public.event_outbox e
             WHERE e.event_domain = 'iu' AND e.actor = 'runtime_290' AND e.created_at >= now()
               AND e.delivery_lane = 'delayed'
               AND e.event_type IN ('piece_removed_from_collection', 'piece_soft_deleted')
             GROUP BY e.event_type) AS t;
    IF v_events IS DISTINCT FROM '{"piece_removed_from_collection": 3, "piece_soft_deleted": 3}'::jsonb THEN
        RAISE EXCEPTION 'runtime/rollback/290 assert: composer events % — expected 3 piece_removed_from_collection + 3 piece_soft_deleted on the delayed lane',
            v_events;
    END IF;

    IF NOT (public.fn_iu_gate_verify_closed(NULL) ->> 'all_safe')::boolean THEN
        RAISE EXCEPTION 'runtime/rollback/290 assert: a protocol gate is still open at the end of the run';
    END IF;
END
$assert$;

SELECT 'runtime_rollback_290' AS "check",
       (SELECT count(*) FROM public.iu_collection c
         WHERE c.collection_key = 'iu_core.runtime290.file-001') AS collections_left,
       (SELECT count(*) FROM public.information_unit iu
         WHERE iu.deleted_at = now() AND iu.delete_reason = 'runtime/rollback/290') AS ius_soft_deleted,
       (public.fn_iu_gate_verify_closed(NULL) ->> 'all_safe')::boolean AS gates_all_safe;
