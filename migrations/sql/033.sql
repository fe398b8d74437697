-- =============================================================================
-- 033 — the auto-instantiate orchestrator (seed 004, "migration 033").
--
-- Adds (schema public):
--   * fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text) → jsonb
--     instantiates a template collection for an event: a new collection keyed
--     <template key>.<suffix>, same kind, a title that names the event, the
--     template's members in the same order — composed through fn_iu_compose,
--     so the composer events are emitted — plus a provenance row and one
--     template.instance_auto_composed event;
--   * fn_iu_auto_instantiate_rollback_by_actor(text, boolean) → jsonb
--     lists (dry run) or removes (live) every instance an actor created: the
--     instance collections and their memberships go, the pieces stay;
--   * iu_auto_instance, the provenance table (instance → template, event, actor);
--   * the gate iu_core.auto_instantiate_enabled = 'false';
--   * the event type template.instance_auto_composed (stream 'template', lane
--     'delayed': never deduplicated).
--
-- Two-gate semantics (seed 004): emit_mode 'dry_run' requires
-- iu_core.composer_enabled = 'true'; 'live' requires composer_enabled AND
-- auto_instantiate_enabled. A shut gate answers a jsonb refusal naming it.
-- The rollback function follows the same rule (dry run: composer; live: both).
--
-- The functions are not in the command catalog yet: revision 034 registers
-- them as governed DOT commands.
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/033.sql "<database url>"
-- Paired rollback: rollbacks/033.sql.
-- =============================================================================

-- @preflight

-- Refuse to re-apply over ourselves: none of 033's objects may exist.
DO $preflight$
DECLARE
    v_present text[] := '{}';
BEGIN
    IF to_regclass('public.iu_auto_instance') IS NOT NULL THEN
        v_present := v_present || 'table public.iu_auto_instance'::text;
    END IF;
    v_present := v_present || coalesce((
        SELECT array_agg(DISTINCT 'function public.' || p.proname)
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_auto_instantiate_from_event',
                             'fn_iu_auto_instantiate_rollback_by_actor')), '{}');
    IF to_regclass('public.dot_config') IS NOT NULL
       AND EXISTS (SELECT 1 FROM public.dot_config c WHERE c.key = 'iu_core.auto_instantiate_enabled') THEN
        v_present := v_present || 'config iu_core.auto_instantiate_enabled'::text;
    END IF;
    IF to_regclass('public.event_type_registry') IS NOT NULL
       AND EXISTS (SELECT 1 FROM public.event_type_registry r
                    WHERE r.event_domain = 'template' AND r.event_type = 'instance_auto_composed') THEN
        v_present := v_present || 'event type template.instance_auto_composed'::text;
    END IF;

    IF cardinality(v_present) > 0 THEN
        RAISE EXCEPTION '033 preflight: % object(s) of 033 already present (%) — already applied? Check "iucore db current"; to rebuild, roll back first with rollbacks/033.sql',
            cardinality(v_present), array_to_string(v_present, ', ');
    END IF;
END
$preflight$;

-- 033 sits on 280: the operator-runtime catalog must be there (24 rows, 034's
-- two not yet), and the functions the orchestrator calls must resolve.
DO $preflight$
DECLARE
    c_needed text[] := ARRAY[
        'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
        'public.fn_iu_emit_event(text,text,text,jsonb,text)',
        'public.fn_iu_gate_is_open(text)'];
    v_rows    bigint;
    v_missing text[];
BEGIN
    IF to_regclass('public.dot_iu_command_catalog') IS NULL THEN
        RAISE EXCEPTION '033 preflight: public.dot_iu_command_catalog is missing — apply substrate … 280 first';
    END IF;
    SELECT count(*) INTO v_rows FROM public.dot_iu_command_catalog;
    IF v_rows <> 24 OR NOT EXISTS (SELECT 1 FROM public.dot_iu_command_catalog c
                                    WHERE c.command_name = 'dot_iu_create_file_from_pieces') THEN
        RAISE EXCEPTION '033 preflight: the operator-runtime catalog of 280 is not there (public.dot_iu_command_catalog has % row(s), expected the 24 of 280) — apply 280 first',
            v_rows;
    END IF;

    SELECT array_agg(f) INTO v_missing FROM unnest(c_needed) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '033 preflight: function(s) the orchestrator calls are missing: % — the database is not at revision 280',
            array_to_string(v_missing, ', ');
    END IF;
