-- a1: a table.
-- @preflight
DO $$ BEGIN
  IF to_regclass('public.sample_t') IS NOT NULL THEN
    RAISE EXCEPTION 'a1 preflight: public.sample_t already exists (already applied?)';
  END IF;
END $$;
-- @body
CREATE TABLE public.sample_t (id int PRIMARY KEY, note text);
COMMENT ON TABLE public.sample_t IS 'example';
-- @postcheck
DO $$ BEGIN
  IF to_regclass('public.sample_t') IS NULL THEN RAISE EXCEPTION 'a1 post-check: table missing'; END IF;
  RAISE NOTICE 'a1 post-check ok';
END $$;
SELECT 'a1_table' AS check, to_regclass('public.sample_t') IS NOT NULL AS present;
