-- =============================================================================
-- 016 — composer events wired into the composer (seed 003 §6: "2 fn + 2 views;
-- 4 composer fns re-wired").
--
-- Adds (schema public):
--   * fn_iu_composer_emit(text, uuid, jsonb, text) → uuid: emits one composer
--     event through fn_iu_emit_event('iu', type, <collection id>, payload, actor);
--     the subject is the collection id (seed 003 §7). NULL when emission is
--     gated off or the type is not a registered composer-stream type — until
--     revision 260 registers the family, nothing is emitted at all;
--   * fn_iu_collection_checkpoint(uuid, text) → jsonb: validate, render, record
--     last_rendered_at / last_render_digest, emit collection_rendered;
--   * views v_iu_collection_checkpoint and v_iu_composer_event_log.
-- Re-wires (CREATE OR REPLACE, same signatures, same answers plus event ids):
--   fn_iu_compose (1 collection_created + 1 piece_added_to_collection per
--   piece), fn_iu_collection_add_piece (piece_added_to_collection),
--   fn_iu_collection_remove_piece (piece_removed_from_collection),
--   fn_iu_collection_reorder_piece (piece_reordered). Refused or invalid calls
--   emit nothing.
--
-- The preflight checks by md5(prosrc) that the four composer functions are the
-- substrate's own text: the rollback restores exactly that text, so re-wiring
-- anything else would not be reversible. After editing a function body here or
-- in substrate.sql, update the md5 lists here and in rollbacks/016.sql.
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/016.sql "<database url>"
-- Paired rollback: rollbacks/016.sql.
-- =============================================================================

-- @preflight

-- The substrate this revision builds on must be there.
DO $preflight$
DECLARE
    c_functions text[] := ARRAY[
        'public.fn_iu_gate_is_open(text)',
        'public.fn_iu_emit_event(text,text,text,jsonb,text)',
        'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
        'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)',
        'public.fn_iu_collection_remove_piece(uuid,uuid,text)',
        'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)',
        'public.fn_iu_collection_validate(uuid)',
        'public.fn_iu_collection_render(uuid)'];
    c_tables text[] := ARRAY[
        'public.dot_config', 'public.information_unit', 'public.iu_collection',
        'public.iu_collection_member', 'public.event_type_registry', 'public.event_outbox',
        'public.iu_route_attempt'];
    v_missing text[];
BEGIN
    SELECT array_agg(f) INTO v_missing FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    v_missing := coalesce(v_missing, '{}') || coalesce((
        SELECT array_agg(t) FROM unnest(c_tables) AS t WHERE to_regclass(t) IS NULL), '{}');
    IF to_regclass('public.iu_collection') IS NOT NULL THEN
        v_missing := v_missing || coalesce((
            SELECT array_agg('column public.iu_collection.' || col)
              FROM unnest(ARRAY['last_rendered_at', 'last_render_digest']) AS col
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid = 'public.iu_collection'::regclass
                                  AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped)), '{}');
    END IF;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION '016 preflight: substrate missing (%) — apply substrate first (iucore db upgrade substrate)',
            array_to_string(v_missing[1:6], ', ')
            || CASE WHEN cardinality(v_missing) > 6
                    THEN format(', … and %s more', cardinality(v_missing) - 6) ELSE '' END;
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
       AND p.proname IN ('fn_iu_composer_emit', 'fn_iu_collection_checkpoint');
    v_present := coalesce(v_present, '{}') || coalesce((
        SELECT array_agg(r) FROM unnest(ARRAY['public.v_iu_collection_checkpoint',
                                              'public.v_iu_composer_event_log']) AS r
         WHERE to_regclass(r) IS NOT NULL), '{}');
    IF cardinality(v_present) > 0 THEN
        RAISE EXCEPTION '016 preflight: 016 object(s) already present: % — already applied? Check "iucore db current"; to re-apply, roll back first with rollbacks/016.sql',
            array_to_string(v_present, ', ');
    END IF;
END
$preflight$;

-- The four composer functions must be exactly the substrate's text (md5 of the
-- body): 016 replaces them and its rollback puts exactly that text back.
DO $preflight$
DECLARE
    v_rec         record;
    v_rewired     text[] := '{}';
    v_foreign     text[] := '{}';
