-- b2: DELIBERATELY BROKEN. The body works; the post-check finds the wrong count
-- and raises, so nothing of b2 may persist.
-- @preflight
DO $$ BEGIN
  IF to_regclass('public.broken_t') IS NULL THEN RAISE EXCEPTION 'b2 preflight: apply b1 first'; END IF;
END $$;
-- @body
CREATE TABLE public.b2_table (id int);
INSERT INTO public.broken_t VALUES (1), (2);
-- @postcheck
DO $$ DECLARE n int; BEGIN
  SELECT count(*) INTO n FROM public.broken_t;
  RAISE NOTICE 'b2 post-check sees % rows', n;
  IF n <> 3 THEN RAISE EXCEPTION 'b2 post-check: expected 3 rows in broken_t, found %', n; END IF;
END $$;
