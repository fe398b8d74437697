-- a3 rollback.
-- @guard
DO $$ BEGIN
  IF to_regclass('public.sample_v') IS NULL THEN RAISE EXCEPTION 'a3 rollback refused: sample_v missing'; END IF;
END $$;
-- @body
DROP VIEW public.sample_v;
-- @assert
DO $$ BEGIN
  IF to_regclass('public.sample_v') IS NOT NULL THEN RAISE EXCEPTION 'a3 rollback assert: view still there'; END IF;
END $$;