BEGIN
    FOR v_rec IN
        SELECT x.sig, x.substrate_md5, x.rewired_md5, md5(p.prosrc) AS live_md5
          FROM (VALUES
                  ('public.fn_iu_compose(text,text,text,uuid[],text,text[])', '656eaeda2b914d32d7133596d4a4562f', 'ceafa3f8840f30e0c4cd44c2db357b20'),
                  ('public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)', '8b17bfe5465b636dc427cb8dde2e5b33', '4d42f37455b49745598fa0d8487b636a'),
                  ('public.fn_iu_collection_remove_piece(uuid,uuid,text)', 'ae6f8accab3f8979849536e7c543d04d', 'd81a76454ab1bebd53de7eaf34084bc8'),
                  ('public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)', '37dbee615372f760353a40919fd66ddd', '2e12a5bce7e1fb20a0e8abce4a3e3397'))
               AS x (sig, substrate_md5, rewired_md5)
          JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(x.sig)
    LOOP
        IF v_rec.live_md5 = v_rec.rewired_md5 THEN
            v_rewired := v_rewired || v_rec.sig;
        ELSIF v_rec.live_md5 <> v_rec.substrate_md5 THEN
            v_foreign := v_foreign || v_rec.sig;
        END IF;
    END LOOP;
    IF cardinality(v_rewired) > 0 THEN
        RAISE EXCEPTION '016 preflight: % is already the 016 re-wired version — already applied? Check "iucore db current"',
            array_to_string(v_rewired, ', ');
    END IF;
    IF cardinality(v_foreign) > 0 THEN
        RAISE EXCEPTION '016 preflight: % differs from the substrate definition (changed outside the revision chain) — 016 would overwrite it and its rollback could not put it back; restore the substrate definition first',
            array_to_string(v_foreign, ', ');
    END IF;
END
$preflight$;

-- @body

-- -----------------------------------------------------------------------------
-- 1. The composer emitter
-- -----------------------------------------------------------------------------
CREATE FUNCTION public.fn_iu_composer_emit(
    p_event_type    text,
    p_collection_id uuid,
    p_payload       jsonb,
    p_actor         text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
BEGIN
    IF p_event_type IS NULL OR p_collection_id IS NULL OR p_actor IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'fn_iu_composer_emit: p_event_type, p_collection_id and p_actor are required';
    END IF;

    -- Only the composer stream: a collection never becomes the subject of a
    -- lifecycle or structure event. An unregistered type (before revision 260)
    -- emits nothing, exactly as fn_iu_emit_event answers an unknown type.
    IF NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                    WHERE r.event_domain = 'iu'
                      AND r.event_type = p_event_type
                      AND r.event_stream = 'composer') THEN
        RETURN NULL;
    END IF;

    -- Subject = the collection id (seed 003 §7); the payload always carries it.
    -- Gating, lane and stream are fn_iu_emit_event's (registry-driven).
    RETURN public.fn_iu_emit_event('iu', p_event_type, p_collection_id::text,
                                   coalesce(p_payload, '{}') || jsonb_build_object('collection_id', p_collection_id),
                                   p_actor);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 2. The four composer functions, re-wired: the substrate text plus emission