END
$preflight$;

-- @body

-- -----------------------------------------------------------------------------
-- 1. The gate and the event type
-- -----------------------------------------------------------------------------
INSERT INTO public.dot_config (key, value, description) VALUES
    ('iu_core.auto_instantiate_enabled', 'false',
     'Gate (033): live auto-instantiation (fn_iu_auto_instantiate_from_event emit_mode live, and the live rollback by actor) refuses while false; dry runs need only iu_core.composer_enabled.');

INSERT INTO public.event_type_registry
    (event_domain, event_type, event_stream, delivery_lane, default_severity, description)
VALUES
    ('template', 'instance_auto_composed', 'template', 'delayed', 'info',
     'A template collection was instantiated for an event (033); subject is the instance collection id.');

-- -----------------------------------------------------------------------------
-- 2. Provenance: every auto-instance traces to its template, event and actor
-- -----------------------------------------------------------------------------
CREATE TABLE public.iu_auto_instance (
    instance_collection_id uuid PRIMARY KEY
                           REFERENCES public.iu_collection (collection_id) ON DELETE CASCADE,
    template_collection_id uuid NOT NULL,
    event_id               uuid NOT NULL,
    event_type             text NOT NULL,
    actor                  text NOT NULL,
    note                   text,
    created_at             timestamptz NOT NULL DEFAULT now()
);

-- The rollback works per actor.
CREATE INDEX ix_iu_auto_instance_actor ON public.iu_auto_instance (actor, created_at);

COMMENT ON TABLE public.iu_auto_instance IS
    'Provenance of auto-instantiated collections (033): which template, which event, which actor. Removed with the instance collection.';

