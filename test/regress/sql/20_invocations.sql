--
-- Invoking handlers: send, call, await, output and their error paths.
--
\set SHOW_CONTEXT never
\getenv service DURABLE_TEST_SERVICE

-- call: synchronous, returns the handler's JSON output
SELECT durable.call('Greeter', 'greet', '"world"');
SELECT durable.call('Steps', 'run', '{"steps": 3}');

-- send + await
SELECT durable.send('Greeter', 'greet', '"async"'::jsonb) AS id \gset
SELECT durable.await(:'id');
SELECT durable.output(:'id');
SELECT target, target_service_name, target_handler_name, target_service_ty,
       status, completion_result, output, retry_count, invoked_by,
       journal_size, pinned_deployment_id IS NOT NULL AS pinned,
       completed_at >= created_at AS ordered
  FROM durable.invocations WHERE id = :'id';
SELECT :'id' ~ '^inv_1[0-9a-zA-Z]{33}$' AS restate_id_format;

-- raw bytes in, raw bytes out (the bytea overload)
SELECT durable.send('Probe', 'echo', convert_to('"raw"', 'UTF8')) AS raw_id \gset
SELECT durable.await(:'raw_id');
SELECT convert_from(output_raw, 'UTF8') FROM durable.invocations WHERE id = :'raw_id';

-- no input at all
SELECT durable.call('Counter', 'get', key => 'nobody');

-- virtual objects: state is kept per key
SELECT durable.call('Counter', 'add', '5', key => 'a');
SELECT durable.call('Counter', 'add', '7', key => 'a');
SELECT durable.call('Counter', 'add', '1', key => 'b');
SELECT durable.call('Counter', 'get', key => 'a');
SELECT service_name, service_key, key, value_utf8 FROM durable.state ORDER BY 1, 2, 3;
SELECT target FROM durable.invocations
 WHERE target_service_name = 'Counter' ORDER BY created_at, target;

-- idempotency keys: the same key gives the same invocation
SELECT durable.send('Greeter', 'greet', '"once"'::jsonb, idempotency_key => 'k-1') AS idem1 \gset
SELECT durable.send('Greeter', 'greet', '"twice"'::jsonb, idempotency_key => 'k-1') AS idem2 \gset
SELECT :'idem1' = :'idem2' AS same_invocation;
SELECT durable.await(:'idem1');

-- delayed send
SELECT durable.send('Greeter', 'greet', '"later"'::jsonb, delay => '300 ms') AS later \gset
SELECT status, scheduled_start_at > created_at AS in_future
  FROM durable.invocations WHERE id = :'later';
SELECT durable.await(:'later');

-- ctx.run with the SDK's retry policy: the SDK counts attempts from
-- StartMessage.retry_count_since_last_stored_entry and gives up after 3
SELECT durable.call('Probe', 'runRetry', '3');
SELECT retry_count, last_failure_error_code FROM durable.invocations
 WHERE target = 'Probe/runRetry';
SELECT test_effects('%"h":"runRetry"%') AS step_executions;

-- a terminal failure
SELECT test_error($$SELECT durable.call('Probe', 'terminal', '"it broke"')$$);
SELECT status, completion_result, completion_failure, completion_failure_code
  FROM durable.invocations WHERE target = 'Probe/terminal';

-- error paths
\set VERBOSITY default
SELECT durable.send('Nope', 'greet');
SELECT durable.send('Greeter', 'nope');
SELECT durable.send('Counter', 'add', '1'::jsonb);
SELECT durable.send('Greeter', 'greet', '"x"'::jsonb, key => 'k');
SELECT durable.send('Greeter', 'greet', '"x"'::jsonb, idempotency_key => '');
SELECT durable.send('Greeter', 'greet', '"x"'::jsonb, delay => '-1 s');
SELECT durable.send(NULL, 'greet');
SELECT durable.call('Nope', 'greet', '"x"');
SELECT durable.await('not-an-id');
SELECT durable.await('inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');
SELECT durable.await('inv_1' || repeat('0', 33));
SELECT durable.output('inv_1' || repeat('0', 33));
SELECT durable.await(NULL);
SELECT durable.await(:'id', timeout => NULL);
-- waiting for an invocation created by the same, uncommitted transaction
BEGIN;
SELECT durable.send('Greeter', 'greet', '"uncommitted"'::jsonb) AS uncommitted \gset
SELECT test_error(format('SELECT durable.await(%L, ''1 s'')', :'uncommitted'));
SELECT test_error(format('SELECT durable.output(%L)', :'uncommitted'));
-- in one statement, too
SELECT test_error($$SELECT durable.await(durable.send('Greeter', 'greet', '"same statement"'::jsonb))$$);
ROLLBACK;
-- durable.call cannot wait for an idempotency key this transaction holds
BEGIN;
SELECT durable.send('Greeter', 'greet', '"mine"'::jsonb, idempotency_key => 'held') IS NOT NULL AS sent;
SELECT test_error($$SELECT durable.call('Greeter', 'greet', '"mine"', idempotency_key => 'held')$$);
ROLLBACK;
-- a bad timeout is refused before anything is submitted
SELECT test_error($$SELECT durable.call('Greeter', 'greet', '"negative"', timeout => '-1 s')$$);
SELECT count(*) FROM durable.journal WHERE entry->>'value' = 'negative';
-- a timeout leaves the invocation running
SELECT durable.send('Steps', 'run', '{"steps": 2, "delayMs": 1500}'::jsonb) AS slow \gset
SELECT split_part(test_error(format('SELECT durable.await(%L, ''100 ms'')', :'slow')), E'\n', 1);
\set VERBOSITY terse
SELECT durable.await(:'slow')->>'steps' AS steps;
-- nothing crashed
SELECT count(*) AS dispatchers FROM pg_stat_activity
 WHERE backend_type = 'durable dispatcher';

-- a virtual object has one writer per key: 30 concurrent adds, none lost
CREATE TEMP TABLE adds AS
SELECT g, durable.send('Counter', 'add', '1'::jsonb, key => 'race') AS id
  FROM generate_series(1, 30) g;
-- (queued ones show as pending until the lock is theirs)
SELECT bool_or(status = 'pending') AS some_pending
  FROM durable.invocations WHERE id IN (SELECT id FROM adds)
 AND status <> 'completed';
SELECT count(DISTINCT durable.await(id)) AS distinct_results FROM adds;
SELECT durable.call('Counter', 'get', key => 'race');
-- results came out in queue order
SELECT bool_and(r.out = r.g) AS fifo
  FROM (SELECT a.g, i.output::int AS out
          FROM adds a JOIN durable.invocations i USING (id)) r;
-- a delayed invocation queues for the key's lock too once it is due
BEGIN;
CREATE TEMP TABLE delayed_adds AS
SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'delayed', delay => '1 ms') AS id
UNION ALL
SELECT durable.send('Counter', 'add', '1'::jsonb, key => 'delayed');
COMMIT;
SELECT array_agg(durable.await(id)::int ORDER BY durable.await(id)::int) AS results FROM delayed_adds;
SELECT durable.call('Counter', 'get', key => 'delayed');