-- -----------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.fn_iu_compose(
    p_collection_key  text,
    p_collection_kind text,
    p_title           text,
    p_piece_ids       uuid[],
    p_actor           text,
    p_labels          text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_collection_id uuid;
    v_dups          uuid[];
    v_unknown       uuid[];
    v_inactive      uuid[];
    v_event_id      uuid;
    v_event_ids     uuid[] := '{}';
    v_piece         record;
    v_piece_event   uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; no collection was composed.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_collection_key IS NULL OR p_collection_key !~ '^[a-z0-9][a-z0-9._/-]*$' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_key',
                                  'guidance', 'Required; lower-case letters, digits and . _ / - only, starting with a letter or digit.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_collection_kind IS NULL OR p_collection_kind NOT IN ('file', 'workflow', 'design_doc') THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_kind',
                                  'guidance', 'One of file, workflow, design_doc.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_title IS NULL OR btrim(p_title) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'title',
                                  'guidance', 'Required and not blank.', 'next_action', 'fix_input_and_retry');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who is composing.', 'next_action', 'fix_input_and_retry');
    END IF;
    IF p_piece_ids IS NULL OR cardinality(p_piece_ids) = 0 OR array_ndims(p_piece_ids) <> 1
       OR array_position(p_piece_ids, NULL) IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'piece_ids',
                                  'guidance', 'A one-dimensional array of at least one piece id, without NULLs.',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    SELECT array_agg(d.x ORDER BY d.x) INTO v_dups
      FROM (SELECT x FROM unnest(p_piece_ids) AS x GROUP BY x HAVING count(*) > 1) AS d;
    IF v_dups IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'piece_ids',
                                  'duplicate_ids', to_jsonb(v_dups),
                                  'guidance', 'A piece can appear only once in a collection.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_labels IS NOT NULL AND (array_ndims(p_labels) > 1 OR cardinality(p_labels) > cardinality(p_piece_ids)) THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'labels',
                                  'guidance', 'At most one label per piece, in piece order (missing labels are NULL).',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    SELECT c.collection_id INTO v_collection_id
      FROM public.iu_collection c WHERE c.collection_key = p_collection_key;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'duplicate', 'collection_id', v_collection_id,
                                  'collection_key', p_collection_key,
                                  'guidance', 'A collection with this key already exists; nothing was composed.',
                                  'next_action', 'use_existing_collection');
    END IF;

    -- Hold the pieces so none is retired while it is being composed.
    PERFORM 1 FROM public.information_unit iu
      WHERE iu.iu_id = ANY (p_piece_ids)
      ORDER BY iu.iu_id
        FOR SHARE;

    SELECT array_agg(u.x ORDER BY u.ord) FILTER (WHERE iu.iu_id IS NULL),
           array_agg(u.x ORDER BY u.ord) FILTER (WHERE iu.iu_id IS NOT NULL
                                                   AND (iu.lifecycle_status <> 'active' OR iu.deleted_at IS NOT NULL))
      INTO v_unknown, v_inactive
      FROM unnest(p_piece_ids) WITH ORDINALITY AS u (x, ord)
      LEFT JOIN public.information_unit iu ON iu.iu_id = u.x;
    IF v_unknown IS NOT NULL OR v_inactive IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'piece_ids',
                                  'unknown_ids', coalesce(to_jsonb(v_unknown), '[]'),
                                  'inactive_ids', coalesce(to_jsonb(v_inactive), '[]'),
                                  'guidance', 'Every piece must exist and be active (not retired, not soft-deleted).',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    INSERT INTO public.iu_collection (collection_key, collection_kind, title, created_by)
    VALUES (p_collection_key, p_collection_kind, p_title, p_actor)
    ON CONFLICT (collection_key) DO NOTHING
    RETURNING collection_id INTO v_collection_id;
    IF v_collection_id IS NULL THEN
        -- Lost a race with a concurrent compose of the same key.
        SELECT c.collection_id INTO v_collection_id
          FROM public.iu_collection c WHERE c.collection_key = p_collection_key;
        RETURN jsonb_build_object('status', 'duplicate', 'collection_id', v_collection_id,
                                  'collection_key', p_collection_key,
                                  'guidance', 'A collection with this key already exists; nothing was composed.',
                                  'next_action', 'use_existing_collection');
    END IF;

    INSERT INTO public.iu_collection_member (collection_id, iu_id, piece_order, label, added_by)
    SELECT v_collection_id, u.x, (u.ord - 1)::integer, p_labels[u.ord::integer], p_actor
      FROM unnest(p_piece_ids) WITH ORDINALITY AS u (x, ord);

    -- 016: one collection_created, then one piece_added_to_collection per piece
    -- in piece order (seed 001 §1). NULL ids (emission gated off, or the family
    -- not registered yet) are left out of event_ids.
    v_event_id := public.fn_iu_composer_emit('collection_created', v_collection_id,
        jsonb_build_object('collection_key', p_collection_key, 'collection_kind', p_collection_kind,
                           'title', p_title, 'member_count', cardinality(p_piece_ids)),
        p_actor);
    IF v_event_id IS NOT NULL THEN
        v_event_ids := v_event_ids || v_event_id;
    END IF;
    FOR v_piece IN
        SELECT u.x AS iu_id, (u.ord - 1)::integer AS piece_order, p_labels[u.ord::integer] AS label
          FROM unnest(p_piece_ids) WITH ORDINALITY AS u (x, ord)
         ORDER BY u.ord
    LOOP
        v_piece_event := public.fn_iu_composer_emit('piece_added_to_collection', v_collection_id,
            jsonb_build_object('iu_id', v_piece.iu_id, 'piece_order', v_piece.piece_order, 'label', v_piece.label),
            p_actor);
        IF v_piece_event IS NOT NULL THEN
            v_event_ids := v_event_ids || v_piece_event;
        END IF;
    END LOOP;

    RETURN jsonb_build_object('status', 'composed', 'collection_id', v_collection_id,
                              'collection_key', p_collection_key,
                              'member_count', cardinality(p_piece_ids),
                              'event_id', v_event_id,
                              'event_ids', to_jsonb(v_event_ids));
