-- a2: a column and a function. Sleeps iucore_test.sleep seconds (0 unless a test sets it)
-- so concurrency tests can make two runs overlap.
-- @preflight
DO $$ BEGIN
  IF to_regclass('public.sample_t') IS NULL THEN RAISE EXCEPTION 'a2 preflight: apply a1 first'; END IF;
  IF to_regprocedure('public.sample_fn(integer)') IS NOT NULL THEN
    RAISE EXCEPTION 'a2 preflight: public.sample_fn(integer) already exists (already applied?)';
  END IF;
END $$;
-- @body
SELECT pg_sleep(coalesce(nullif(current_setting('iucore_test.sleep', true), ''), '0')::float8);
ALTER TABLE public.sample_t ADD COLUMN added_by_a2 text;
CREATE FUNCTION public.sample_fn(p integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT p * 2 $$;
-- @postcheck
DO $$ BEGIN
  IF public.sample_fn(21) <> 42 THEN RAISE EXCEPTION 'a2 post-check: sample_fn wrong'; END IF;
END $$;
