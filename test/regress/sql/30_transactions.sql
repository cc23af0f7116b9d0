--
-- Invocations are part of the caller's transaction.
--
-- A send that is rolled back never existed and never runs.
\set SHOW_CONTEXT never
BEGIN;
SELECT durable.send('Greeter', 'count', '"rolled-back"'::jsonb) IS NOT NULL AS sent;
ROLLBACK;
SELECT count(*) FROM durable.invocations
 WHERE id IN (SELECT j.id FROM durable.journal j WHERE j.entry->>'value' = 'rolled-back');

-- The same in a savepoint that is rolled back.
BEGIN;
CREATE TEMP TABLE orders (id int, invocation text);
SAVEPOINT s;
INSERT INTO orders VALUES (1, durable.send('Greeter', 'count', '"savepoint"'::jsonb));
ROLLBACK TO SAVEPOINT s;
INSERT INTO orders VALUES (2, durable.send('Greeter', 'count', '"committed"'::jsonb));
-- not visible to the dispatchers, so not running, before commit
SELECT status FROM durable.invocations WHERE id = (SELECT invocation FROM orders);
COMMIT;
SELECT durable.await(invocation) FROM orders;

-- the committed one ran exactly once; the rolled back ones never ran
SELECT test_effects('%"tag":"committed"%') AS committed_runs,
       test_effects('%"tag":"rolled-back"%') AS rolled_back_runs,
       test_effects('%"tag":"savepoint"%') AS savepoint_runs;