END
$fn$;

CREATE OR REPLACE FUNCTION public.fn_iu_collection_add_piece(
    p_collection_id uuid,
    p_iu_id         uuid,
    p_actor         text,
    p_position      integer DEFAULT NULL,
    p_label         text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_status    text;
    v_piece     record;
    v_existing  integer;
    v_count     integer;
    v_position  integer;
    v_event_id  uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; no piece was added.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who is adding the piece.', 'next_action', 'fix_input_and_retry');
    END IF;

    -- Lock the collection: membership changes of one collection are serialised.
    SELECT c.status INTO v_status
      FROM public.iu_collection c WHERE c.collection_id = p_collection_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', 'No collection has this id.', 'next_action', 'check_collection_id');
    END IF;
    IF v_status <> 'active' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', format('The collection is %s; only active collections change.', v_status),
                                  'next_action', 'check_collection_id');
    END IF;

    SELECT iu.lifecycle_status, iu.deleted_at INTO v_piece
      FROM public.information_unit iu WHERE iu.iu_id = p_iu_id
       FOR SHARE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'No information unit has this id.', 'next_action', 'check_iu_id');
    END IF;
    IF v_piece.lifecycle_status <> 'active' OR v_piece.deleted_at IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', format('The piece is %s; only active pieces can be added.', v_piece.lifecycle_status),
                                  'next_action', 'check_iu_id');
    END IF;

    SELECT m.piece_order INTO v_existing
      FROM public.iu_collection_member m
     WHERE m.collection_id = p_collection_id AND m.iu_id = p_iu_id;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'duplicate', 'collection_id', p_collection_id,
                                  'iu_id', p_iu_id, 'piece_order', v_existing,
                                  'guidance', 'The piece is already a member; use reorder to move it.',
                                  'next_action', 'use_reorder');
    END IF;

    SELECT count(*) INTO v_count
      FROM public.iu_collection_member m WHERE m.collection_id = p_collection_id;
    v_position := coalesce(p_position, v_count);
    IF v_position < 0 OR v_position > v_count THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'position',
                                  'guidance', format('Position must be between 0 and %s (NULL appends).', v_count),
                                  'next_action', 'fix_input_and_retry');
    END IF;

    -- Make room (the order constraint is deferred, so one UPDATE shifts the run).
    UPDATE public.iu_collection_member m
       SET piece_order = m.piece_order + 1
     WHERE m.collection_id = p_collection_id AND m.piece_order >= v_position;

    INSERT INTO public.iu_collection_member (collection_id, iu_id, piece_order, label, added_by)
    VALUES (p_collection_id, p_iu_id, v_position, p_label, p_actor);

    UPDATE public.iu_collection c SET updated_at = now() WHERE c.collection_id = p_collection_id;

    -- 016: the delta, as a composer event (NULL while emission is off or unregistered).
    v_event_id := public.fn_iu_composer_emit('piece_added_to_collection', p_collection_id,
        jsonb_build_object('iu_id', p_iu_id, 'piece_order', v_position, 'label', p_label),
        p_actor);

    RETURN jsonb_build_object('status', 'added', 'collection_id', p_collection_id, 'iu_id', p_iu_id,
                              'piece_order', v_position, 'member_count', v_count + 1,
                              'event_id', v_event_id);
