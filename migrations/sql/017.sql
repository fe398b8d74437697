-- =============================================================================
-- 017 — the governed piece-disposal pair: soft-delete with restore
-- (seed 003 §8: "2 governed piece-disposal fns").
--
-- The three piece-disposal verbs are crisply distinct:
--   * remove from collection  fn_iu_collection_remove_piece  the membership goes, the piece stays active;
--   * retire globally         fn_iu_retire                   final, not reversible;
--   * soft-delete             fn_iu_piece_soft_delete        reversible by fn_iu_piece_restore.
-- Soft-delete refuses a piece that is still a member of a collection (remove it
-- first: a different verb) and a retired piece (retire is final). Both
-- functions sit behind iu_core.structure_ops_enabled (refusal as jsonb), are
-- SECURITY INVOKER with a pinned search_path, not executable by PUBLIC, and
-- emit piece_soft_deleted / piece_restored (registered by 260; subject = the
-- piece id, delayed lane, so a soft-delete → restore → soft-delete cycle is
-- never deduplicated).
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/017.sql "<database url>"
-- Paired rollback: rollbacks/017.sql.
-- =============================================================================

-- @preflight

-- 260's composer family (incl. the piece pair) and the substrate's units.
DO $preflight$
DECLARE
    v_missing text[];
BEGIN
    SELECT array_agg(x) INTO v_missing FROM (
        SELECT f AS x FROM unnest(ARRAY['public.fn_iu_emit_event(text,text,text,jsonb,text)',
                                        'public.fn_iu_gate_is_open(text)',
                                        'public.fn_iu_composer_emit(text,uuid,jsonb,text)']) AS f
         WHERE to_regprocedure(f) IS NULL
        UNION ALL
        SELECT t FROM unnest(ARRAY['public.information_unit', 'public.iu_collection_member',
                                   'public.iu_collection', 'public.event_type_registry',
                                   'public.dot_config']) AS t
         WHERE to_regclass(t) IS NULL
    ) AS m;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '017 preflight: substrate / 016 missing (%) — apply 260 first (iucore db upgrade 260)',
            array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg('iu.' || t) INTO v_missing
      FROM unnest(ARRAY['collection_created', 'piece_added_to_collection', 'piece_removed_from_collection',
                        'piece_reordered', 'collection_rendered', 'collection_validated',
                        'piece_soft_deleted', 'piece_restored']) AS t
     WHERE NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                        WHERE r.event_domain = 'iu' AND r.event_type = t AND r.active
                          AND r.event_stream = 'composer' AND r.delivery_lane = 'delayed');
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '017 preflight: migration 260 composer event family missing (% not registered as iu/composer/delayed/active) — apply 260 first (iucore db upgrade 260)',
            array_to_string(v_missing, ', ');
    END IF;

    -- The columns and the status the pair writes (the substrate made them for 017).
    SELECT array_agg('column public.information_unit.' || col) INTO v_missing
      FROM unnest(ARRAY['lifecycle_status', 'deleted_at', 'deleted_by', 'delete_reason', 'updated_at']) AS col
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = 'public.information_unit'::regclass
                          AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '017 preflight: % missing — the substrate''s information_unit is not what 017 expects',
            array_to_string(v_missing, ', ');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co
                    WHERE co.conrelid = 'public.information_unit'::regclass AND co.contype = 'c'
                      AND pg_get_constraintdef(co.oid) LIKE '%lifecycle_status%'
                      AND pg_get_constraintdef(co.oid) LIKE '%''soft_deleted''%') THEN
        RAISE EXCEPTION '017 preflight: information_unit.lifecycle_status does not admit ''soft_deleted'' — the substrate''s CHECK is missing or changed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.dot_config c WHERE c.key = 'iu_core.structure_ops_enabled') THEN
        RAISE EXCEPTION '017 preflight: gate iu_core.structure_ops_enabled missing from public.dot_config — the pair would be ungoverned';
    END IF;
END
$preflight$;

-- Refuse to re-apply over ourselves.
DO $preflight$
DECLARE
    v_present text[];
