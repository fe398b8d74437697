-- =============================================================================
-- substrate — forward script of the first revision: the IU Core surface before
-- macro 016.
--
-- Builds (schema public unless noted):
--   * dot_config (+ touch trigger) with the 14 gate / runtime keys, the 9
--     protocol gates all 'false';
--   * the DOT command catalog (EMPTY: revision 280 seeds it) and the run ledger
--     with the fail-closed logger fn_dot_iu_command_log;
--   * information units with the fn_iu_create birth gate, collections and
--     memberships with the composer functions (all shut behind
--     iu_core.composer_enabled);
--   * event_type_registry + event_outbox (type-validate trigger, partial unique
--     idempotency index on the 'immediate' lane), fn_iu_emit_event and its
--     piece path fn_iu_piece_emit_event (a correction, see docs/seeds.md);
--   * outbound routes, route attempts, dead letters, fn_iu_route_deliver and the
--     set-based route worker — delivery is dry-run unless the delivery gate AND
--     the per-route allowlist allow it, and no code path does network I/O;
--   * schema cutter_governance (manifest envelope / unit block / review
--     decision) with the review-gated fn_iu_piece_split / fn_iu_piece_merge;
--   * the seven observability views of seed 001 §7.
--
-- Sections (docs/sql-conventions.md): @preflight, @body, @postcheck.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f migrations/sql/substrate.sql "<database url>"
-- Paired rollback: rollbacks/substrate.sql.
-- =============================================================================

-- @preflight

-- Refuse to re-apply over ourselves (or over anything else that owns these
-- names): every object this file creates must be absent.
DO $preflight$
DECLARE
    c_relations text[] := ARRAY[
        'public.dot_config', 'public.dot_iu_command_catalog', 'public.dot_iu_command_run',
        'public.information_unit', 'public.iu_collection', 'public.iu_collection_member',
        'public.event_type_registry', 'public.event_outbox', 'public.iu_outbound_route',
        'public.iu_route_attempt', 'public.iu_route_dead_letter',
        'public.v_dot_iu_command_registry', 'public.v_dot_iu_command_run_health',
        'public.v_iu_collection_health', 'public.v_iu_collection_manifest',
        'public.v_iu_composer_event_backlog', 'public.v_iu_route_attempt_summary',
        'public.v_iu_route_dead_letter_open'];
    c_functions text[] := ARRAY[
        'fn_dot_config_touch', 'fn_dot_iu_command_log', 'fn_event_outbox_type_validate',
        'fn_iu_core_routes_enabled', 'fn_iu_delivery_enabled', 'fn_iu_gate_is_open',
        'fn_iu_emit_event', 'fn_iu_structure_consumer', 'fn_iu_route_deliver',
        'fn_iu_route_worker_run', 'fn_iu_create', 'fn_iu_compose',
        'fn_iu_collection_add_piece', 'fn_iu_collection_remove_piece',
        'fn_iu_collection_reorder_piece', 'fn_iu_collection_validate',
        'fn_iu_collection_render', 'fn_iu_workflow_from_steps', 'fn_iu_retire',
        'fn_iu_refresh_metadata_axes', 'fn_iu_healthcheck', 'fn_iu_piece_split',
        'fn_iu_piece_merge', 'fn_iu_observe'];
    v_present text[];
BEGIN
    SELECT array_agg(r ORDER BY r) INTO v_present
      FROM unnest(c_relations) AS r
     WHERE to_regclass(r) IS NOT NULL;

    v_present := coalesce(v_present, '{}') || coalesce((
        SELECT array_agg(DISTINCT 'function public.' || p.proname)
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname = ANY (c_functions)), '{}');

    IF to_regnamespace('cutter_governance') IS NOT NULL THEN
        v_present := v_present || 'schema cutter_governance'::text;
    END IF;

    IF cardinality(v_present) > 0 THEN
        RAISE EXCEPTION 'substrate preflight: % substrate object(s) already present: % — already applied? Check "iucore db current"; to rebuild, roll back first with rollbacks/substrate.sql',
            cardinality(v_present),
            array_to_string(v_present[1:6], ', ')
            || CASE WHEN cardinality(v_present) > 6
                    THEN format(', … and %s more', cardinality(v_present) - 6) ELSE '' END;
    END IF;
END
$preflight$;

-- Correction (docs/seeds.md): the piece path of the emit gating, which seed 002
-- A3 names beside fn_iu_emit_event, must be absent too.
DO $preflight$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                WHERE p.pronamespace = 'public'::regnamespace AND p.proname = 'fn_iu_piece_emit_event') THEN
        RAISE EXCEPTION 'substrate preflight: function public.fn_iu_piece_emit_event already present — already applied? Check "iucore db current"; to rebuild, roll back first with rollbacks/substrate.sql';
    END IF;
END
$preflight$;

-- Every table keys on gen_random_uuid(); it is built in since PostgreSQL 13, and
-- this revision deliberately creates no extension (no pgcrypto).
DO $preflight$
BEGIN
    IF to_regprocedure('pg_catalog.gen_random_uuid()') IS NULL THEN
        RAISE EXCEPTION 'substrate preflight: pg_catalog.gen_random_uuid() is unavailable (server %, need PostgreSQL 13 or later) — upgrade the server; this revision creates no extension',
            current_setting('server_version');
    END IF;
END
$preflight$;

-- @body