-- -----------------------------------------------------------------------------
-- 3. The orchestrator
-- -----------------------------------------------------------------------------
CREATE FUNCTION public.fn_iu_auto_instantiate_from_event(
    p_event_id               uuid,
    p_event_type             text,
    p_template_collection_id uuid,
    p_instance_key_suffix    text,
    p_emit_mode              text,
    p_actor                  text,
    p_note                   text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_composer CONSTANT text := 'iu_core.composer_enabled';
    c_auto     CONSTANT text := 'iu_core.auto_instantiate_enabled';
    v_shut      text[] := '{}';
    v_tpl       public.iu_collection%ROWTYPE;
    v_ids       uuid[];
    v_labels    text[];
    v_members   jsonb;
    v_inactive  uuid[];
    v_key       text;
    v_title     text;
    v_existing  uuid;
    v_answer    jsonb;
    v_instance  uuid;
    v_event     uuid;
BEGIN
    -- The mode decides which gates apply, so it is checked first.
    IF p_emit_mode IS NULL OR p_emit_mode NOT IN ('dry_run', 'live') THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'emit_mode',
                                  'guidance', 'One of dry_run, live.',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    -- Two gates (seed 004): dry_run needs the composer gate; live needs both.
    IF NOT public.fn_iu_gate_is_open(c_composer) THEN
        v_shut := v_shut || c_composer;
    END IF;
    IF p_emit_mode = 'live' AND NOT public.fn_iu_gate_is_open(c_auto) THEN
        v_shut := v_shut || c_auto;
    END IF;
    IF cardinality(v_shut) > 0 THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', v_shut[1], 'gates', to_jsonb(v_shut),
                                  'emit_mode', p_emit_mode,
                                  'guidance', format('emit_mode %s requires %s; shut: %s. Nothing was instantiated.',
                                                     p_emit_mode,
                                                     CASE WHEN p_emit_mode = 'live'
                                                          THEN c_composer || ' AND ' || c_auto
                                                          ELSE c_composer END,
                                                     array_to_string(v_shut, ', ')),
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_event_id IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'event_id',
                                  'guidance', 'Required: the id of the event this instance answers.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_event_type IS NULL OR btrim(p_event_type) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'event_type',
                                  'guidance', 'Required and not blank: the type of the event this instance answers.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who instantiates (the rollback works per actor).',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_instance_key_suffix IS NULL OR btrim(p_instance_key_suffix) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'instance_key_suffix',
                                  'guidance', 'Required and not blank: the instance key is <template key>.<suffix>.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_instance_key_suffix !~ '^[a-z0-9][a-z0-9._/-]*$' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'instance_key_suffix',
                                  'guidance', 'Lower-case letters, digits and . _ / - only, starting with a letter or digit.',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    -- The template, held while it is copied (a live run must not race a reorder).
    IF p_emit_mode = 'live' THEN
        SELECT * INTO v_tpl FROM public.iu_collection c
         WHERE c.collection_id = p_template_collection_id
           FOR SHARE;
    ELSE
        SELECT * INTO v_tpl FROM public.iu_collection c
         WHERE c.collection_id = p_template_collection_id;
    END IF;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'template_collection_id',
                                  'guidance', 'No collection has this id (unknown template).',
                                  'next_action', 'check_template_collection_id');
    END IF;

    SELECT array_agg(m.iu_id ORDER BY m.piece_order),
           array_agg(m.label ORDER BY m.piece_order),
           jsonb_agg(jsonb_build_object('piece_order', m.piece_order, 'iu_id', m.iu_id,
                                        'canonical_address', iu.canonical_address,
                                        'label', m.label) ORDER BY m.piece_order),
           array_agg(m.iu_id ORDER BY m.piece_order)
               FILTER (WHERE iu.lifecycle_status <> 'active' OR iu.deleted_at IS NOT NULL)
      INTO v_ids, v_labels, v_members, v_inactive
      FROM public.iu_collection_member m
      JOIN public.information_unit iu ON iu.iu_id = m.iu_id
     WHERE m.collection_id = v_tpl.collection_id;
    IF v_ids IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'template_collection_id',
                                  'template_key', v_tpl.collection_key,
                                  'guidance', 'The template has no members; there is nothing to instantiate.',
                                  'next_action', 'check_template_collection_id');
    END IF;
    IF v_inactive IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'template_collection_id',
                                  'template_key', v_tpl.collection_key,
                                  'inactive_ids', to_jsonb(v_inactive),
                                  'guidance', 'Every template member must be active (not retired, not soft-deleted).',
                                  'next_action', 'fix_template_first');
    END IF;

    v_key := v_tpl.collection_key || '.' || p_instance_key_suffix;
    v_title := format('%s (auto-instance for event %s %s)', v_tpl.title, p_event_type, p_event_id);

    SELECT c.collection_id INTO v_existing FROM public.iu_collection c WHERE c.collection_key = v_key;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'duplicate', 'field', 'instance_key_suffix',
                                  'collection_id', v_existing, 'collection_key', v_key,
                                  'guidance', 'A collection with this key already exists; nothing was instantiated.',
                                  'next_action', 'choose_another_suffix');
    END IF;

    IF p_emit_mode = 'dry_run' THEN
        -- Writes nothing: answers what a live run would create.
        RETURN jsonb_build_object('status', 'dry_run', 'emit_mode', 'dry_run',
            'template_collection_id', v_tpl.collection_id, 'template_key', v_tpl.collection_key,
            'event_id', p_event_id, 'event_type', p_event_type, 'actor', p_actor,
            'would_create', jsonb_build_object('collection_key', v_key,
                                               'collection_kind', v_tpl.collection_kind,
                                               'title', v_title,
                                               'member_count', cardinality(v_ids),
                                               'members', v_members),
            'would_emit', 'template.instance_auto_composed',
            'guidance', 'Nothing was written. emit_mode live also requires iu_core.auto_instantiate_enabled.');
    END IF;

    -- Live: through the composer, so the composer events are emitted.
    v_answer := public.fn_iu_compose(v_key, v_tpl.collection_kind, v_title, v_ids, p_actor, v_labels);
    IF v_answer ->> 'status' IS DISTINCT FROM 'composed' THEN
        RETURN jsonb_build_object('status', coalesce(v_answer ->> 'status', 'failed'),
                                  'reason', 'compose_refused', 'collection_key', v_key,
                                  'compose_answer', v_answer,
                                  'guidance', 'fn_iu_compose did not compose the instance; nothing was instantiated.',
                                  'next_action', coalesce(v_answer ->> 'next_action', 'inspect_compose_answer'));
    END IF;
    v_instance := (v_answer ->> 'collection_id')::uuid;

    INSERT INTO public.iu_auto_instance
        (instance_collection_id, template_collection_id, event_id, event_type, actor, note)
    VALUES (v_instance, v_tpl.collection_id, p_event_id, p_event_type, p_actor, p_note);

    v_event := public.fn_iu_emit_event('template', 'instance_auto_composed', v_instance::text,
        jsonb_build_object('instance_collection_id', v_instance, 'instance_key', v_key,
                           'template_collection_id', v_tpl.collection_id,
                           'template_key', v_tpl.collection_key,
                           'source_event_id', p_event_id, 'source_event_type', p_event_type,
                           'member_count', cardinality(v_ids), 'note', p_note),
        p_actor);

    RETURN jsonb_build_object('status', 'instantiated', 'emit_mode', 'live',
                              'instance_collection_id', v_instance,
                              'collection_key', v_key,
                              'collection_kind', v_tpl.collection_kind,
                              'title', v_title,
                              'member_count', cardinality(v_ids),
                              'template_collection_id', v_tpl.collection_id,
                              'event_id', p_event_id, 'event_type', p_event_type,
                              'actor', p_actor,
                              'instance_event_id', v_event);