BEGIN
    SELECT array_agg(DISTINCT 'function public.' || p.proname) INTO v_present
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proname IN ('fn_iu_piece_soft_delete', 'fn_iu_piece_restore');
    IF v_present IS NOT NULL THEN
        RAISE EXCEPTION '017 preflight: % already present — already applied? Check "iucore db current"; to re-apply, roll back first with rollbacks/017.sql',
            array_to_string(v_present, ', ');
    END IF;
END
$preflight$;

-- @body

CREATE FUNCTION public.fn_iu_piece_soft_delete(p_iu_id uuid, p_reason text, p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_iu          record;
    v_collections text[];
    v_event_id    uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.structure_ops_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.structure_ops_enabled',
                                  'guidance', 'The structure-ops gate is shut; nothing was soft-deleted.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'reason',
                                  'guidance', 'Required: why the piece is soft-deleted.', 'next_action', 'fix_input_and_retry');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who soft-deletes the piece.', 'next_action', 'fix_input_and_retry');
    END IF;

    -- FOR UPDATE: add_piece / compose hold the piece FOR SHARE, so a piece
    -- cannot join a collection while it is being soft-deleted.
    SELECT iu.lifecycle_status, iu.canonical_address INTO v_iu
      FROM public.information_unit iu WHERE iu.iu_id = p_iu_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'No information unit has this id.', 'next_action', 'check_iu_id');
    END IF;
    IF v_iu.lifecycle_status = 'soft_deleted' THEN
        RETURN jsonb_build_object('status', 'already_soft_deleted', 'iu_id', p_iu_id, 'restorable', true,
                                  'guidance', 'The piece is already soft-deleted; nothing changed. fn_iu_piece_restore brings it back.');
    END IF;
    IF v_iu.lifecycle_status = 'retired' THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'piece_retired', 'iu_id', p_iu_id,
                                  'guidance', 'The piece is retired: retire is global and final, a different verb; a retired piece is never soft-deleted or restored.',
                                  'next_action', 'none');
    END IF;
    IF v_iu.lifecycle_status <> 'active' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', format('The piece is %s; only active pieces are soft-deleted.', v_iu.lifecycle_status),
                                  'next_action', 'check_iu_id');
    END IF;

    -- Soft-delete is global; leaving a collection is a different verb.
    SELECT array_agg(c.collection_key ORDER BY c.collection_key) INTO v_collections
      FROM public.iu_collection_member m
      JOIN public.iu_collection c ON c.collection_id = m.collection_id
     WHERE m.iu_id = p_iu_id;
    IF v_collections IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'member_of_collection',
                                  'iu_id', p_iu_id, 'collections', to_jsonb(v_collections),
                                  'guidance', 'The piece is still a member of a collection; nothing was soft-deleted. Remove it from the collection(s) first (fn_iu_collection_remove_piece) — removing from a collection is a different verb.',
                                  'next_action', 'remove_from_collections_first');
    END IF;

    UPDATE public.information_unit iu
       SET lifecycle_status = 'soft_deleted', deleted_at = now(), deleted_by = p_actor,
           delete_reason = p_reason, updated_at = now()
     WHERE iu.iu_id = p_iu_id;

    v_event_id := public.fn_iu_emit_event('iu', 'piece_soft_deleted', p_iu_id::text,
        jsonb_build_object('iu_id', p_iu_id, 'canonical_address', v_iu.canonical_address, 'reason', p_reason),
        p_actor);

    RETURN jsonb_build_object('status', 'soft_deleted', 'iu_id', p_iu_id, 'restorable', true,
                              'event_id', v_event_id);
END
$fn$;