-- -----------------------------------------------------------------------------
-- 1. dot_config: gates and runtime keys
-- -----------------------------------------------------------------------------
CREATE TABLE public.dot_config (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    description text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION public.fn_dot_config_touch()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
BEGIN
    -- updated_at tells an auditor when a gate last moved, whoever moved it.
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

CREATE TRIGGER trg_dot_config_touch
    BEFORE UPDATE ON public.dot_config
    FOR EACH ROW EXECUTE FUNCTION public.fn_dot_config_touch();

-- Gates are text 'true'/'false' (seed 002 A3). Everything governable starts
-- shut; only the controlled master gate and the dry-run worker are on (seed 001 §8).
INSERT INTO public.dot_config (key, value, description) VALUES
    ('iu_core.composer_enabled', 'false',
     'Governable gate: every composer mutator (fn_iu_create, fn_iu_compose, add/remove/reorder piece, workflow_from_steps) refuses while false.'),
    ('iu_core.structure_ops_enabled', 'false',
     'Governable gate: lifecycle retire and live piece split/merge refuse while false (split/merge dry-runs stay available).'),
    ('iu_core.delivery_enabled', 'false',
     'Governable gate: route delivery is dry-run while false, whatever the allowlist says.'),
    ('iu_core.three_axis_auto_refresh_enabled', 'false',
     'Governable gate: fn_iu_refresh_metadata_axes refuses while false.'),
    ('iu_core.operator_runtime_enabled', 'false',
     'Governable gate: OperatorRuntime.apply refuses while false.'),
    ('queue.job_substrate.enabled', 'false',
     'Governable gate: the job substrate queue stays inert while false.'),
    ('queue.dlq.replay_enabled', 'false',
     'Governable gate: dead-letter replay refuses while false.'),
    ('iu_enact.allow_no_review_decision', 'false',
     'NEVER-FLIP: enacting without a review decision is never allowed; the gate protocol refuses to open it.'),
    ('iu_core.vector_sync_enabled', 'false',
     'NEVER-FLIP: no vector-index write from IU Core; the gate protocol refuses to open it.'),
    ('iu_core.routes_master_enabled', 'true',
     'Runtime master gate (not governed by the gate protocol): false stops every event emission.'),
    ('iu_core.route_worker_enabled', 'true',
     'Runtime key: the route worker runs (dry-run unless delivery is allowed); false makes every worker run skip.'),
    ('piece_event_runtime.emit_enabled', 'true',
     'Runtime key: false stops event emission at the runtime layer (checked after the master gate).'),
    ('iu_core.delivery_live_routes', '',
     'Runtime key: comma-separated allowlist of route codes that may deliver live; empty means none.'),
    ('iu_sql_link.enabled', 'false',
     'Runtime key: the IU-to-SQL link stays off.');

\ir functions/substrate/fn_iu_gate_is_open.sql

CREATE FUNCTION public.fn_iu_core_routes_enabled()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = public, pg_temp
AS $fn$
    SELECT public.fn_iu_gate_is_open('iu_core.routes_master_enabled');
$fn$;

CREATE FUNCTION public.fn_iu_delivery_enabled()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = public, pg_temp
AS $fn$
    SELECT public.fn_iu_gate_is_open('iu_core.delivery_enabled');
$fn$;

-- -----------------------------------------------------------------------------
-- 2. DOT command catalog and run ledger
-- -----------------------------------------------------------------------------
CREATE TABLE public.dot_iu_command_catalog (
    command_name     text PRIMARY KEY,
    category         text NOT NULL
                     CHECK (category IN ('collection', 'piece', 'lifecycle', 'read', 'health')),
    mutating         boolean NOT NULL,
    reversible       boolean NOT NULL,
    target_functions text[] NOT NULL,
    description      text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.dot_iu_command_run (
    run_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    command_name  text NOT NULL REFERENCES public.dot_iu_command_catalog (command_name),
    category      text NOT NULL
                  CHECK (category IN ('collection', 'piece', 'lifecycle', 'read', 'health')),
    run_mode      text NOT NULL CHECK (run_mode IN ('plan', 'apply', 'verify')),
    run_status    text NOT NULL
                  CHECK (run_status IN ('planned', 'applied', 'verified', 'refused', 'failed')),
    mutating      boolean NOT NULL,
    -- The ledger keeps an md5 of the parameters, never the raw values (seed 000 §4).
    params_digest text CHECK (params_digest ~ '^[0-9a-f]{32}$'),
    gate_snapshot jsonb NOT NULL DEFAULT '{}',
    evidence      jsonb NOT NULL DEFAULT '{}',
    actor         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_dot_iu_command_run_command
    ON public.dot_iu_command_run (command_name, created_at DESC);

-- SECURITY DEFINER: a low-privilege operator role must be able to append to the
-- ledger without holding INSERT on it.
\ir functions/substrate/fn_dot_iu_command_log.sql

-- -----------------------------------------------------------------------------
-- 3. Information units, collections, memberships
-- -----------------------------------------------------------------------------
CREATE TABLE public.information_unit (
    iu_id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    canonical_address text NOT NULL UNIQUE,
    unit_kind         text NOT NULL
                      CHECK (unit_kind IN ('design_doc_section', 'section', 'file', 'workflow_step', 'piece')),
    title             text NOT NULL,
    body              text,
    lifecycle_status  text NOT NULL DEFAULT 'active'
                      CHECK (lifecycle_status IN ('active', 'retired', 'soft_deleted')),
    metadata_axes     jsonb NOT NULL DEFAULT '{}',
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    retired_at        timestamptz,
    retired_reason    text,
    -- deleted_* are used by revision 017's governed soft-delete / restore pair.
    deleted_at        timestamptz,
    deleted_by        text,
    delete_reason     text,
    superseded_by     uuid[]
);

CREATE TABLE public.iu_collection (
    collection_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    collection_key     text NOT NULL UNIQUE,
    collection_kind    text NOT NULL CHECK (collection_kind IN ('file', 'workflow', 'design_doc')),
    title              text NOT NULL,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_rendered_at   timestamptz,
    last_render_digest text
);

CREATE TABLE public.iu_collection_member (
    collection_id uuid NOT NULL REFERENCES public.iu_collection (collection_id) ON DELETE CASCADE,
    iu_id         uuid NOT NULL REFERENCES public.information_unit (iu_id),
    piece_order   integer NOT NULL CHECK (piece_order >= 0),
    label         text,
    added_by      text NOT NULL,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, iu_id),
    -- Deferred so that one UPDATE can shift a run of orders (insert / move).
    CONSTRAINT iu_collection_member_order_key
        UNIQUE (collection_id, piece_order) DEFERRABLE INITIALLY DEFERRED
);

-- Memberships are looked up by piece (retire refuses while a piece is a member).
CREATE INDEX idx_iu_collection_member_iu ON public.iu_collection_member (iu_id);

-- -----------------------------------------------------------------------------
-- 4. Events: registry, outbox, emission
-- -----------------------------------------------------------------------------
CREATE TABLE public.event_type_registry (
    event_domain     text NOT NULL,
    event_type       text NOT NULL,
    event_stream     text NOT NULL,
    delivery_lane    text NOT NULL CHECK (delivery_lane IN ('immediate', 'delayed')),
    default_severity text NOT NULL DEFAULT 'info',
    description      text,
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_domain, event_type)
);

-- Only the substrate's own events, all on the deduplicating 'immediate' lane.
-- The composer family is NOT registered here: revision 260 puts it on the
-- 'delayed' lane (seed 003 §7: on 'immediate' it would be deduplicated).
INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane, description) VALUES
    ('iu', 'iu_created', 'lifecycle', 'immediate', 'An information unit was born through the fn_iu_create birth gate.'),
    ('iu', 'iu_retired', 'lifecycle', 'immediate', 'An information unit was retired (lifecycle, global).'),
    ('iu', 'iu_metadata_axes_refreshed', 'lifecycle', 'immediate', 'metadata_axes of a unit were recomputed; subject is iu_id:md5(axes).'),
    ('iu', 'structure_piece_split', 'structure', 'immediate', 'A piece was split into parts under a review decision.'),
    ('iu', 'structure_pieces_merged', 'structure', 'immediate', 'Pieces were merged into one under a review decision.'),
    ('iu', 'structure_op_applied', 'structure', 'immediate', 'A governed structure operation was applied.'),
    ('system', 'route_worker_run', 'system', 'immediate', 'A route worker run wrote attempts; payload carries its counts.');

