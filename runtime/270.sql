-- =============================================================================
-- runtime/270 — the scratch collection of seed 003 (§2, §6, §9, §11): two
-- pieces minted through the fn_iu_create birth gate, one collection
-- (iu_core.composer.scratch-file-001), two memberships, and four composer
-- events on the 'delayed' lane: 1 collection_created + 2
-- piece_added_to_collection (fn_iu_compose) and 1 collection_rendered
-- (fn_iu_collection_checkpoint).
--
-- A runtime DATA script, not a revision: CREATE-free by construction (seed 001
-- §4), data written only through the governed functions. The composer gate is
-- opened through the gate protocol (fn_iu_gate_open, an approval id, a short
-- TTL) for this transaction's window and closed before it ends; a failure
-- anywhere rolls the opening back with everything else. The canonical
-- addresses are gen_random_uuid()-suffixed (seed 001 §5: no hardcode).
--
-- The approval id is an input: iucore sets it for the transaction; the guard
-- refuses without one. Sections: @guard, @body, @assert (docs/sql-conventions.md).
-- Run it with iucore (locked, timed out, audited, rehearsable):
--   iucore runtime apply 270 --approval-id <uuid> [--rehearse]
-- or by hand, as ONE transaction:
--   PGOPTIONS='-c iucore.approval_id=<uuid>' psql -X -1 -v ON_ERROR_STOP=1 -f runtime/270.sql "<database url>"
-- Paired rollback: runtime/rollback/270.sql.
-- =============================================================================

-- @guard

-- One transaction or nothing: without psql -1 every statement would commit on
-- its own and a failing assert could not take the body back. The first
-- statement of a transaction starts at the transaction's own timestamp.
DO $guard$
BEGIN
    IF statement_timestamp() = now() THEN
        RAISE EXCEPTION 'runtime/270 refused: not inside one transaction — run the file with psql -1 (--single-transaction), or with iucore runtime apply 270';
    END IF;
END
$guard$;

-- The approval this run rests on (Điều 32): the gate protocol opens nothing without one.
DO $guard$
DECLARE
    v_approval text := nullif(btrim(coalesce(current_setting('iucore.approval_id', true), '')), '');
BEGIN
    IF v_approval IS NULL THEN
        RAISE EXCEPTION 'runtime/270 refused: no approval id — pass one: iucore runtime apply 270 --approval-id <uuid>; by hand: PGOPTIONS=''-c iucore.approval_id=<uuid>'' psql -X -1 -v ON_ERROR_STOP=1 -f runtime/270.sql';
    END IF;
    BEGIN
        PERFORM v_approval::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'runtime/270 refused: approval id % is not a uuid', quote_literal(v_approval);
    END;
END
$guard$;

-- The governed surface this script writes through (head), and emission on:
-- with the master routes gate or the emit runtime key shut, the composer events
-- the assert requires could not be written.
DO $guard$
DECLARE
    v_missing text[];
BEGIN
    SELECT array_agg(f ORDER BY f) INTO v_missing
      FROM unnest(ARRAY[
               'public.fn_iu_gate_open(text,uuid,text,text,integer)',
               'public.fn_iu_gate_close(text,text,text)',
               'public.fn_iu_gate_verify_closed(text)',
               'public.fn_iu_create(text,text,text,text,text)',
               'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
               'public.fn_iu_collection_checkpoint(uuid,text)']) AS f
     WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'runtime/270 refused: governed function(s) missing: % — the database is not at head; iucore db upgrade head first',
            array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(t ORDER BY t) INTO v_missing
      FROM unnest(ARRAY['collection_created', 'piece_added_to_collection', 'collection_rendered']) AS t
     WHERE NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                        WHERE r.event_domain = 'iu' AND r.event_type = t
                          AND r.delivery_lane = 'delayed' AND r.active);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'runtime/270 refused: composer event type(s) % not registered and active on the delayed lane — apply 260 first',
            array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(k ORDER BY k) INTO v_missing
      FROM unnest(ARRAY['iu_core.routes_master_enabled', 'piece_event_runtime.emit_enabled']) AS k
     WHERE NOT public.fn_iu_gate_is_open(k);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'runtime/270 refused: event emission is stopped (% not ''true'') — the composer events this script must write would be lost',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

-- Applied already: the collection is there. Nothing changes.
DO $guard$
DECLARE
    v_row record;
