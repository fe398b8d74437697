-- =============================================================================
-- 016 — fail-closed rollback: back to the substrate composer.
--
-- Restores the substrate's four composer functions exactly (same text, so the
-- same pg_get_functiondef; CREATE OR REPLACE keeps their grants), then drops
-- the two views and the two functions 016 added. Nothing else: the collection
-- rows, their last_rendered_at / last_render_digest (substrate columns) and
-- any event rows stay.
--
-- The guard refuses (and nothing changes) when:
--   * the database is not at 016 (its objects are missing);
--   * revision 260 is still applied (composer event types registered): the
--     re-wired functions are what emit them — roll back 260 first;
--   * a re-wired function is no longer 016's text (changed since): restoring
--     the substrate text would silently discard that change;
--   * another object depends on a view this rollback drops.
-- Drops carry no CASCADE and no IF EXISTS.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/016.sql "<database url>"
-- =============================================================================

-- @guard

DO $guard$
DECLARE
    v_missing text[];
BEGIN
    SELECT array_agg(f) INTO v_missing
      FROM unnest(ARRAY['public.fn_iu_composer_emit(text,uuid,jsonb,text)',
                        'public.fn_iu_collection_checkpoint(uuid,text)',
                        'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
                        'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)',
                        'public.fn_iu_collection_remove_piece(uuid,uuid,text)',
                        'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)']) AS f
     WHERE to_regprocedure(f) IS NULL;
    v_missing := coalesce(v_missing, '{}') || coalesce((
        SELECT array_agg(v) FROM unnest(ARRAY['public.v_iu_collection_checkpoint',
                                              'public.v_iu_composer_event_log',
                                              'public.event_type_registry']) AS v
         WHERE to_regclass(v) IS NULL), '{}');
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION '016 rollback refused: % missing — the database is not at revision 016; inspect it ("iucore db current") before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- 260 registers the composer family that the re-wired functions emit.
DO $guard$
DECLARE
    v_types text[];
BEGIN
    SELECT array_agg(r.event_domain || '.' || r.event_type ORDER BY r.event_type) INTO v_types
      FROM public.event_type_registry r
     WHERE r.event_domain = 'iu' AND r.event_stream = 'composer';
    IF v_types IS NOT NULL THEN
        RAISE EXCEPTION '016 rollback refused: % composer event type(s) still registered (%) — revision 260 is still applied; roll it back first (iucore db downgrade 016)',
            cardinality(v_types), array_to_string(v_types, ', ');
    END IF;
END
$guard$;

-- The four functions must still be exactly what 016 installed.
DO $guard$
DECLARE
    v_changed text[];
BEGIN
    SELECT array_agg(x.sig ORDER BY x.sig) INTO v_changed
      FROM (VALUES
              ('public.fn_iu_compose(text,text,text,uuid[],text,text[])', 'ceafa3f8840f30e0c4cd44c2db357b20'),
              ('public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)', '4d42f37455b49745598fa0d8487b636a'),
              ('public.fn_iu_collection_remove_piece(uuid,uuid,text)', 'd81a76454ab1bebd53de7eaf34084bc8'),
              ('public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)', '2e12a5bce7e1fb20a0e8abce4a3e3397'))
           AS x (sig, rewired_md5)
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(x.sig)
     WHERE md5(p.prosrc) <> x.rewired_md5;
    IF v_changed IS NOT NULL THEN
        RAISE EXCEPTION '016 rollback refused: % no longer the 016 definition (changed since 016 was applied) — restoring the substrate text would discard that change; put the 016 definition back (or roll back whatever changed it) first',
            array_to_string(v_changed, ', ');
    END IF;
END
$guard$;

DO $guard$
DECLARE
    v_dependents text[];