CREATE TABLE public.event_outbox (
    event_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_domain      text NOT NULL,
    event_type        text NOT NULL,
    event_stream      text NOT NULL,
    delivery_lane     text NOT NULL CHECK (delivery_lane IN ('immediate', 'delayed')),
    event_subject_ref text NOT NULL,
    payload           jsonb NOT NULL DEFAULT '{}',
    severity          text NOT NULL DEFAULT 'info',
    actor             text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- The immediate lane is idempotent per (domain, type, subject); the delayed
-- lane is never deduplicated (seed 003 §7, seed 001 §2).
CREATE UNIQUE INDEX idx_event_outbox_idempotent
    ON public.event_outbox (event_domain, event_type, event_subject_ref)
    WHERE delivery_lane = 'immediate';

CREATE INDEX idx_event_outbox_created_at ON public.event_outbox (created_at);

CREATE FUNCTION public.fn_event_outbox_type_validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_reg record;
BEGIN
    -- Every write path (emit function or direct INSERT) must agree with the
    -- registry; a lane mismatch is exactly the defect of seed 003 §7.
    SELECT r.event_stream, r.delivery_lane, r.active
      INTO v_reg
      FROM public.event_type_registry r
     WHERE r.event_domain = NEW.event_domain
       AND r.event_type = NEW.event_type;

    IF NOT FOUND OR NOT v_reg.active THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('event_outbox: event type %s/%s is not registered or not active in public.event_type_registry',
                             NEW.event_domain, NEW.event_type),
            HINT = 'Register the type (event_type_registry) before writing events of it.';
    END IF;

    IF NEW.event_stream IS DISTINCT FROM v_reg.event_stream
       OR NEW.delivery_lane IS DISTINCT FROM v_reg.delivery_lane THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = format('event_outbox: event type %s/%s must be written with event_stream=%L and delivery_lane=%L (registry), got event_stream=%L and delivery_lane=%L',
                             NEW.event_domain, NEW.event_type, v_reg.event_stream, v_reg.delivery_lane,
                             NEW.event_stream, NEW.delivery_lane);
    END IF;

    RETURN NEW;
END
$fn$;

CREATE TRIGGER trg_event_outbox_type_validate
    BEFORE INSERT ON public.event_outbox
    FOR EACH ROW EXECUTE FUNCTION public.fn_event_outbox_type_validate();

CREATE FUNCTION public.fn_iu_emit_event(
    p_event_domain text,
    p_event_type   text,
    p_subject_ref  text,
    p_payload      jsonb,
    p_actor        text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_reg      record;
    v_event_id uuid;
BEGIN
    -- Emit gating, in the order of seed 002 A3. NULL means "nothing emitted".
    IF NOT public.fn_iu_core_routes_enabled() THEN
        RETURN NULL;
    END IF;
    IF NOT public.fn_iu_gate_is_open('piece_event_runtime.emit_enabled') THEN
        RETURN NULL;
    END IF;

    SELECT r.event_stream, r.delivery_lane, r.default_severity
      INTO v_reg
      FROM public.event_type_registry r
     WHERE r.event_domain = p_event_domain
       AND r.event_type = p_event_type
       AND r.active;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    -- Stream and lane come from the registry, never from the caller. A repeat
    -- on the immediate lane is absorbed by the partial unique index.
    -- clock_timestamp(): events of one transaction keep their order for the worker.
    INSERT INTO public.event_outbox
        (event_domain, event_type, event_stream, delivery_lane, event_subject_ref,
         payload, severity, actor, created_at)
    VALUES
        (p_event_domain, p_event_type, v_reg.event_stream, v_reg.delivery_lane, p_subject_ref,
         coalesce(p_payload, '{}'), v_reg.default_severity, p_actor, clock_timestamp())
    ON CONFLICT (event_domain, event_type, event_subject_ref) WHERE delivery_lane = 'immediate'
    DO NOTHING
    RETURNING event_id INTO v_event_id;

    RETURN v_event_id;
END
$fn$;

-- -----------------------------------------------------------------------------
-- 4b. Corrections (docs/seeds.md, "Corrections to the substrate"): two objects
-- seed 002 A3 names that the reconstruction lacked.
-- -----------------------------------------------------------------------------
-- A3: the iu domain "already includes ... structure_child_added". A structure
-- event like its siblings: stream 'structure', the deduplicating 'immediate' lane.
INSERT INTO public.event_type_registry (event_domain, event_type, event_stream, delivery_lane, description) VALUES
    ('iu', 'structure_child_added', 'structure', 'immediate', 'A child piece was added under a piece in the structure tree.');

-- A3: "Emit gating (fn_iu_emit_event / fn_iu_piece_emit_event): master
-- fn_iu_core_routes_enabled() -> runtime piece_event_runtime.emit_enabled ->
-- registry lookup (unknown/inactive -> NULL) -> event_outbox trigger". The piece
-- path emits in the 'piece' domain with the piece as the subject; the gating is
-- fn_iu_emit_event's own (one mechanism), so both paths answer alike.
CREATE FUNCTION public.fn_iu_piece_emit_event(
    p_event_type text,
    p_iu_id      uuid,
    p_payload    jsonb,
    p_actor      text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
BEGIN
    IF p_event_type IS NULL OR p_iu_id IS NULL OR p_actor IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'fn_iu_piece_emit_event: p_event_type, p_iu_id and p_actor are required';
    END IF;

    -- Subject = the piece; the payload always carries it. NULL means "nothing
    -- emitted": a gate is shut, or ('piece', type) is unknown or inactive.
    RETURN public.fn_iu_emit_event('piece', p_event_type, p_iu_id::text,
                                   coalesce(p_payload, '{}') || jsonb_build_object('iu_id', p_iu_id),
                                   p_actor);
END
$fn$;

REVOKE EXECUTE ON FUNCTION public.fn_iu_piece_emit_event(text, uuid, jsonb, text) FROM PUBLIC;

-- -----------------------------------------------------------------------------
-- 5. Outbound routes, attempts, dead letters, delivery, worker
-- -----------------------------------------------------------------------------
CREATE TABLE public.iu_outbound_route (
    route_code       text PRIMARY KEY,
    event_domain     text,     -- NULL: every domain
    event_type       text,     -- NULL: every type of the domain
    target_kind      text NOT NULL CHECK (target_kind IN ('sql_function', 'webhook', 'queue')),
    target_ref       text NOT NULL,
    payload_contract jsonb NOT NULL DEFAULT '{}',
    fail_closed      boolean NOT NULL DEFAULT true,
    dry_run          boolean NOT NULL DEFAULT true,
    enabled          boolean NOT NULL DEFAULT true,
    description      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- A type filter without its domain would be ambiguous.
    CONSTRAINT iu_outbound_route_type_needs_domain
        CHECK (event_type IS NULL OR event_domain IS NOT NULL)
);

INSERT INTO public.iu_outbound_route
    (route_code, event_domain, event_type, target_kind, target_ref, dry_run, description)
VALUES
    ('iu_outbound_default', NULL, NULL, 'webhook', 'outbound-default', true,
     'Every event; dry-run only (no code path performs network I/O).'),
    ('iu_structure_consumer', 'iu', NULL, 'sql_function', 'fn_iu_structure_consumer', true,
     'Every iu-domain event to the in-database structure consumer; dry-run until allowlisted.');

CREATE TABLE public.iu_route_attempt (
    attempt_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    route_code     text NOT NULL REFERENCES public.iu_outbound_route (route_code),
    event_id       uuid NOT NULL REFERENCES public.event_outbox (event_id),
    attempt_status text NOT NULL CHECK (attempt_status IN ('dry_run', 'sent', 'refused', 'failed')),
    detail         jsonb NOT NULL DEFAULT '{}',
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    -- One attempt per (route, event): an event is never delivered twice.
    UNIQUE (route_code, event_id)
);

CREATE INDEX idx_iu_route_attempt_event ON public.iu_route_attempt (event_id);

CREATE TABLE public.iu_route_dead_letter (
    dead_letter_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    route_code     text NOT NULL,
    event_id       uuid NOT NULL,
    reason         text NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    UNIQUE (route_code, event_id)
);

CREATE FUNCTION public.fn_iu_structure_consumer(p_event_id uuid)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = public, pg_temp
AS $fn$
    -- The only live-callable target; acknowledging is all it does.
    SELECT jsonb_build_object('status', 'consumed', 'event_id', p_event_id);
$fn$;

CREATE FUNCTION public.fn_iu_route_deliver(p_route_code text, p_event_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_route     public.iu_outbound_route%ROWTYPE;
    v_allowlist text[];
BEGIN
    -- Delivery gating, in the order of seed 002 A3.
    -- (1) the governable delivery gate
    IF NOT public.fn_iu_delivery_enabled() THEN
        RETURN jsonb_build_object('status', 'dry_run', 'reason', 'delivery_disabled',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'guidance', 'Gate iu_core.delivery_enabled is shut; nothing was delivered.');
    END IF;

    -- (2) the route must be registered (and enabled)
    SELECT * INTO v_route FROM public.iu_outbound_route r WHERE r.route_code = p_route_code;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'route_not_registered',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'guidance', 'No row in public.iu_outbound_route has this route_code.',
                                  'next_action', 'register_route_first');
    END IF;
    IF NOT v_route.enabled THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'route_disabled',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'guidance', 'The route is registered but disabled.',
                                  'next_action', 'enable_route_first');
    END IF;

    -- (3) the per-route allowlist (CSV, empty = none), then the route's own dry_run
    SELECT coalesce(array_agg(btrim(x)) FILTER (WHERE btrim(x) <> ''), '{}')
      INTO v_allowlist
      FROM unnest(string_to_array(coalesce(
               (SELECT c.value FROM public.dot_config c WHERE c.key = 'iu_core.delivery_live_routes'), ''), ',')) AS x;
    -- seed 002 A3: route_code <> ALL(allowlist) => refused (the gate is open, the route is not)
    IF NOT (p_route_code = ANY (v_allowlist)) THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'route_not_allowlisted',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'guidance', 'The route is not listed in dot_config iu_core.delivery_live_routes.',
                                  'next_action', 'allowlist_route_first');
    END IF;
    IF v_route.dry_run THEN
        RETURN jsonb_build_object('status', 'dry_run', 'reason', 'route_dry_run',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'guidance', 'The route itself is marked dry_run.');
    END IF;

    -- (4) only the in-database structure consumer can be called live. The call is
    -- static (no dynamic SQL on target_ref), so no other target is reachable and
    -- no code path performs network I/O.
    IF NOT (v_route.target_kind = 'sql_function' AND v_route.target_ref = 'fn_iu_structure_consumer') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'feature_not_supported',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'target_kind', v_route.target_kind, 'target_ref', v_route.target_ref,
                                  'guidance', 'Only target sql_function fn_iu_structure_consumer can be delivered live; external delivery does not exist.');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.event_outbox e WHERE e.event_id = p_event_id) THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'event_not_found',
                                  'route_code', p_route_code, 'event_id', p_event_id,
                                  'guidance', 'No row in public.event_outbox has this event_id.');
    END IF;

    RETURN jsonb_build_object('status', 'sent', 'route_code', p_route_code, 'event_id', p_event_id,
                              'result', public.fn_iu_structure_consumer(p_event_id));
END
$fn$;

-- The parameter is literally named route_code (the operator layer calls it by
-- name); it is copied once into v_route_code and every column is qualified.
\ir functions/substrate/fn_iu_route_worker_run.sql

-- -----------------------------------------------------------------------------
-- 6. Birth gate and composer functions (all behind iu_core.composer_enabled)
-- -----------------------------------------------------------------------------
CREATE FUNCTION public.fn_iu_create(
    p_canonical_address text,
    p_unit_kind         text,
    p_title             text,
    p_actor             text,
    p_body              text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_iu_id    uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; no unit was created.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_canonical_address IS NULL OR p_canonical_address !~ '^[a-z0-9][a-z0-9._/-]*$' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'canonical_address',
                                  'guidance', 'Required; lower-case letters, digits and . _ / - only, starting with a letter or digit.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_unit_kind IS NULL
       OR p_unit_kind NOT IN ('design_doc_section', 'section', 'file', 'workflow_step', 'piece') THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'unit_kind',
                                  'guidance', 'One of design_doc_section, section, file, workflow_step, piece.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_title IS NULL OR btrim(p_title) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'title',
                                  'guidance', 'Required and not blank.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who is creating the unit.',
                                  'next_action', 'fix_input_and_retry');
    END IF;

    -- ON CONFLICT: two concurrent births of one address give one unit and one 'duplicate'.
    INSERT INTO public.information_unit (canonical_address, unit_kind, title, body, created_by)
    VALUES (p_canonical_address, p_unit_kind, p_title, p_body, p_actor)
    ON CONFLICT (canonical_address) DO NOTHING
    RETURNING iu_id INTO v_iu_id;

    IF v_iu_id IS NULL THEN
        SELECT iu.iu_id INTO v_iu_id
          FROM public.information_unit iu
         WHERE iu.canonical_address = p_canonical_address;
        RETURN jsonb_build_object('status', 'duplicate', 'iu_id', v_iu_id,
                                  'canonical_address', p_canonical_address,
                                  'guidance', 'A unit with this canonical_address already exists; nothing was created.',
                                  'next_action', 'use_existing_iu');
    END IF;

    -- The birth gate writes the unit and emits no event: seed 003 §2 counts
    -- runtime/270's writes as 2 births and 4 (composer) events, and seed 001 §3's
    -- worker sees only composer events (correction: docs/seeds.md).
    RETURN jsonb_build_object('status', 'created', 'iu_id', v_iu_id,
                              'canonical_address', p_canonical_address,
                              'unit_kind', p_unit_kind);
