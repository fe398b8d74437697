-- a1 rollback: refuses while the table holds rows (data would be lost).
-- @guard
DO $$ DECLARE n bigint; BEGIN
  SELECT count(*) INTO n FROM public.sample_t;
  IF n > 0 THEN
    RAISE EXCEPTION 'a1 rollback refused: public.sample_t holds % row(s); export or delete them first', n;
  END IF;
END $$;
-- @body
DROP TABLE public.sample_t;
-- @assert
DO $$ BEGIN
  IF to_regclass('public.sample_t') IS NOT NULL THEN RAISE EXCEPTION 'a1 rollback assert: table still there'; END IF;
END $$;