END
$fn$;

CREATE OR REPLACE FUNCTION public.fn_iu_collection_remove_piece(
    p_collection_id uuid,
    p_iu_id         uuid,
    p_actor         text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_status    text;
    v_old_order integer;
    v_count     integer;
    v_event_id  uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; no piece was removed.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who is removing the piece.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT c.status INTO v_status
      FROM public.iu_collection c WHERE c.collection_id = p_collection_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', 'No collection has this id.', 'next_action', 'check_collection_id');
    END IF;
    IF v_status <> 'active' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', format('The collection is %s; only active collections change.', v_status),
                                  'next_action', 'check_collection_id');
    END IF;

    -- Only the membership goes; the piece itself stays (retire is a different verb).
    DELETE FROM public.iu_collection_member m
     WHERE m.collection_id = p_collection_id AND m.iu_id = p_iu_id
    RETURNING m.piece_order INTO v_old_order;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'The piece is not a member of this collection.',
                                  'next_action', 'check_iu_id');
    END IF;

    -- Compact to 0..n-1 whatever the previous gaps were.
    UPDATE public.iu_collection_member m
       SET piece_order = s.new_order
      FROM (SELECT mm.iu_id, (row_number() OVER (ORDER BY mm.piece_order) - 1)::integer AS new_order
              FROM public.iu_collection_member mm
             WHERE mm.collection_id = p_collection_id) AS s
     WHERE m.collection_id = p_collection_id
       AND m.iu_id = s.iu_id
       AND m.piece_order <> s.new_order;

    SELECT count(*) INTO v_count
      FROM public.iu_collection_member m WHERE m.collection_id = p_collection_id;

    UPDATE public.iu_collection c SET updated_at = now() WHERE c.collection_id = p_collection_id;

    -- 016: the delta, as a composer event (NULL while emission is off or unregistered).
    v_event_id := public.fn_iu_composer_emit('piece_removed_from_collection', p_collection_id,
        jsonb_build_object('iu_id', p_iu_id, 'old_order', v_old_order),
        p_actor);

    RETURN jsonb_build_object('status', 'removed', 'collection_id', p_collection_id, 'iu_id', p_iu_id,
                              'old_order', v_old_order, 'member_count', v_count,
                              'event_id', v_event_id);
END
$fn$;

CREATE OR REPLACE FUNCTION public.fn_iu_collection_reorder_piece(
    p_collection_id uuid,
    p_iu_id         uuid,
    p_new_order     integer,
    p_actor         text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_status    text;
    v_old_order integer;
    v_count     integer;
    v_event_id  uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; nothing was reordered.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who is reordering.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT c.status INTO v_status
      FROM public.iu_collection c WHERE c.collection_id = p_collection_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', 'No collection has this id.', 'next_action', 'check_collection_id');
    END IF;
    IF v_status <> 'active' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', format('The collection is %s; only active collections change.', v_status),
                                  'next_action', 'check_collection_id');
    END IF;

    SELECT m.piece_order INTO v_old_order
      FROM public.iu_collection_member m
     WHERE m.collection_id = p_collection_id AND m.iu_id = p_iu_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'The piece is not a member of this collection.',
                                  'next_action', 'check_iu_id');
    END IF;

    SELECT count(*) INTO v_count
      FROM public.iu_collection_member m WHERE m.collection_id = p_collection_id;
    IF p_new_order IS NULL OR p_new_order < 0 OR p_new_order >= v_count THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'new_order',
                                  'guidance', format('new_order must be between 0 and %s.', v_count - 1),
                                  'next_action', 'fix_input_and_retry');
    END IF;

    -- MOVE semantics: the piece leaves its slot and the pieces in between slide
    -- by one, so moving it back to old_order is the exact inverse (seed 000 step 5).
    IF p_new_order <> v_old_order THEN
        UPDATE public.iu_collection_member m
           SET piece_order = CASE
                   WHEN m.iu_id = p_iu_id THEN p_new_order
                   WHEN p_new_order < v_old_order THEN m.piece_order + 1
                   ELSE m.piece_order - 1
               END
         WHERE m.collection_id = p_collection_id
           AND m.piece_order BETWEEN least(v_old_order, p_new_order) AND greatest(v_old_order, p_new_order);

        UPDATE public.iu_collection c SET updated_at = now() WHERE c.collection_id = p_collection_id;

        -- 016: a real move is a delta; a move to the same slot changes nothing and emits nothing.
        v_event_id := public.fn_iu_composer_emit('piece_reordered', p_collection_id,
            jsonb_build_object('iu_id', p_iu_id, 'old_order', v_old_order, 'new_order', p_new_order),
            p_actor);
    END IF;

    RETURN jsonb_build_object('status', 'reordered', 'collection_id', p_collection_id, 'iu_id', p_iu_id,
                              'old_order', v_old_order, 'new_order', p_new_order,
                              'event_id', v_event_id);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 3. The collection checkpoint