END
$fn$;

CREATE FUNCTION public.fn_iu_compose(
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

CREATE FUNCTION public.fn_iu_collection_add_piece(
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

CREATE FUNCTION public.fn_iu_collection_remove_piece(
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

CREATE FUNCTION public.fn_iu_collection_reorder_piece(
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

CREATE FUNCTION public.fn_iu_collection_validate(p_collection_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_c       public.iu_collection%ROWTYPE;
    v_count   integer;
    v_contig  boolean;
    v_active  boolean;
    v_ok      boolean;
BEGIN
    SELECT * INTO v_c FROM public.iu_collection c WHERE c.collection_id = p_collection_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('ok', false, 'status', 'not_found', 'collection_id', p_collection_id);
    END IF;

    SELECT count(*),
           coalesce(bool_and(s.piece_order = s.rn - 1), true),
           coalesce(bool_and(iu.lifecycle_status = 'active' AND iu.deleted_at IS NULL), true)
      INTO v_count, v_contig, v_active
      FROM (SELECT m.iu_id, m.piece_order, row_number() OVER (ORDER BY m.piece_order) AS rn
              FROM public.iu_collection_member m
             WHERE m.collection_id = p_collection_id) AS s
      JOIN public.information_unit iu ON iu.iu_id = s.iu_id;

    v_ok := v_c.status = 'active' AND v_contig AND v_active;

    RETURN jsonb_build_object(
        'ok', v_ok,
        'status', CASE WHEN v_ok THEN 'valid' ELSE 'invalid' END,
        'collection_id', p_collection_id,
        'collection_key', v_c.collection_key,
        'member_count', v_count,
        'checks', jsonb_build_object(
            'collection_active', v_c.status = 'active',
            'orders_contiguous', v_contig,
            'members_active', v_active,
            'has_members', v_count > 0));
END
$fn$;

CREATE FUNCTION public.fn_iu_collection_render(p_collection_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_c        public.iu_collection%ROWTYPE;
    v_members  jsonb;
    v_manifest text;
    v_count    integer;
BEGIN
    SELECT * INTO v_c FROM public.iu_collection c WHERE c.collection_id = p_collection_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'not_found', 'collection_id', p_collection_id);
    END IF;

    -- Manifest: one line per member, "<order>\t<address>\t<title>[\t<label>]",
    -- backslash, tab, CR and LF escaped; no timestamps or ids, so the same
    -- membership always renders the same text and the same digest.
    SELECT count(*),
           coalesce(jsonb_agg(jsonb_build_object('piece_order', m.piece_order,
                                                 'canonical_address', iu.canonical_address,
                                                 'title', iu.title,
                                                 'label', m.label) ORDER BY m.piece_order), '[]'),
           coalesce(string_agg(
               m.piece_order::text || E'\t' || iu.canonical_address || E'\t'
               || replace(replace(replace(replace(iu.title, E'\\', E'\\\\'), E'\t', E'\\t'), E'\n', E'\\n'), E'\r', E'\\r')
               || CASE WHEN m.label IS NULL THEN ''
                       ELSE E'\t' || replace(replace(replace(replace(m.label, E'\\', E'\\\\'), E'\t', E'\\t'), E'\n', E'\\n'), E'\r', E'\\r')
                  END
               || E'\n', '' ORDER BY m.piece_order), '')
      INTO v_count, v_members, v_manifest
      FROM public.iu_collection_member m
      JOIN public.information_unit iu ON iu.iu_id = m.iu_id
     WHERE m.collection_id = p_collection_id;

    RETURN jsonb_build_object('status', 'rendered',
                              'collection_id', p_collection_id,
                              'collection_key', v_c.collection_key,
                              'collection_kind', v_c.collection_kind,
                              'title', v_c.title,
                              'member_count', v_count,
                              'members', v_members,
                              'manifest', v_manifest,
                              'digest', md5(v_manifest));
END
$fn$;

CREATE FUNCTION public.fn_iu_workflow_from_steps(
    p_collection_key text,
    p_title          text,
    p_steps          jsonb,
    p_actor          text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_bad       integer[];
    v_dups      text[];
    v_existing  uuid;
    v_step      record;
    v_answer    jsonb;
    v_ids       uuid[] := '{}';
    v_failure   jsonb;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.composer_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.composer_enabled',
                                  'guidance', 'The composer gate is shut; no workflow was created.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_steps IS NULL OR jsonb_typeof(p_steps) <> 'array' OR jsonb_array_length(p_steps) = 0 THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'steps',
                                  'guidance', 'A JSON array of at least one {"address", "title"} object.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    SELECT array_agg((s.ord - 1)::integer ORDER BY s.ord) INTO v_bad
      FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS s (v, ord)
     WHERE jsonb_typeof(s.v) IS DISTINCT FROM 'object'
        OR jsonb_typeof(s.v -> 'address') IS DISTINCT FROM 'string'
        OR jsonb_typeof(s.v -> 'title') IS DISTINCT FROM 'string';
    IF v_bad IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'steps', 'bad_steps', to_jsonb(v_bad),
                                  'guidance', 'Every step must be an object with string "address" and "title".',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    SELECT array_agg(d.a ORDER BY d.a) INTO v_dups
      FROM (SELECT s.v ->> 'address' AS a FROM jsonb_array_elements(p_steps) AS s (v)
             GROUP BY 1 HAVING count(*) > 1) AS d;
    IF v_dups IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'steps', 'duplicate_addresses', to_jsonb(v_dups),
                                  'guidance', 'Step addresses must be distinct.', 'next_action', 'fix_input_and_retry');
    END IF;
    -- Checked before any step is created, so a duplicate key costs nothing.
    SELECT c.collection_id INTO v_existing FROM public.iu_collection c WHERE c.collection_key = p_collection_key;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'duplicate', 'collection_id', v_existing,
                                  'collection_key', p_collection_key,
                                  'guidance', 'A collection with this key already exists; nothing was created.',
                                  'next_action', 'use_existing_collection');
    END IF;

    -- All-or-nothing: any step or compose answer other than success undoes the
    -- steps created so far (and their events) by leaving this inner block.
    BEGIN
        FOR v_step IN
            SELECT (s.ord - 1)::integer AS idx, s.v ->> 'address' AS address, s.v ->> 'title' AS title
              FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS s (v, ord)
             ORDER BY s.ord
        LOOP
            v_answer := public.fn_iu_create(v_step.address, 'workflow_step', v_step.title, p_actor);
            IF v_answer ->> 'status' IS DISTINCT FROM 'created' THEN
                v_failure := jsonb_build_object('status', 'invalid_input', 'field', 'steps',
                                                'step', v_step.idx, 'step_answer', v_answer,
                                                'guidance', 'A step could not be created; nothing was created.',
                                                'next_action', 'fix_input_and_retry');
                RAISE EXCEPTION USING ERRCODE = 'IUWF1', MESSAGE = 'workflow step refused';
            END IF;
            v_ids := v_ids || (v_answer ->> 'iu_id')::uuid;
        END LOOP;

        v_answer := public.fn_iu_compose(p_collection_key, 'workflow', p_title, v_ids, p_actor);
        IF v_answer ->> 'status' IS DISTINCT FROM 'composed' THEN
            v_failure := v_answer || jsonb_build_object('guidance',
                            'The workflow collection could not be composed; no step was created. ' || coalesce(v_answer ->> 'guidance', ''));
            RAISE EXCEPTION USING ERRCODE = 'IUWF1', MESSAGE = 'workflow compose refused';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'IUWF1' THEN
            RETURN v_failure;
    END;

    RETURN v_answer || jsonb_build_object('step_iu_ids', to_jsonb(v_ids));
END
$fn$;

CREATE FUNCTION public.fn_iu_retire(p_iu_id uuid, p_reason text, p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
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
                                  'guidance', 'The structure-ops gate is shut; nothing was retired.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'reason',
                                  'guidance', 'Required: why the unit is retired.', 'next_action', 'fix_input_and_retry');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who retires the unit.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT iu.lifecycle_status, iu.deleted_at INTO v_iu
      FROM public.information_unit iu WHERE iu.iu_id = p_iu_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'No information unit has this id.', 'next_action', 'check_iu_id');
    END IF;
    IF v_iu.lifecycle_status = 'retired' THEN
        RETURN jsonb_build_object('status', 'already_retired', 'iu_id', p_iu_id,
                                  'guidance', 'The unit is already retired; nothing changed.');
    END IF;
    IF v_iu.lifecycle_status <> 'active' OR v_iu.deleted_at IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', format('The unit is %s; only active units are retired.', v_iu.lifecycle_status),
                                  'next_action', 'check_iu_id');
    END IF;

    -- Retiring a piece that a collection still renders would break that collection.
    SELECT array_agg(c.collection_key ORDER BY c.collection_key) INTO v_collections
      FROM public.iu_collection_member m
      JOIN public.iu_collection c ON c.collection_id = m.collection_id
     WHERE m.iu_id = p_iu_id;
    IF v_collections IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'member_of_collection',
                                  'iu_id', p_iu_id, 'collections', to_jsonb(v_collections),
                                  'guidance', 'The piece is still a member of a collection; nothing was retired.',
                                  'next_action', 'remove_from_collections_first');
    END IF;

    UPDATE public.information_unit iu
       SET lifecycle_status = 'retired', retired_at = now(), retired_reason = p_reason, updated_at = now()
     WHERE iu.iu_id = p_iu_id;

    v_event_id := public.fn_iu_emit_event('iu', 'iu_retired', p_iu_id::text,
                                          jsonb_build_object('reason', p_reason), p_actor);

    RETURN jsonb_build_object('status', 'retired', 'iu_id', p_iu_id, 'event_id', v_event_id);
END
$fn$;

CREATE FUNCTION public.fn_iu_refresh_metadata_axes(p_iu_id uuid, p_actor text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_old      jsonb;
    v_axes     jsonb;
    v_event_id uuid;
BEGIN
    IF NOT public.fn_iu_gate_is_open('iu_core.three_axis_auto_refresh_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.three_axis_auto_refresh_enabled',
                                  'guidance', 'The three-axis refresh gate is shut; nothing was refreshed.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who refreshes.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT iu.metadata_axes,
           jsonb_build_object('kind', iu.unit_kind,
                              'lifecycle', iu.lifecycle_status,
                              'collections', (SELECT count(*) FROM public.iu_collection_member m WHERE m.iu_id = iu.iu_id))
      INTO v_old, v_axes
      FROM public.information_unit iu WHERE iu.iu_id = p_iu_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'No information unit has this id.', 'next_action', 'check_iu_id');
    END IF;

    UPDATE public.information_unit iu
       SET metadata_axes = v_axes, updated_at = now()
     WHERE iu.iu_id = p_iu_id;

    -- Subject carries the axes digest: the same axes emit once, new axes emit again.
    v_event_id := public.fn_iu_emit_event('iu', 'iu_metadata_axes_refreshed',
                                          p_iu_id::text || ':' || md5(v_axes::text),
                                          jsonb_build_object('metadata_axes', v_axes), p_actor);

    RETURN jsonb_build_object('status', 'refreshed', 'iu_id', p_iu_id, 'metadata_axes', v_axes,
                              'changed', v_old IS DISTINCT FROM v_axes, 'event_id', v_event_id);
END
$fn$;

\ir functions/substrate/fn_iu_healthcheck.sql

-- -----------------------------------------------------------------------------
-- 7. cutter_governance: review decisions, and the review-gated split / merge
-- -----------------------------------------------------------------------------
CREATE SCHEMA cutter_governance;

CREATE TABLE cutter_governance.manifest_envelope (
    envelope_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    manifest_key text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cutter_governance.manifest_unit_block (
    envelope_id   uuid NOT NULL REFERENCES cutter_governance.manifest_envelope (envelope_id),
    unit_local_id text NOT NULL,
    PRIMARY KEY (envelope_id, unit_local_id)
);

-- Columns and FKs as read live in seed 002 A3.
CREATE TABLE cutter_governance.review_decision (
    review_decision_id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    governance_event_kind            text NOT NULL,
    manifest_id                      uuid NOT NULL REFERENCES cutter_governance.manifest_envelope (envelope_id),
    manifest_version                 integer NOT NULL,
    manifest_unit_local_id           text,
    review_scope                     text NOT NULL,
    status                           text NOT NULL,
    verdict                          text NOT NULL,
    findings                         jsonb NOT NULL DEFAULT '[]',
    reviewer_class                   text NOT NULL,
    reviewer_identity                jsonb NOT NULL DEFAULT '{}',
    risk_class_assessment            text NOT NULL,
    decision_at                      timestamptz NOT NULL DEFAULT now(),
    decided_by                       text NOT NULL,
    cross_signed_by_dot_verifier     boolean NOT NULL DEFAULT false,
    version                          integer NOT NULL DEFAULT 1,
    prior_review_decision_id         uuid REFERENCES cutter_governance.review_decision (review_decision_id),
    superseded_by_review_decision_id uuid REFERENCES cutter_governance.review_decision (review_decision_id),
    created_at                       timestamptz NOT NULL DEFAULT now(),
    updated_at                       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT review_decision_unit_block_fkey
        FOREIGN KEY (manifest_id, manifest_unit_local_id)
        REFERENCES cutter_governance.manifest_unit_block (envelope_id, unit_local_id)
);

-- SECURITY DEFINER: split writes units and events on behalf of a reviewer role
-- that holds no table privileges.
CREATE FUNCTION public.fn_iu_piece_split(
    p_iu_id              uuid,
    p_parts              jsonb,
    p_review_decision_id uuid,
    p_actor              text,
    p_dry_run            boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_rd_found    integer;
    v_live        boolean := NOT coalesce(p_dry_run, true);
    v_iu          record;
    v_bad         integer[];
    v_dups        text[];
    v_taken       text[];
    v_collections text[];
    v_new_ids     uuid[];
    v_event_id    uuid;
BEGIN
    -- Review decision first (seed 002 A3, verbatim answers).
    IF p_review_decision_id IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'review_decision_id',
            'guidance', 'Required. Split must reference a cutter_governance.review_decision row.',
            'next_action', 'record_review_decision_first');
    END IF;
    SELECT count(*) INTO v_rd_found FROM cutter_governance.review_decision rd
     WHERE rd.review_decision_id = p_review_decision_id;
    IF v_rd_found = 0 THEN
        RETURN jsonb_build_object('status', 'review_decision_not_found',
            'review_decision_id', p_review_decision_id,
            'guidance', 'No cutter_governance.review_decision row has this id. Split must reference a recorded review decision.',
            'next_action', 'record_review_decision_first');
    END IF;

    -- Live needs the structure-ops gate; a dry run never does.
    IF v_live AND NOT public.fn_iu_gate_is_open('iu_core.structure_ops_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.structure_ops_enabled',
                                  'guidance', 'The structure-ops gate is shut; nothing was split. A dry run (p_dry_run => true) needs no gate.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who splits.', 'next_action', 'fix_input_and_retry');
    END IF;

    IF v_live THEN
        SELECT iu.lifecycle_status, iu.deleted_at INTO v_iu
          FROM public.information_unit iu WHERE iu.iu_id = p_iu_id FOR UPDATE;
    ELSE
        SELECT iu.lifecycle_status, iu.deleted_at INTO v_iu
          FROM public.information_unit iu WHERE iu.iu_id = p_iu_id;
    END IF;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', 'No information unit has this id.', 'next_action', 'check_iu_id');
    END IF;
    IF v_iu.lifecycle_status <> 'active' OR v_iu.deleted_at IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_id',
                                  'guidance', format('The unit is %s; only active units are split.', v_iu.lifecycle_status),
                                  'next_action', 'check_iu_id');
    END IF;

    -- The birth gate's validation, applied to every part.
    IF p_parts IS NULL OR jsonb_typeof(p_parts) <> 'array' OR jsonb_array_length(p_parts) < 2 THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'parts',
                                  'guidance', 'A JSON array of at least two {"address", "title"} objects.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    SELECT array_agg((s.ord - 1)::integer ORDER BY s.ord) INTO v_bad
      FROM jsonb_array_elements(p_parts) WITH ORDINALITY AS s (v, ord)
     WHERE jsonb_typeof(s.v) IS DISTINCT FROM 'object'
        OR jsonb_typeof(s.v -> 'address') IS DISTINCT FROM 'string'
        OR NOT coalesce((s.v ->> 'address') ~ '^[a-z0-9][a-z0-9._/-]*$', false)
        OR jsonb_typeof(s.v -> 'title') IS DISTINCT FROM 'string'
        OR btrim(s.v ->> 'title') = '';
    IF v_bad IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'parts', 'bad_parts', to_jsonb(v_bad),
                                  'guidance', 'Every part needs a valid lower-case "address" and a non-blank "title".',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    SELECT array_agg(d.a ORDER BY d.a) INTO v_dups
      FROM (SELECT s.v ->> 'address' AS a FROM jsonb_array_elements(p_parts) AS s (v)
             GROUP BY 1 HAVING count(*) > 1) AS d;
    IF v_dups IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'parts', 'duplicate_addresses', to_jsonb(v_dups),
                                  'guidance', 'Part addresses must be distinct.', 'next_action', 'fix_input_and_retry');
    END IF;
    SELECT array_agg(iu.canonical_address ORDER BY iu.canonical_address) INTO v_taken
      FROM public.information_unit iu
     WHERE iu.canonical_address IN (SELECT s.v ->> 'address' FROM jsonb_array_elements(p_parts) AS s (v));
    IF v_taken IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'parts', 'existing_addresses', to_jsonb(v_taken),
                                  'guidance', 'These addresses already belong to units.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT array_agg(c.collection_key ORDER BY c.collection_key) INTO v_collections
      FROM public.iu_collection_member m
      JOIN public.iu_collection c ON c.collection_id = m.collection_id
     WHERE m.iu_id = p_iu_id;
    IF v_collections IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'member_of_collection',
                                  'iu_id', p_iu_id, 'collections', to_jsonb(v_collections),
                                  'guidance', 'The original would be retired but a collection still holds it.',
                                  'next_action', 'remove_from_collections_first');
    END IF;

    IF NOT v_live THEN
        RETURN jsonb_build_object('status', 'dry_run',
            'would_create', (SELECT jsonb_agg(jsonb_build_object('address', s.v ->> 'address',
                                                                 'title', s.v ->> 'title',
                                                                 'unit_kind', 'piece') ORDER BY s.ord)
                               FROM jsonb_array_elements(p_parts) WITH ORDINALITY AS s (v, ord)),
            'would_retire', p_iu_id,
            'review_decision_id', p_review_decision_id);
    END IF;

    WITH parts AS (
        SELECT s.ord, s.v ->> 'address' AS address, s.v ->> 'title' AS title
          FROM jsonb_array_elements(p_parts) WITH ORDINALITY AS s (v, ord)
    ), ins AS (
        INSERT INTO public.information_unit (canonical_address, unit_kind, title, created_by)
        SELECT p.address, 'piece', p.title, p_actor FROM parts p ORDER BY p.ord
        RETURNING iu_id, canonical_address
    )
    SELECT array_agg(ins.iu_id ORDER BY parts.ord) INTO v_new_ids
      FROM ins JOIN parts ON parts.address = ins.canonical_address;

    UPDATE public.information_unit iu
       SET lifecycle_status = 'retired', retired_at = now(),
           retired_reason = 'split under review decision ' || p_review_decision_id::text,
           superseded_by = v_new_ids, updated_at = now()
     WHERE iu.iu_id = p_iu_id;

    v_event_id := public.fn_iu_emit_event('iu', 'structure_piece_split', p_iu_id::text,
        jsonb_build_object('review_decision_id', p_review_decision_id, 'new_iu_ids', to_jsonb(v_new_ids)),
        p_actor);

    RETURN jsonb_build_object('status', 'split', 'iu_id', p_iu_id, 'new_iu_ids', to_jsonb(v_new_ids),
                              'review_decision_id', p_review_decision_id, 'event_id', v_event_id);