BEGIN
    SELECT array_agg(DISTINCT d.classid::regclass::text || ' ' || coalesce(v.oid::regclass::text, d.objid::text)) INTO v_dependents
      FROM pg_catalog.pg_depend d
      LEFT JOIN pg_catalog.pg_rewrite rw ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND rw.oid = d.objid
      LEFT JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class
     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass
       AND d.refobjid IN ('public.v_iu_collection_checkpoint'::regclass, 'public.v_iu_composer_event_log'::regclass)
       AND d.deptype = 'n'
       AND coalesce(v.oid NOT IN ('public.v_iu_collection_checkpoint'::regclass,
                                  'public.v_iu_composer_event_log'::regclass), true);
    IF v_dependents IS NOT NULL THEN
        RAISE EXCEPTION '016 rollback refused: object(s) depend on the 016 views: % — drop or roll those back first',
            array_to_string(v_dependents, ', ');
    END IF;
END
$guard$;

-- @body

-- 1. The substrate's composer functions, verbatim (migrations/sql/substrate.sql).
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

    RETURN jsonb_build_object('status', 'composed', 'collection_id', v_collection_id,
                              'collection_key', p_collection_key,
                              'member_count', cardinality(p_piece_ids));
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

    RETURN jsonb_build_object('status', 'added', 'collection_id', p_collection_id, 'iu_id', p_iu_id,
                              'piece_order', v_position, 'member_count', v_count + 1);
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

    RETURN jsonb_build_object('status', 'removed', 'collection_id', p_collection_id, 'iu_id', p_iu_id,
                              'old_order', v_old_order, 'member_count', v_count);
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
    END IF;

    RETURN jsonb_build_object('status', 'reordered', 'collection_id', p_collection_id, 'iu_id', p_iu_id,
                              'old_order', v_old_order, 'new_order', p_new_order);
END
$fn$;

-- 2. What 016 added. The re-wired functions above no longer call the emitter.
DROP VIEW public.v_iu_composer_event_log;
DROP VIEW public.v_iu_collection_checkpoint;
DROP FUNCTION public.fn_iu_collection_checkpoint(uuid, text);
DROP FUNCTION public.fn_iu_composer_emit(text, uuid, jsonb, text);

-- @assert

DO $assert$
DECLARE
    v_left  text[];
    v_wrong text[];
BEGIN
    SELECT array_agg(DISTINCT 'function public.' || p.proname) INTO v_left
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proname IN ('fn_iu_composer_emit', 'fn_iu_collection_checkpoint');
    v_left := coalesce(v_left, '{}') || coalesce((
        SELECT array_agg(r) FROM unnest(ARRAY['public.v_iu_collection_checkpoint',
                                              'public.v_iu_composer_event_log']) AS r
         WHERE to_regclass(r) IS NOT NULL), '{}');
    IF cardinality(v_left) > 0 THEN
        RAISE EXCEPTION '016 rollback assert: still present after rollback: %', array_to_string(v_left, ', ');
    END IF;

    -- Exactly the substrate text, SECURITY INVOKER, pinned search_path, and
    -- still not executable by PUBLIC.
    SELECT array_agg(x.sig ORDER BY x.sig) INTO v_wrong
      FROM (VALUES
              ('public.fn_iu_compose(text,text,text,uuid[],text,text[])', '656eaeda2b914d32d7133596d4a4562f'),
              ('public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)', '8b17bfe5465b636dc427cb8dde2e5b33'),
              ('public.fn_iu_collection_remove_piece(uuid,uuid,text)', 'ae6f8accab3f8979849536e7c543d04d'),
              ('public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)', '37dbee615372f760353a40919fd66ddd'))
           AS x (sig, substrate_md5)
      LEFT JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(x.sig)
     WHERE p.oid IS NULL
        OR md5(p.prosrc) <> x.substrate_md5
        OR p.prosecdef
        OR NOT coalesce('search_path=public, pg_temp' = ANY (p.proconfig), false)
        OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
    IF v_wrong IS NOT NULL THEN
        RAISE EXCEPTION '016 rollback assert: not restored to the substrate definition: %', array_to_string(v_wrong, ', ');
    END IF;
END
$assert$;