-- -----------------------------------------------------------------------------
CREATE FUNCTION public.fn_iu_collection_checkpoint(p_collection_id uuid, p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_status     text;
    v_validation jsonb;
    v_render     jsonb;
    v_digest     text;
    v_at         timestamptz;
    v_event_id   uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; nothing was checkpointed.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who checkpoints.', 'next_action', 'fix_input_and_retry');
    END IF;

    -- Lock the collection: no membership change slips between render and record.
    SELECT c.status INTO v_status
      FROM public.iu_collection c WHERE c.collection_id = p_collection_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'collection_id',
                                  'guidance', 'No collection has this id.', 'next_action', 'check_collection_id');
    END IF;

    -- Fail closed: only a collection that validates is checkpointed.
    v_validation := public.fn_iu_collection_validate(p_collection_id);
    IF NOT coalesce((v_validation ->> 'ok')::boolean, false) THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'validation_failed',
                                  'collection_id', p_collection_id,
                                  'validation', v_validation,
                                  'guidance', 'The collection does not validate (see validation.checks); nothing was checkpointed.',
                                  'next_action', 'fix_collection_and_retry');
    END IF;

    v_render := public.fn_iu_collection_render(p_collection_id);
    v_digest := v_render ->> 'digest';

    UPDATE public.iu_collection c
       SET last_rendered_at = now(), last_render_digest = v_digest
     WHERE c.collection_id = p_collection_id
    RETURNING c.last_rendered_at INTO v_at;

    v_event_id := public.fn_iu_composer_emit('collection_rendered', p_collection_id,
        jsonb_build_object('collection_key', v_render ->> 'collection_key',
                           'digest', v_digest,
                           'member_count', (v_render ->> 'member_count')::integer),
        p_actor);

    RETURN jsonb_build_object('status', 'checkpointed',
                              'collection_id', p_collection_id,
                              'collection_key', v_render ->> 'collection_key',
                              'digest', v_digest,
                              'member_count', (v_render ->> 'member_count')::integer,
                              'last_rendered_at', v_at,
                              'event_id', v_event_id);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 4. Views
-- -----------------------------------------------------------------------------
CREATE VIEW public.v_iu_collection_checkpoint AS
SELECT c.collection_key,
       c.last_rendered_at,
       c.last_render_digest,
       (SELECT count(*) FROM public.iu_collection_member m
         WHERE m.collection_id = c.collection_id)              AS member_count,
       (SELECT count(*) FROM public.event_outbox e
         WHERE e.event_domain = 'iu'
           AND e.event_type = 'collection_rendered'
           AND e.event_subject_ref = c.collection_id::text)   AS rendered_events
  FROM public.iu_collection c;

-- Composer events are the iu-domain 'composer' stream. Their subject is the
-- collection id, except the piece lifecycle pair of 017 (piece_soft_deleted /
-- piece_restored), whose subject is the piece: for those collection_id is NULL
-- and event_subject_ref names the piece.
CREATE VIEW public.v_iu_composer_event_log AS
SELECT e.event_id,
       e.event_type,
       CASE WHEN e.payload ? 'collection_id' THEN e.event_subject_ref END AS collection_id,
       e.delivery_lane,
       e.created_at,
       e.actor,
       (SELECT count(*) FROM public.iu_route_attempt a
         WHERE a.event_id = e.event_id)                       AS attempts,
       e.event_subject_ref
  FROM public.event_outbox e
 WHERE e.event_domain = 'iu'
   AND e.event_stream = 'composer';