BEGIN
    SELECT c.collection_id, c.created_by, c.created_at INTO v_row
      FROM public.iu_collection c WHERE c.collection_key = 'iu_core.composer.scratch-file-001';
    IF FOUND THEN
        RAISE EXCEPTION 'runtime/270 refused: collection iu_core.composer.scratch-file-001 already exists (%, created by % at %) — 270 is applied; to run it again, roll it back first (iucore runtime rollback 270)',
            v_row.collection_id, v_row.created_by, v_row.created_at;
    END IF;
END
$guard$;

-- Every protocol gate shut: this script opens and closes the composer gate
-- itself and must never close a window someone else opened.
DO $guard$
DECLARE
    v_gates jsonb := public.fn_iu_gate_verify_closed(NULL);
BEGIN
    IF NOT coalesce((v_gates ->> 'all_safe')::boolean, false) THEN
        RAISE EXCEPTION 'runtime/270 refused: protocol gate(s) open: % — close them (iucore gate close GATE) or let their TTL run out (iucore gate watchdog) first',
            (SELECT string_agg(g ->> 'key', ', ') FROM jsonb_array_elements(v_gates -> 'gates') AS g
              WHERE g ->> 'value' IS DISTINCT FROM 'false');
    END IF;
END
$guard$;

-- @body

-- The composer gate, open for this transaction's window only (TTL 300 s).
SELECT g ->> 'status' AS gate_open, g ->> 'gate_key' AS gate_key, g ->> 'ttl_seconds' AS ttl_seconds
  FROM (SELECT public.fn_iu_gate_open('iu_core.composer_enabled',
                                      current_setting('iucore.approval_id')::uuid,
                                      'runtime/270: compose iu_core.composer.scratch-file-001',
                                      'runtime_270', 300) AS g) AS o;

-- Mint the two pieces through the birth gate, compose them in order, checkpoint.
DO $body$
DECLARE
    v_ids    uuid[] := '{}';
    v_piece  record;
    v_answer jsonb;
    v_cid    uuid;
BEGIN
    FOR v_piece IN
        SELECT p.label, p.title
          FROM (VALUES (1, 'intro', 'Scratch introduction'), (2, 'body', 'Scratch body'))
               AS p (ord, label, title)
         ORDER BY p.ord
    LOOP
        v_answer := public.fn_iu_create('iu_core/composer/scratch-file-001/' || v_piece.label || '-' || gen_random_uuid(),
                                        'section', v_piece.title, 'runtime_270');
        IF v_answer ->> 'status' IS DISTINCT FROM 'created' THEN
            RAISE EXCEPTION 'runtime/270: fn_iu_create did not create piece %: %', v_piece.label, v_answer;
        END IF;
        v_ids := v_ids || (v_answer ->> 'iu_id')::uuid;
        RAISE NOTICE 'minted % through the birth gate: %', v_piece.label, v_answer ->> 'canonical_address';
    END LOOP;

    v_answer := public.fn_iu_compose('iu_core.composer.scratch-file-001', 'file', 'runtime/270 scratch collection',
                                     v_ids, 'runtime_270', ARRAY['intro', 'body']);
    IF v_answer ->> 'status' IS DISTINCT FROM 'composed' THEN
        RAISE EXCEPTION 'runtime/270: fn_iu_compose did not compose the collection: %', v_answer;
    END IF;
    v_cid := (v_answer ->> 'collection_id')::uuid;
    RAISE NOTICE 'composed iu_core.composer.scratch-file-001: % members', v_answer ->> 'member_count';

    v_answer := public.fn_iu_collection_checkpoint(v_cid, 'runtime_270');
    IF v_answer ->> 'status' IS DISTINCT FROM 'checkpointed' THEN
        RAISE EXCEPTION 'runtime/270: fn_iu_collection_checkpoint did not checkpoint: %', v_answer;
    END IF;
    RAISE NOTICE 'checkpointed: digest %, % members', v_answer ->> 'digest', v_answer ->> 'member_count';
END
$body$;

SELECT public.fn_iu_gate_close('iu_core.composer_enabled', 'runtime/270: done', 'runtime_270') ->> 'status'
       AS gate_close;

-- @assert

-- Exactly what seed 003 §2 says 270 adds: 1 collection + 2 birth-gate IUs +
-- 2 memberships + 4 composer events (the birth gate emits none), all by this
-- transaction; gates shut again.
DO $assert$
DECLARE
    v_cid     uuid;
    v_order   text;
    v_minted  bigint;
    v_births  bigint;
    v_events  jsonb;
    v_total   bigint;
    v_unique  bigint;
    v_delayed bigint;