END
$fn$;

CREATE FUNCTION public.fn_iu_piece_merge(
    p_iu_ids             uuid[],
    p_merged_address     text,
    p_review_decision_id uuid,
    p_actor              text,
    p_dry_run            boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    v_rd_found    integer;
    v_live        boolean := NOT coalesce(p_dry_run, true);
    v_dups        uuid[];
    v_unknown     uuid[];
    v_inactive    uuid[];
    v_collections text[];
    v_title       text;
    v_body        text;
    v_new_id      uuid;
    v_event_id    uuid;
BEGIN
    IF p_review_decision_id IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'review_decision_id',
            'guidance', 'Required. Merge must reference a cutter_governance.review_decision row.',
            'next_action', 'record_review_decision_first');
    END IF;
    SELECT count(*) INTO v_rd_found FROM cutter_governance.review_decision rd
     WHERE rd.review_decision_id = p_review_decision_id;
    IF v_rd_found = 0 THEN
        RETURN jsonb_build_object('status', 'review_decision_not_found',
            'review_decision_id', p_review_decision_id,
            'guidance', 'No cutter_governance.review_decision row has this id. Merge must reference a recorded review decision.',
            'next_action', 'record_review_decision_first');
    END IF;

    IF v_live AND NOT public.fn_iu_gate_is_open('iu_core.structure_ops_enabled') THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'gate_closed',
                                  'gate', 'iu_core.structure_ops_enabled',
                                  'guidance', 'The structure-ops gate is shut; nothing was merged. A dry run (p_dry_run => true) needs no gate.',
                                  'next_action', 'open_gate_via_gate_protocol');
    END IF;

    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'actor',
                                  'guidance', 'Required: who merges.', 'next_action', 'fix_input_and_retry');
    END IF;
    IF p_iu_ids IS NULL OR array_ndims(p_iu_ids) <> 1 OR cardinality(p_iu_ids) < 2
       OR array_position(p_iu_ids, NULL) IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_ids',
                                  'guidance', 'A one-dimensional array of at least two unit ids, without NULLs.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    SELECT array_agg(d.x ORDER BY d.x) INTO v_dups
      FROM (SELECT x FROM unnest(p_iu_ids) AS x GROUP BY x HAVING count(*) > 1) AS d;
    IF v_dups IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_ids', 'duplicate_ids', to_jsonb(v_dups),
                                  'guidance', 'Each unit can be merged once.', 'next_action', 'fix_input_and_retry');
    END IF;
    IF p_merged_address IS NULL OR p_merged_address !~ '^[a-z0-9][a-z0-9._/-]*$' THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'merged_address',
                                  'guidance', 'Required; lower-case letters, digits and . _ / - only, starting with a letter or digit.',
                                  'next_action', 'fix_input_and_retry');
    END IF;
    IF EXISTS (SELECT 1 FROM public.information_unit iu WHERE iu.canonical_address = p_merged_address) THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'merged_address',
                                  'guidance', 'This address already belongs to a unit.', 'next_action', 'fix_input_and_retry');
    END IF;

    IF v_live THEN
        PERFORM 1 FROM public.information_unit iu
          WHERE iu.iu_id = ANY (p_iu_ids) ORDER BY iu.iu_id FOR UPDATE;
    END IF;
    SELECT array_agg(u.x ORDER BY u.ord) FILTER (WHERE iu.iu_id IS NULL),
           array_agg(u.x ORDER BY u.ord) FILTER (WHERE iu.iu_id IS NOT NULL
                                                   AND (iu.lifecycle_status <> 'active' OR iu.deleted_at IS NOT NULL)),
           string_agg(iu.title, ' + ' ORDER BY u.ord),
           string_agg(iu.body, E'\n\n' ORDER BY u.ord)
      INTO v_unknown, v_inactive, v_title, v_body
      FROM unnest(p_iu_ids) WITH ORDINALITY AS u (x, ord)
      LEFT JOIN public.information_unit iu ON iu.iu_id = u.x;
    IF v_unknown IS NOT NULL OR v_inactive IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'iu_ids',
                                  'unknown_ids', coalesce(to_jsonb(v_unknown), '[]'),
                                  'inactive_ids', coalesce(to_jsonb(v_inactive), '[]'),
                                  'guidance', 'Every unit must exist and be active.', 'next_action', 'fix_input_and_retry');
    END IF;

    SELECT array_agg(DISTINCT c.collection_key) INTO v_collections
      FROM public.iu_collection_member m
      JOIN public.iu_collection c ON c.collection_id = m.collection_id
     WHERE m.iu_id = ANY (p_iu_ids);
    IF v_collections IS NOT NULL THEN
        RETURN jsonb_build_object('status', 'refused', 'reason', 'member_of_collection',
                                  'collections', to_jsonb(v_collections),
                                  'guidance', 'The sources would be retired but a collection still holds one.',
                                  'next_action', 'remove_from_collections_first');
    END IF;

    IF NOT v_live THEN
        RETURN jsonb_build_object('status', 'dry_run',
            'would_create', jsonb_build_object('address', p_merged_address, 'title', v_title, 'unit_kind', 'piece'),
            'would_retire', to_jsonb(p_iu_ids),
            'review_decision_id', p_review_decision_id);
    END IF;

    INSERT INTO public.information_unit (canonical_address, unit_kind, title, body, created_by)
    VALUES (p_merged_address, 'piece', v_title, v_body, p_actor)
    RETURNING iu_id INTO v_new_id;

    UPDATE public.information_unit iu
       SET lifecycle_status = 'retired', retired_at = now(),
           retired_reason = 'merged under review decision ' || p_review_decision_id::text,
           superseded_by = ARRAY[v_new_id], updated_at = now()
     WHERE iu.iu_id = ANY (p_iu_ids);

    v_event_id := public.fn_iu_emit_event('iu', 'structure_pieces_merged', v_new_id::text,
        jsonb_build_object('review_decision_id', p_review_decision_id, 'source_iu_ids', to_jsonb(p_iu_ids)),
        p_actor);

    RETURN jsonb_build_object('status', 'merged', 'merged_iu_id', v_new_id,
                              'retired_iu_ids', to_jsonb(p_iu_ids),
                              'review_decision_id', p_review_decision_id, 'event_id', v_event_id);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 8. Observability views (seed 001 §7)
