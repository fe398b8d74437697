-- b1: fine.
-- @preflight
DO $$ BEGIN
  IF to_regclass('public.broken_t') IS NOT NULL THEN RAISE EXCEPTION 'b1 preflight: broken_t exists'; END IF;
END $$;
-- @body
CREATE TABLE public.broken_t (id int);
-- @postcheck
DO $$ BEGIN
  IF to_regclass('public.broken_t') IS NULL THEN RAISE EXCEPTION 'b1 post-check: broken_t missing'; END IF;
END $$;