CREATE FUNCTION public.fn_iu_piece_restore(p_iu_id uuid, p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_iu       record;
    v_event_id uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.structure_ops_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.structure_ops_enabled',
                                  'guidance', 'The structure-ops gate is shut; nothing was restored.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who restores the piece.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT iu.lifecycle_status, iu.canonical_address, iu.deleted_at, iu.deleted_by, iu.delete_reason INTO v_iu
      FROM public.information_unit iu WHERE iu.iu_id = p_iu_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'No information unit has this id.', 'next_action', 'check_iu_id');
    END IF;
    IF v_iu.lifecycle_status <> 'soft_deleted' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id', 'reason', 'not_soft_deleted',
                                  'iu_id', p_iu_id, 'lifecycle_status', v_iu.lifecycle_status,
                                  'guidance', CASE WHEN v_iu.lifecycle_status = 'retired'
                                                   THEN 'The piece is retired: retire is final and cannot be restored. Only a soft-deleted piece can be restored.'
                                                   ELSE format('The piece is %s; only a soft-deleted piece can be restored.', v_iu.lifecycle_status) END,
                                  'next_action', 'check_iu_id');
    END IF;

    UPDATE public.information_unit iu
       SET lifecycle_status = 'active', deleted_at = NULL, deleted_by = NULL, delete_reason = NULL,
           updated_at = now()
     WHERE iu.iu_id = p_iu_id;

    v_event_id := public.fn_iu_emit_event('iu', 'piece_restored', p_iu_id::text,
        jsonb_build_object('iu_id', p_iu_id, 'canonical_address', v_iu.canonical_address,
                           'deleted_at', v_iu.deleted_at, 'deleted_by', v_iu.deleted_by,
                           'delete_reason', v_iu.delete_reason),
        p_actor);

    RETURN jsonb_build_object('status', 'restored', 'iu_id', p_iu_id, 'event_id', v_event_id);
END
$fn$;

REVOKE EXECUTE ON FUNCTION public.fn_iu_piece_soft_delete(uuid, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_piece_restore(uuid, text) FROM PUBLIC;

-- @postcheck

DO $postcheck$
DECLARE
    c_functions text[] := ARRAY['public.fn_iu_piece_soft_delete(uuid,text,text)',
                                'public.fn_iu_piece_restore(uuid,text)'];
    v_bad text[];
BEGIN
    SELECT array_agg(f) INTO v_bad FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '017 post-check: function(s) not resolvable: %', array_to_string(v_bad, ', ');
    END IF;

    SELECT array_agg(f) INTO v_bad
      FROM unnest(c_functions) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE p.prosecdef
        OR NOT coalesce('search_path=public, pg_temp' = ANY (p.proconfig), false)
        OR p.prorettype <> 'jsonb'::regtype
        OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '017 post-check: not SECURITY INVOKER / pinned search_path / jsonb / revoked from PUBLIC: %',
            array_to_string(v_bad, ', ');
    END IF;

    -- Governed: with the gate shut both answer a refusal and change nothing.
    -- Probed in a subtransaction that is always undone.
    IF NOT public.fn_iu_gate_is_open('iu_core.structure_ops_enabled') THEN
        BEGIN
            IF public.fn_iu_piece_soft_delete(gen_random_uuid(), '017 post-check', '017_postcheck') ->> 'reason' IS DISTINCT FROM 'gate_closed'
               OR public.fn_iu_piece_restore(gen_random_uuid(), '017_postcheck') ->> 'reason' IS DISTINCT FROM 'gate_closed' THEN
                RAISE EXCEPTION USING ERRCODE = 'IUP17', MESSAGE = 'not gated';
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'IUP18', MESSAGE = 'undo the probe';
        EXCEPTION
            WHEN SQLSTATE 'IUP17' THEN
                RAISE EXCEPTION '017 post-check: with iu_core.structure_ops_enabled shut the pair did not refuse (gate_closed)';
            WHEN SQLSTATE 'IUP18' THEN NULL;
        END;
    END IF;
END
$postcheck$;

SELECT '017_disposal_pair' AS "check",
       (SELECT count(*) FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_piece_soft_delete', 'fn_iu_piece_restore')) AS functions_added,
       (SELECT count(*) FROM public.event_type_registry r
         WHERE r.event_domain = 'iu' AND r.event_type IN ('piece_soft_deleted', 'piece_restored')
           AND r.delivery_lane = 'delayed' AND r.active) AS event_types_ready,
       (SELECT count(*) FROM public.information_unit WHERE lifecycle_status = 'soft_deleted') AS soft_deleted_pieces;
