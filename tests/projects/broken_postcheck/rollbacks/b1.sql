-- b1 rollback.
-- @guard
DO $$ BEGIN
  IF to_regclass('public.broken_t') IS NULL THEN RAISE EXCEPTION 'b1 rollback refused: not at b1'; END IF;
END $$;
-- @body
DROP TABLE public.broken_t;
-- @assert
DO $$ BEGIN
  IF to_regclass('public.broken_t') IS NOT NULL THEN RAISE EXCEPTION 'b1 rollback assert: still there'; END IF;
END $$;