-- -----------------------------------------------------------------------------
CREATE VIEW public.v_dot_iu_command_registry AS
SELECT c.command_name,
       c.category,
       c.mutating,
       c.reversible,
       c.target_functions,
       count(r.run_id)                                          AS runs,
       count(r.run_id) FILTER (WHERE r.run_status = 'applied')  AS applied,
       count(r.run_id) FILTER (WHERE r.run_status = 'refused')  AS refused,
       count(r.run_id) FILTER (WHERE r.run_status = 'failed')   AS failed,
       (SELECT lr.run_status FROM public.dot_iu_command_run lr
         WHERE lr.command_name = c.command_name
         ORDER BY lr.created_at DESC, lr.run_id DESC LIMIT 1)   AS last_status,
       max(r.created_at)                                        AS last_run_at
  FROM public.dot_iu_command_catalog c
  LEFT JOIN public.dot_iu_command_run r ON r.command_name = c.command_name
 GROUP BY c.command_name;

CREATE VIEW public.v_dot_iu_command_run_health AS
SELECT count(*)                                         AS total_runs,
       count(*) FILTER (WHERE r.run_mode = 'apply')     AS apply_runs,
       count(*) FILTER (WHERE r.run_status = 'applied') AS applied,
       count(*) FILTER (WHERE r.run_status = 'refused') AS refused,
       count(*) FILTER (WHERE r.run_status = 'failed')  AS failed,
       count(DISTINCT r.command_name)                   AS distinct_commands,
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_size
  FROM public.dot_iu_command_run r;