BEGIN
    SELECT c.collection_id INTO v_cid FROM public.iu_collection c
     WHERE c.collection_key = 'iu_core.composer.scratch-file-001' AND c.created_by = 'runtime_270'
       AND c.created_at = now() AND c.collection_kind = 'file' AND c.last_render_digest IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'runtime/270 assert: collection iu_core.composer.scratch-file-001 was not composed and checkpointed by this run';
    END IF;

    SELECT string_agg(m.piece_order || '/' || m.label, ' ' ORDER BY m.piece_order),
           count(*) FILTER (WHERE iu.created_at = now() AND iu.created_by = 'runtime_270'
                              AND iu.lifecycle_status = 'active' AND iu.unit_kind = 'section'
                              AND iu.canonical_address LIKE 'iu\_core/composer/scratch-file-001/%'),
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM public.event_outbox e
                                           WHERE e.event_domain = 'iu' AND e.event_type = 'iu_created'
                                             AND e.event_subject_ref = m.iu_id::text))
      INTO v_order, v_minted, v_births
      FROM public.iu_collection_member m
      JOIN public.information_unit iu ON iu.iu_id = m.iu_id
     WHERE m.collection_id = v_cid;
    IF v_order IS DISTINCT FROM '0/intro 1/body' OR v_minted <> 2 OR v_births <> 0 THEN
        RAISE EXCEPTION 'runtime/270 assert: memberships %, pieces minted by this run %, iu_created events % — expected 0/intro 1/body, 2, 0 (the birth gate emits no event, docs/seeds.md; a database migrated with an earlier substrate.sql still has one that does)',
            v_order, v_minted, v_births;
    END IF;

    SELECT jsonb_object_agg(t.event_type, t.n), sum(t.n), sum(t.ids), sum(t.delayed)
      INTO v_events, v_total, v_unique, v_delayed
      FROM (SELECT e.event_type, count(*) AS n, count(DISTINCT e.event_id) AS ids,
                   count(*) FILTER (WHERE e.delivery_lane = 'delayed' AND e.event_stream = 'composer') AS delayed
              FROM public.event_outbox e
             WHERE e.event_domain = 'iu' AND e.event_subject_ref = v_cid::text
             GROUP BY e.event_type) AS t;
    IF v_events IS DISTINCT FROM '{"collection_created": 1, "piece_added_to_collection": 2, "collection_rendered": 1}'::jsonb
       OR v_total <> 4 OR v_unique <> 4 OR v_delayed <> 4 THEN
        RAISE EXCEPTION 'runtime/270 assert: composer events % (% distinct ids, % on the delayed lane) — expected 1 collection_created + 2 piece_added_to_collection + 1 collection_rendered, 4 distinct, all delayed',
            v_events, v_unique, v_delayed;
    END IF;

    IF NOT (public.fn_iu_gate_verify_closed(NULL) ->> 'all_safe')::boolean THEN
        RAISE EXCEPTION 'runtime/270 assert: a protocol gate is still open at the end of the run';
    END IF;
END
$assert$;

SELECT 'runtime_270' AS "check",
       c.collection_key,
       (SELECT count(*) FROM public.iu_collection_member m WHERE m.collection_id = c.collection_id) AS memberships,
       (SELECT count(*) FROM public.iu_collection_member m
          INNER JOIN public.information_unit iu ON iu.iu_id = m.iu_id
         WHERE m.collection_id = c.collection_id AND iu.created_at = now()) AS ius_minted,
       (SELECT count(*) FROM public.event_outbox e
         WHERE e.event_domain = 'iu' AND e.event_subject_ref = c.collection_id::text) AS composer_events,
       (public.fn_iu_gate_verify_closed(NULL) ->> 'all_safe')::boolean AS gates_all_safe
  FROM public.iu_collection c
 WHERE c.collection_key = 'iu_core.composer.scratch-file-001';

SELECT 'runtime_270_events' AS "check", e.event_type, e.delivery_lane,
       count(*) AS events, count(DISTINCT e.event_id) AS distinct_ids
  FROM public.event_outbox e
  INNER JOIN public.iu_collection c ON e.event_subject_ref = c.collection_id::text
 WHERE c.collection_key = 'iu_core.composer.scratch-file-001' AND e.event_domain = 'iu'
 GROUP BY e.event_type, e.delivery_lane
 ORDER BY min(e.created_at);
