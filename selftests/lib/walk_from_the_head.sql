-- Shared by the self-tests that run the route worker on events they put at the head
-- of the queue (lib/queue_first.sql). For the rest of this transaction the pick walks
-- the outbox's created_at index from its head, where those events stand, instead of
-- reading the whole outbox and sorting it, which the planner prefers for a route of
-- an event type the outbox holds few of, and for a table as small as a test
-- database's. The answers are the same either way; the cost and what a run reads
-- are not.
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SET LOCAL enable_sort = off;