END
$fn$;

CREATE FUNCTION public.fn_iu_auto_instantiate_rollback_by_actor(
    p_actor   text,
    p_dry_run boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_composer CONSTANT text := 'iu_core.composer_enabled';
    c_auto     CONSTANT text := 'iu_core.auto_instantiate_enabled';
    v_dry_run     boolean := coalesce(p_dry_run, true);  -- NULL: the safe reading
    v_shut        text[] := '{}';
    v_ids         uuid[];
    v_instances   jsonb;
    v_memberships bigint;
    v_n_members   bigint;
    v_n_prov      bigint;
    v_n_coll      bigint;
BEGIN
    -- Same two gates as the orchestrator: a dry run needs the composer gate,
    -- the live removal needs composer AND auto_instantiate.
    IF NOT public.fn_iu_gate_is_open(c_composer) THEN
        v_shut := v_shut || c_composer;
    END IF;
    IF NOT v_dry_run AND NOT public.fn_iu_gate_is_open(c_auto) THEN
        v_shut := v_shut || c_auto;
    END IF;
    IF cardinality(v_shut) > 0 THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', v_shut[1], 'gates', to_jsonb(v_shut),
                                  'dry_run', v_dry_run,
                                  'guidance', format('%s requires %s; shut: %s. Nothing was removed.',
                                                     CASE WHEN v_dry_run THEN 'A dry run' ELSE 'A live rollback' END,
                                                     CASE WHEN v_dry_run THEN c_composer
                                                          ELSE c_composer || ' AND ' || c_auto END,
                                                     array_to_string(v_shut, ', ')),
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: whose auto-instances to roll back.',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    -- The actor's instances, locked on a live run so none changes under us.
    IF NOT v_dry_run THEN
        PERFORM 1 FROM public.iu_collection c
          JOIN public.iu_auto_instance a ON a.instance_collection_id = c.collection_id
         WHERE a.actor = p_actor
         ORDER BY c.collection_id
           FOR UPDATE OF c;
    END IF;

    SELECT array_agg(s.instance_collection_id ORDER BY s.created_at, s.instance_collection_id),
           coalesce(jsonb_agg(jsonb_build_object(
                        'instance_collection_id', s.instance_collection_id,
                        'collection_key', s.collection_key,
                        'template_collection_id', s.template_collection_id,
                        'event_id', s.event_id, 'event_type', s.event_type,
                        'member_count', s.member_count, 'note', s.note,
                        'created_at', s.created_at)
                    ORDER BY s.created_at, s.instance_collection_id), '[]'),
           coalesce(sum(s.member_count), 0)
      INTO v_ids, v_instances, v_memberships
      FROM (SELECT a.instance_collection_id, c.collection_key, a.template_collection_id,
                   a.event_id, a.event_type, a.note, a.created_at,
                   (SELECT count(*) FROM public.iu_collection_member m
                     WHERE m.collection_id = a.instance_collection_id) AS member_count
              FROM public.iu_auto_instance a
              JOIN public.iu_collection c ON c.collection_id = a.instance_collection_id
             WHERE a.actor = p_actor) AS s;

    IF v_dry_run THEN
        RETURN jsonb_build_object('status', 'dry_run', 'dry_run', true, 'actor', p_actor,
                                  'instance_count', coalesce(cardinality(v_ids), 0),
                                  'would_remove', jsonb_build_object(
                                      'collections', coalesce(cardinality(v_ids), 0),
                                      'memberships', v_memberships,
                                      'provenance_rows', coalesce(cardinality(v_ids), 0)),
                                  'instances', v_instances,
                                  'guidance', 'Nothing was removed. The pieces are never removed; only the instance collections, their memberships and provenance rows.');
    END IF;

    IF v_ids IS NULL THEN
        v_ids := '{}';
    END IF;

    -- Memberships and provenance first, then the collections; the pieces stay.
    DELETE FROM public.iu_collection_member m WHERE m.collection_id = ANY (v_ids);
    GET DIAGNOSTICS v_n_members = ROW_COUNT;
    DELETE FROM public.iu_auto_instance a WHERE a.instance_collection_id = ANY (v_ids);
    GET DIAGNOSTICS v_n_prov = ROW_COUNT;
    DELETE FROM public.iu_collection c WHERE c.collection_id = ANY (v_ids);
    GET DIAGNOSTICS v_n_coll = ROW_COUNT;

    RETURN jsonb_build_object('status', 'rolled_back', 'dry_run', false, 'actor', p_actor,
                              'collections_removed', v_n_coll,
                              'memberships_removed', v_n_members,
                              'provenance_rows_removed', v_n_prov,
                              'instances', v_instances);
END
$fn$;

-- Both write (or can write): not for PUBLIC; the operator layer grants its roles.
REVOKE EXECUTE ON FUNCTION public.fn_iu_auto_instantiate_from_event(uuid, text, uuid, text, text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_auto_instantiate_rollback_by_actor(text, boolean) FROM PUBLIC;

-- @postcheck

DO $postcheck$
DECLARE
    c_functions text[] := ARRAY[
        'public.fn_iu_auto_instantiate_from_event(uuid,text,uuid,text,text,text,text)',
        'public.fn_iu_auto_instantiate_rollback_by_actor(text,boolean)'];
    v_missing text[];
BEGIN
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass('public.iu_auto_instance'))
       IS DISTINCT FROM 'r' THEN
        RAISE EXCEPTION '033 post-check: table public.iu_auto_instance missing';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co
                    WHERE co.conrelid = 'public.iu_auto_instance'::regclass
                      AND co.contype = 'f'
                      AND co.confrelid = 'public.iu_collection'::regclass
                      AND co.confdeltype = 'c') THEN
        RAISE EXCEPTION '033 post-check: public.iu_auto_instance must reference public.iu_collection ON DELETE CASCADE';
    END IF;

    SELECT array_agg(f) INTO v_missing FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '033 post-check: function(s) not resolvable: %', array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(f) INTO v_missing
      FROM unnest(c_functions) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE p.prorettype <> 'jsonb'::regtype
        OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '033 post-check: function(s) not returning jsonb or still executable by PUBLIC: %',
            array_to_string(v_missing, ', ');
    END IF;

    IF (SELECT c.value FROM public.dot_config c WHERE c.key = 'iu_core.auto_instantiate_enabled')
       IS DISTINCT FROM 'false' THEN
        RAISE EXCEPTION '033 post-check: gate iu_core.auto_instantiate_enabled must exist and be ''false''';
    END IF;

    IF NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                    WHERE r.event_domain = 'template' AND r.event_type = 'instance_auto_composed'
                      AND r.event_stream = 'template' AND r.delivery_lane = 'delayed' AND r.active) THEN
        RAISE EXCEPTION '033 post-check: event type template.instance_auto_composed (stream template, lane delayed) not registered';
    END IF;

    IF (SELECT count(*) FROM public.dot_iu_command_catalog) <> 24 THEN
        RAISE EXCEPTION '033 post-check: public.dot_iu_command_catalog changed (033 registers no command; 034 does)';
    END IF;
END
$postcheck$;

SELECT '033_objects' AS "check",
       to_regclass('public.iu_auto_instance') IS NOT NULL AS provenance_table,
       (SELECT count(*) FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_iu_auto_instantiate_from_event',
                             'fn_iu_auto_instantiate_rollback_by_actor')) AS functions,
       (SELECT c.value FROM public.dot_config c
         WHERE c.key = 'iu_core.auto_instantiate_enabled') AS auto_instantiate_enabled,
       (SELECT r.event_stream || '/' || r.delivery_lane FROM public.event_type_registry r
         WHERE r.event_domain = 'template' AND r.event_type = 'instance_auto_composed') AS event_type_lane,
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows;
