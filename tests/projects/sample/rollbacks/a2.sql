-- a2 rollback.
-- @guard
DO $$ BEGIN
  IF to_regprocedure('public.sample_fn(integer)') IS NULL THEN
    RAISE EXCEPTION 'a2 rollback refused: sample_fn missing: the database is not at a2';
  END IF;
END $$;
-- @body
DROP FUNCTION public.sample_fn(integer);
ALTER TABLE public.sample_t DROP COLUMN added_by_a2;
-- @assert
DO $$ BEGIN
  IF to_regprocedure('public.sample_fn(integer)') IS NOT NULL THEN RAISE EXCEPTION 'a2 rollback assert: fn still there'; END IF;
END $$;