CREATE VIEW public.v_iu_collection_health AS
SELECT h.collection_key,
       h.status,
       h.member_count,
       h.orders_contiguous,
       h.all_members_active,
       (h.status = 'active' AND h.orders_contiguous AND h.all_members_active) AS ok
  FROM (SELECT c.collection_key,
               c.status,
               count(m.iu_id) AS member_count,
               coalesce(bool_and(m.piece_order = m.rn - 1), true) AS orders_contiguous,
               coalesce(bool_and(iu.lifecycle_status = 'active' AND iu.deleted_at IS NULL), true) AS all_members_active
          FROM public.iu_collection c
          LEFT JOIN (SELECT mm.collection_id, mm.iu_id, mm.piece_order,
                            row_number() OVER (PARTITION BY mm.collection_id ORDER BY mm.piece_order) AS rn
                       FROM public.iu_collection_member mm) AS m
                 ON m.collection_id = c.collection_id
          LEFT JOIN public.information_unit iu ON iu.iu_id = m.iu_id
         GROUP BY c.collection_id) AS h;

CREATE VIEW public.v_iu_collection_manifest AS
SELECT c.collection_key,
       m.piece_order,
       iu.canonical_address,
       iu.title,
       m.label
  FROM public.iu_collection_member m
 INNER JOIN public.iu_collection c ON c.collection_id = m.collection_id
 INNER JOIN public.information_unit iu ON iu.iu_id = m.iu_id
 ORDER BY c.collection_key, m.piece_order;

CREATE VIEW public.v_iu_composer_event_backlog AS
SELECT e.event_type,
       e.delivery_lane AS lane,
       count(*) FILTER (WHERE a.event_id IS NULL) AS pending,
       count(*)                                   AS total
  FROM public.event_outbox e
  LEFT JOIN (SELECT DISTINCT ra.event_id FROM public.iu_route_attempt ra) AS a
         ON a.event_id = e.event_id
 WHERE e.event_stream = 'composer'
 GROUP BY e.event_type, e.delivery_lane;

CREATE VIEW public.v_iu_route_attempt_summary AS
SELECT a.route_code,
       a.attempt_status,
       count(*)            AS attempts,
       max(a.attempted_at) AS last_attempt_at
  FROM public.iu_route_attempt a
 GROUP BY a.route_code, a.attempt_status;

CREATE VIEW public.v_iu_route_dead_letter_open AS
SELECT d.dead_letter_id,
       d.route_code,
       d.event_id,
       d.reason,
       d.detail,
       d.created_at
  FROM public.iu_route_dead_letter d
 WHERE d.resolved_at IS NULL;

-- The read surface for the operator runtime: every governed command is a
-- `SELECT public.fn_*(…)`, so the read commands need a function too. One
-- function over an allowlist of views, chosen by a CASE on the argument: no
-- identifier from input ever reaches dynamic SQL.
CREATE FUNCTION public.fn_iu_observe(p_surface text, p_limit integer DEFAULT 100)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = public, pg_temp
AS $fn$
DECLARE
    c_surfaces CONSTANT text[] := ARRAY['command_registry', 'command_run_health', 'collection_health',
                                        'collection_manifest', 'composer_event_backlog',
                                        'route_attempt_summary', 'route_dead_letter_open'];
    v_rows jsonb;
BEGIN
    IF p_surface IS NULL OR NOT (p_surface = ANY (c_surfaces)) THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'p_surface',
                                  'guidance', 'One of: ' || array_to_string(c_surfaces, ', '),
                                  'next_action', 'choose_a_known_surface');
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RETURN jsonb_build_object('status', 'invalid_input', 'field', 'p_limit',
                                  'guidance', 'p_limit must be between 1 and 10000.',
                                  'next_action', 'fix_input');
    END IF;
    CASE p_surface
        WHEN 'command_registry' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v) ORDER BY v.command_name), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_dot_iu_command_registry ORDER BY command_name LIMIT p_limit) v;
        WHEN 'command_run_health' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v)), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_dot_iu_command_run_health LIMIT p_limit) v;
        WHEN 'collection_health' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v) ORDER BY v.collection_key), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_iu_collection_health ORDER BY collection_key LIMIT p_limit) v;
        WHEN 'collection_manifest' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v) ORDER BY v.collection_key, v.piece_order), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_iu_collection_manifest
                     ORDER BY collection_key, piece_order LIMIT p_limit) v;
        WHEN 'composer_event_backlog' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v)), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_iu_composer_event_backlog LIMIT p_limit) v;
        WHEN 'route_attempt_summary' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v)), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_iu_route_attempt_summary LIMIT p_limit) v;
        WHEN 'route_dead_letter_open' THEN
            SELECT coalesce(jsonb_agg(to_jsonb(v)), '[]') INTO v_rows
              FROM (SELECT * FROM public.v_iu_route_dead_letter_open LIMIT p_limit) v;
    END CASE;
    RETURN jsonb_build_object('status', 'ok', 'surface', p_surface,
                              'row_count', jsonb_array_length(v_rows), 'rows', v_rows);
END
$fn$;

