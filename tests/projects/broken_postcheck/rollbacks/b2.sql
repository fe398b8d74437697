-- b2 rollback.
-- @guard
DO $$ BEGIN
  IF to_regclass('public.b2_table') IS NULL THEN RAISE EXCEPTION 'b2 rollback refused: not at b2'; END IF;
END $$;
-- @body
DROP TABLE public.b2_table;
DELETE FROM public.broken_t;
-- @assert
DO $$ BEGIN
  IF to_regclass('public.b2_table') IS NOT NULL THEN RAISE EXCEPTION 'b2 rollback assert'; END IF;
END $$;