-- -----------------------------------------------------------------------------
-- 5. Privileges: the two new writers are not for PUBLIC (the four re-wired
-- functions keep the substrate's grants: CREATE OR REPLACE leaves ACLs alone).
-- -----------------------------------------------------------------------------
REVOKE EXECUTE ON FUNCTION public.fn_iu_composer_emit(text, uuid, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_collection_checkpoint(uuid, text) FROM PUBLIC;

-- @postcheck

DO $postcheck$
DECLARE
    c_new text[] := ARRAY[
        'public.fn_iu_composer_emit(text,uuid,jsonb,text)',
        'public.fn_iu_collection_checkpoint(uuid,text)'];
    c_rewired text[] := ARRAY[
        'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
        'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)',
        'public.fn_iu_collection_remove_piece(uuid,uuid,text)',
        'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)'];
    v_bad  text[];
    v_id   uuid;
BEGIN
    SELECT array_agg(f) INTO v_bad FROM unnest(c_new || c_rewired) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '016 post-check: function(s) not resolvable: %', array_to_string(v_bad, ', ');
    END IF;

    SELECT array_agg(v) INTO v_bad
      FROM unnest(ARRAY['public.v_iu_collection_checkpoint', 'public.v_iu_composer_event_log']) AS v
     WHERE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass(v)) IS DISTINCT FROM 'v';
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '016 post-check: view(s) missing: %', array_to_string(v_bad, ', ');
    END IF;

    SELECT array_agg(f) INTO v_bad
      FROM unnest(c_rewired) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE strpos(p.prosrc, 'public.fn_iu_composer_emit(') = 0;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '016 post-check: composer function(s) not re-wired to fn_iu_composer_emit: %',
            array_to_string(v_bad, ', ');
    END IF;

    -- No new SECURITY DEFINER; every function pins its search_path.
    SELECT array_agg(f) INTO v_bad
      FROM unnest(c_new || c_rewired) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE p.prosecdef OR NOT coalesce('search_path=public, pg_temp' = ANY (p.proconfig), false);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '016 post-check: SECURITY DEFINER or unpinned search_path: %', array_to_string(v_bad, ', ');
    END IF;

    SELECT array_agg(f) INTO v_bad
      FROM unnest(c_new || c_rewired) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '016 post-check: PUBLIC can still EXECUTE: %', array_to_string(v_bad, ', ');
    END IF;

    -- The emitter never makes a collection the subject of a non-composer event
    -- (iu_created is registered, on the lifecycle stream). Probed in a
    -- subtransaction that is always undone, so the post-check leaves nothing.
    BEGIN
        v_id := public.fn_iu_composer_emit('iu_created', gen_random_uuid(), '{}', '016_postcheck');
        RAISE EXCEPTION USING ERRCODE = 'IUP16', MESSAGE = 'undo the probe';
    EXCEPTION
        WHEN SQLSTATE 'IUP16' THEN NULL;
    END;
    IF v_id IS NOT NULL THEN
        RAISE EXCEPTION '016 post-check: fn_iu_composer_emit emitted a non-composer event type (iu_created)';
    END IF;
END
$postcheck$;

SELECT '016_objects' AS "check",
       (SELECT count(*) FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_composer_emit', 'fn_iu_collection_checkpoint')) AS functions_added,
       (SELECT count(*) FROM pg_catalog.pg_class c
         WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace
           AND c.relname IN ('v_iu_collection_checkpoint', 'v_iu_composer_event_log')) AS views_added,
       (SELECT count(*) FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_compose', 'fn_iu_collection_add_piece',
                             'fn_iu_collection_remove_piece', 'fn_iu_collection_reorder_piece')
           AND strpos(p.prosrc, 'public.fn_iu_composer_emit(') > 0) AS composer_functions_rewired,
       (SELECT count(*) FROM public.event_type_registry r
         WHERE r.event_domain = 'iu' AND r.event_stream = 'composer') AS composer_types_registered;