-- -----------------------------------------------------------------------------
-- 9. Privileges: every function that writes (or delivers) is not for PUBLIC;
-- the operator layer grants EXECUTE to its own roles.
-- -----------------------------------------------------------------------------
REVOKE EXECUTE ON FUNCTION public.fn_dot_iu_command_log(text, text, text, text, boolean, text, jsonb, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_emit_event(text, text, text, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_route_deliver(text, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_route_worker_run(text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_create(text, text, text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_compose(text, text, text, uuid[], text, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_collection_add_piece(uuid, uuid, text, integer, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_collection_remove_piece(uuid, uuid, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_collection_reorder_piece(uuid, uuid, integer, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_workflow_from_steps(text, text, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_retire(uuid, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_refresh_metadata_axes(uuid, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_piece_split(uuid, jsonb, uuid, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_iu_piece_merge(uuid[], text, uuid, text, boolean) FROM PUBLIC;

-- @postcheck

DO $postcheck$
DECLARE
    c_tables text[] := ARRAY[
        'public.dot_config', 'public.dot_iu_command_catalog', 'public.dot_iu_command_run',
        'public.information_unit', 'public.iu_collection', 'public.iu_collection_member',
        'public.event_type_registry', 'public.event_outbox', 'public.iu_outbound_route',
        'public.iu_route_attempt', 'public.iu_route_dead_letter',
        'cutter_governance.manifest_envelope', 'cutter_governance.manifest_unit_block',
        'cutter_governance.review_decision'];
    c_views text[] := ARRAY[
        'public.v_dot_iu_command_registry', 'public.v_dot_iu_command_run_health',
        'public.v_iu_collection_health', 'public.v_iu_collection_manifest',
        'public.v_iu_composer_event_backlog', 'public.v_iu_route_attempt_summary',
        'public.v_iu_route_dead_letter_open'];
    c_functions text[] := ARRAY[
        'public.fn_dot_config_touch()',
        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)',
        'public.fn_event_outbox_type_validate()',
        'public.fn_iu_core_routes_enabled()',
        'public.fn_iu_delivery_enabled()',
        'public.fn_iu_gate_is_open(text)',
        'public.fn_iu_emit_event(text,text,text,jsonb,text)',
        'public.fn_iu_structure_consumer(uuid)',
        'public.fn_iu_route_deliver(text,uuid)',
        'public.fn_iu_route_worker_run(text,integer)',
        'public.fn_iu_create(text,text,text,text,text)',
        'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
        'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)',
        'public.fn_iu_collection_remove_piece(uuid,uuid,text)',
        'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)',
        'public.fn_iu_collection_validate(uuid)',
        'public.fn_iu_collection_render(uuid)',
        'public.fn_iu_workflow_from_steps(text,text,jsonb,text)',
        'public.fn_iu_retire(uuid,text,text)',
        'public.fn_iu_refresh_metadata_axes(uuid,text)',
        'public.fn_iu_healthcheck()',
        'public.fn_iu_observe(text, integer)',
        'public.fn_iu_piece_split(uuid,jsonb,uuid,text,boolean)',
        'public.fn_iu_piece_merge(uuid[],text,uuid,text,boolean)'];
    c_mutating text[] := ARRAY[
        'public.fn_dot_iu_command_log(text,text,text,text,boolean,text,jsonb,jsonb,text)',
        'public.fn_iu_emit_event(text,text,text,jsonb,text)',
        'public.fn_iu_route_deliver(text,uuid)',
        'public.fn_iu_route_worker_run(text,integer)',
        'public.fn_iu_create(text,text,text,text,text)',
        'public.fn_iu_compose(text,text,text,uuid[],text,text[])',
        'public.fn_iu_collection_add_piece(uuid,uuid,text,integer,text)',
        'public.fn_iu_collection_remove_piece(uuid,uuid,text)',
        'public.fn_iu_collection_reorder_piece(uuid,uuid,integer,text)',
        'public.fn_iu_workflow_from_steps(text,text,jsonb,text)',
        'public.fn_iu_retire(uuid,text,text)',
        'public.fn_iu_refresh_metadata_axes(uuid,text)',
        'public.fn_iu_piece_split(uuid,jsonb,uuid,text,boolean)',
        'public.fn_iu_piece_merge(uuid[],text,uuid,text,boolean)'];
    c_gates text[] := ARRAY[
        'iu_core.composer_enabled', 'iu_core.structure_ops_enabled', 'iu_core.delivery_enabled',
        'iu_core.three_axis_auto_refresh_enabled', 'iu_core.operator_runtime_enabled',
        'queue.job_substrate.enabled', 'queue.dlq.replay_enabled',
        'iu_enact.allow_no_review_decision', 'iu_core.vector_sync_enabled'];
    v_missing text[];
    v_n       integer;
BEGIN
    SELECT array_agg(t) INTO v_missing FROM unnest(c_tables) AS t
     WHERE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass(t)) IS DISTINCT FROM 'r';
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate post-check: table(s) missing: %', array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(v) INTO v_missing FROM unnest(c_views) AS v
     WHERE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass(v)) IS DISTINCT FROM 'v';
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate post-check: view(s) missing: %', array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(f) INTO v_missing FROM unnest(c_functions) AS f WHERE to_regprocedure(f) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate post-check: function(s) not resolvable: %', array_to_string(v_missing, ', ');
    END IF;

    -- Every SECURITY DEFINER function pins its search_path (ending in pg_temp).
    SELECT array_agg(p.oid::regprocedure::text) INTO v_missing
      FROM pg_catalog.pg_proc p
     WHERE p.oid = ANY (SELECT to_regprocedure(f)::oid FROM unnest(c_functions) AS f)
       AND p.prosecdef
       AND NOT coalesce('search_path=public, pg_temp' = ANY (p.proconfig), false);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate post-check: SECURITY DEFINER without search_path = public, pg_temp: %',
            array_to_string(v_missing, ', ');
    END IF;

    SELECT array_agg(f) INTO v_missing
      FROM unnest(c_mutating) AS f
      JOIN pg_catalog.pg_proc p ON p.oid = to_regprocedure(f)
     WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate post-check: PUBLIC can still EXECUTE mutating function(s): %',
            array_to_string(v_missing, ', ');
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgname = 'trg_dot_config_touch' AND t.tgrelid = 'public.dot_config'::regclass)
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgname = 'trg_event_outbox_type_validate' AND t.tgrelid = 'public.event_outbox'::regclass) THEN
        RAISE EXCEPTION 'substrate post-check: trigger trg_dot_config_touch or trg_event_outbox_type_validate missing';
    END IF;

    -- The immediate-lane idempotency index must be unique AND partial.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                    WHERE i.indexrelid = to_regclass('public.idx_event_outbox_idempotent')
                      AND i.indrelid = 'public.event_outbox'::regclass
                      AND i.indisunique
                      AND pg_get_expr(i.indpred, i.indrelid) = '(delivery_lane = ''immediate''::text)') THEN
        RAISE EXCEPTION 'substrate post-check: partial unique index idx_event_outbox_idempotent (WHERE delivery_lane = ''immediate'') missing';
    END IF;

    SELECT count(*) INTO v_n FROM public.dot_config;
    IF v_n <> 14 THEN
        RAISE EXCEPTION 'substrate post-check: dot_config has % rows, expected 14', v_n;
    END IF;
    SELECT array_agg(g) INTO v_missing FROM unnest(c_gates) AS g
     WHERE (SELECT c.value FROM public.dot_config c WHERE c.key = g) IS DISTINCT FROM 'false';
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'substrate post-check: protocol gate(s) not ''false'': %', array_to_string(v_missing, ', ');
    END IF;

    SELECT count(*) INTO v_n FROM public.dot_iu_command_catalog;
    IF v_n <> 0 THEN
        RAISE EXCEPTION 'substrate post-check: dot_iu_command_catalog has % rows, expected 0 (revision 280 seeds it)', v_n;
    END IF;

    SELECT count(*) INTO v_n FROM public.event_type_registry WHERE delivery_lane = 'immediate';
    IF v_n <> 8 OR EXISTS (SELECT 1 FROM public.event_type_registry WHERE delivery_lane <> 'immediate') THEN
        RAISE EXCEPTION 'substrate post-check: event_type_registry must hold exactly the 8 substrate types on the immediate lane';
    END IF;

    SELECT count(*) INTO v_n FROM public.iu_outbound_route WHERE dry_run;
    IF v_n <> 2 OR (SELECT count(*) FROM public.iu_outbound_route) <> 2 THEN
        RAISE EXCEPTION 'substrate post-check: iu_outbound_route must hold the 2 substrate routes, both dry_run';
    END IF;
END
$postcheck$;

-- The two corrections (docs/seeds.md): present, gated like fn_iu_emit_event, not for PUBLIC.
DO $postcheck$
DECLARE
    v_fn regprocedure := to_regprocedure('public.fn_iu_piece_emit_event(text,uuid,jsonb,text)');
BEGIN
    IF v_fn IS NULL THEN
        RAISE EXCEPTION 'substrate post-check: function public.fn_iu_piece_emit_event(text,uuid,jsonb,text) not resolvable';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p,
                      aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE p.oid = v_fn AND a.grantee = 0 AND a.privilege_type = 'EXECUTE') THEN
        RAISE EXCEPTION 'substrate post-check: PUBLIC can still EXECUTE public.fn_iu_piece_emit_event';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.event_type_registry r
                    WHERE r.event_domain = 'iu' AND r.event_type = 'structure_child_added'
                      AND r.event_stream = 'structure' AND r.delivery_lane = 'immediate' AND r.active) THEN
        RAISE EXCEPTION 'substrate post-check: event type iu/structure_child_added missing (structure stream, immediate lane, active)';
    END IF;
END
$postcheck$;

SELECT 'substrate_objects' AS "check",
       (SELECT count(*) FROM pg_catalog.pg_class c
         WHERE c.relkind = 'r'
           AND (c.relnamespace = 'cutter_governance'::regnamespace
                OR (c.relnamespace = 'public'::regnamespace
                    AND c.relname IN ('dot_config', 'dot_iu_command_catalog', 'dot_iu_command_run',
                                      'information_unit', 'iu_collection', 'iu_collection_member',
                                      'event_type_registry', 'event_outbox', 'iu_outbound_route',
                                      'iu_route_attempt', 'iu_route_dead_letter')))) AS tables,
       (SELECT count(*) FROM pg_catalog.pg_class c
         WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace
           AND c.relname IN ('v_dot_iu_command_registry', 'v_dot_iu_command_run_health',
                             'v_iu_collection_health', 'v_iu_collection_manifest',
                             'v_iu_composer_event_backlog', 'v_iu_route_attempt_summary',
                             'v_iu_route_dead_letter_open')) AS views,
       (SELECT count(*) FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('fn_dot_config_touch', 'fn_dot_iu_command_log', 'fn_event_outbox_type_validate',
                             'fn_iu_core_routes_enabled', 'fn_iu_delivery_enabled', 'fn_iu_gate_is_open',
                             'fn_iu_emit_event', 'fn_iu_structure_consumer', 'fn_iu_route_deliver',
                             'fn_iu_route_worker_run', 'fn_iu_create', 'fn_iu_compose',
                             'fn_iu_collection_add_piece', 'fn_iu_collection_remove_piece',
                             'fn_iu_collection_reorder_piece', 'fn_iu_collection_validate',
                             'fn_iu_collection_render', 'fn_iu_workflow_from_steps', 'fn_iu_retire',
                             'fn_iu_refresh_metadata_axes', 'fn_iu_healthcheck', 'fn_iu_piece_split',
                             'fn_iu_piece_merge', 'fn_iu_observe', 'fn_iu_piece_emit_event')) AS functions,
       (SELECT count(*) FROM pg_catalog.pg_trigger t
         WHERE NOT t.tgisinternal
           AND t.tgname IN ('trg_dot_config_touch', 'trg_event_outbox_type_validate')) AS triggers;

SELECT 'substrate_config' AS "check",
       (SELECT count(*) FROM public.dot_config) AS config_rows,
       (SELECT count(*) FROM public.dot_config
         WHERE value = 'false'
           AND key IN ('iu_core.composer_enabled', 'iu_core.structure_ops_enabled',
                       'iu_core.delivery_enabled', 'iu_core.three_axis_auto_refresh_enabled',
                       'iu_core.operator_runtime_enabled', 'queue.job_substrate.enabled',
                       'queue.dlq.replay_enabled', 'iu_enact.allow_no_review_decision',
                       'iu_core.vector_sync_enabled')) AS protocol_gates_closed,
       (SELECT count(*) FROM public.event_type_registry) AS event_types,
       (SELECT count(*) FROM public.iu_outbound_route) AS routes,
       (SELECT count(*) FROM public.dot_iu_command_catalog) AS catalog_rows;
