-- Shared by the self-tests that run the route worker (\ir lib/queue_first.sql,
-- after BEGIN). The worker takes what is pending on a route oldest first, up to
-- its limit, and production may hold any backlog. Moving the events this
-- transaction wrote under p_actor to the head of the queue (into 1970, their
-- order kept; undone by the ROLLBACK like everything else here) lets a run
-- limited to exactly their number take them and nothing else: the answers do
-- not depend on the database's backlog, and no production event is locked or
-- attempted. From revision worker_pick on, such a run also stops there; the
-- substrate's worker read the outbox on past them (migrations/sql/functions/
-- worker_pick/fn_iu_route_worker_run.sql says why). Returns how many of this
-- transaction's events stand at the head.
CREATE FUNCTION pg_temp.selftest_queue_first(p_actor text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    queued bigint;
BEGIN
    -- Fail closed: an event of production's dated before 1971 would be taken first.
    IF EXISTS (SELECT 1 FROM public.event_outbox AS e
                WHERE e.created_at < timestamptz '1971-01-01 00:00:00+00' AND age(e.xmin) > 0) THEN
        RAISE EXCEPTION 'selftest_queue_first: the outbox holds events dated before 1971, so this self-test cannot put its own first';
    END IF;
    -- This transaction's rows: age(xmin) is 0 for its own writes, negative for its
    -- subtransactions', positive for every row another transaction committed that
    -- this snapshot (REPEATABLE READ) sees. created_at >= now() (an event is stamped
    -- with clock_timestamp()) lets the index find them.
    UPDATE public.event_outbox AS e SET created_at = timestamptz '1970-01-01 00:00:00+00' + (e.created_at - now())
     WHERE e.actor = p_actor AND e.created_at >= now() AND age(e.xmin) <= 0
       AND NOT (e.event_domain = 'system' AND e.event_type = 'route_worker_run');
    SELECT count(*) INTO queued FROM public.event_outbox AS e
     WHERE e.actor = p_actor AND e.created_at < timestamptz '1971-01-01 00:00:00+00' AND age(e.xmin) <= 0;
    RETURN queued;
END
$fn$;
