-- a3: a view.
-- @preflight
DO $$ BEGIN
  IF to_regclass('public.sample_v') IS NOT NULL THEN RAISE EXCEPTION 'a3 preflight: sample_v exists (already applied?)'; END IF;
END $$;
-- @body
CREATE VIEW public.sample_v AS SELECT id, public.sample_fn(id) AS doubled FROM public.sample_t;
-- @postcheck
SELECT 'a3_view' AS check, count(*) AS rows FROM public.sample_v;
