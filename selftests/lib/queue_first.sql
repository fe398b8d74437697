-- Shared by the self-tests that run the route worker (\ir lib/queue_first.sql,
-- after BEGIN). The worker takes what is pending on a route oldest first, up to
-- its limit, and production may hold any backlog. Moving the events this
-- transaction wrote under p_actor to the head of the queue (into 1970, their
-- order kept; undone by the ROLLBACK like everything else here) lets a run
-- limited to exactly their number take them and nothing else: the answers and
-- the cost do not depend on the database's backlog, and no production event is
-- locked or attempted. Returns how many of this transaction's events stand at the head.
CREATE FUNCTION pg_temp.selftest_queue_first(p_actor text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    queued bigint;
BEGIN
    -- an event is stamped with clock_timestamp(): this transaction's rows are the
    -- ones written since now(), the transaction's start
    UPDATE public.event_outbox AS e SET created_at = timestamptz '1970-01-01 00:00:00+00' + (e.created_at - now())
     WHERE e.actor = p_actor AND e.created_at >= now()
       AND NOT (e.event_domain = 'system' AND e.event_type = 'route_worker_run');
    SELECT count(*) INTO queued FROM public.event_outbox AS e
     WHERE e.actor = p_actor AND e.created_at < timestamptz '1971-01-01 00:00:00+00';
    RETURN queued;
END
$fn$;
