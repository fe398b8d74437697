-- =============================================================================
-- 017 — fail-closed rollback: drop the soft-delete / restore pair.
--
-- The guard refuses (and nothing changes) while any piece is soft-deleted:
-- without fn_iu_piece_restore it could no longer be brought back through a
-- governed path — the data would be stranded. Restore those pieces (or retire
-- them deliberately) first. The guard holds a SHARE lock on information_unit,
-- so no piece can be soft-deleted between the check and the drop.
--
-- Sections (docs/sql-conventions.md): @guard, @body, @assert.
-- No transaction control here: iucore runs the file as ONE transaction. To run
-- it by hand, as a DBA:
--   psql -X -1 -v ON_ERROR_STOP=1 -f rollbacks/017.sql "<database url>"
-- =============================================================================

-- @guard

DO $guard$
DECLARE
    v_missing text[];
BEGIN
    SELECT array_agg(f) INTO v_missing
      FROM unnest(ARRAY['public.fn_iu_piece_soft_delete(uuid,text,text)',
                        'public.fn_iu_piece_restore(uuid,text)']) AS f
     WHERE to_regprocedure(f) IS NULL;
    IF to_regclass('public.information_unit') IS NULL THEN
        v_missing := coalesce(v_missing, '{}') || 'public.information_unit'::text;
    END IF;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION '017 rollback refused: % missing — the database is not at revision 017; inspect it ("iucore db current") before rolling back',
            array_to_string(v_missing, ', ');
    END IF;
END
$guard$;

LOCK TABLE public.information_unit IN SHARE MODE;

DO $guard$
DECLARE
    v_n        bigint;
    v_examples text;
BEGIN
    SELECT count(*), string_agg(s.canonical_address, ', ')
      INTO v_n, v_examples
      FROM (SELECT iu.canonical_address
              FROM public.information_unit iu
             WHERE iu.lifecycle_status = 'soft_deleted'
             ORDER BY iu.canonical_address) AS s;
    IF v_n > 0 THEN
        RAISE EXCEPTION '017 rollback refused: % piece(s) soft-deleted (%) — without fn_iu_piece_restore they could not be restored through a governed path; restore them first (iucore dot apply dot_iu_restore_piece iu_id=…)',
            v_n, left(v_examples, 300);
    END IF;
END
$guard$;

-- @body

DROP FUNCTION public.fn_iu_piece_restore(uuid, text);
DROP FUNCTION public.fn_iu_piece_soft_delete(uuid, text, text);

-- @assert

DO $assert$
DECLARE
    v_left text[];
BEGIN
    SELECT array_agg(DISTINCT 'function public.' || p.proname) INTO v_left
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proname IN ('fn_iu_piece_soft_delete', 'fn_iu_piece_restore');
    IF v_left IS NOT NULL THEN
        RAISE EXCEPTION '017 rollback assert: still present after rollback: %', array_to_string(v_left, ', ');
    END IF;
    -- The state 017 was applied on: 260's piece pair registered, no piece soft-deleted.
    IF (SELECT count(*) FROM public.event_type_registry r
         WHERE r.event_domain = 'iu' AND r.event_type IN ('piece_soft_deleted', 'piece_restored')) <> 2 THEN
        RAISE EXCEPTION '017 rollback assert: 260''s piece_soft_deleted / piece_restored types are not both registered';
    END IF;
    IF EXISTS (SELECT 1 FROM public.information_unit iu WHERE iu.lifecycle_status = 'soft_deleted') THEN
        RAISE EXCEPTION '017 rollback assert: a soft-deleted piece exists after rollback';
    END IF;
END
$assert$;
