--
-- durable.await and durable.output: timeouts of any size, and outputs that
-- are not valid UTF-8.
--
\set SHOW_CONTEXT never
SELECT durable.send('Greeter', 'greet', '"timeouts"'::jsonb) AS id \gset
SELECT durable.await(:'id');

-- huge timeouts wait "forever" (here: not at all, the result is there);
-- they never overflow into "negative"
SELECT durable.await(:'id', '1000000 years');
SELECT durable.await(:'id', '178000000 years');
SELECT durable.await(:'id', '2147483647 days 2562047788 hours');
SELECT durable.await(:'id', '1000000 years -1 day');
-- a zero timeout still looks once
SELECT durable.await(:'id', '0');
-- negative ones, small or huge, are refused
SELECT test_error(format('SELECT durable.await(%L, %L)', :'id', '-1 s'));
SELECT test_error(format('SELECT durable.await(%L, %L)', :'id', '-178000000 years'));
SELECT test_error(format('SELECT durable.await(%L, %L)', :'id', '-2147483648 days -2562047788 hours'));
SELECT test_error(format('SELECT durable.await(%L, %L)', :'id', '1 day -1000000 years'));

-- a huge timeout on an invocation that is still running: it is not
-- mistaken for an expired one
SELECT durable.send('Steps', 'run', '{"steps": 2, "delayMs": 300}'::jsonb) AS slow \gset
SELECT durable.await(:'slow', '1000000 years')->>'steps' AS steps;

-- A stored output that is not valid UTF-8 (written here by hand: the SDK
-- does not send one).  await and output refuse to turn it into jsonb, the
-- view shows NULL, and the raw bytes stay readable.
SELECT durable.send('Probe', 'echo', '"valid"'::jsonb) AS bad \gset
SELECT durable.await(:'bad');
UPDATE durable.invocation SET output = '\x22ff22' WHERE id = :'bad';
SELECT test_error(format('SELECT durable.output(%L)', :'bad'));
SELECT test_error(format('SELECT durable.await(%L)', :'bad'));
SELECT output IS NULL AS output_null, output_raw FROM durable.invocations WHERE id = :'bad';
SELECT test_error($$SELECT convert_from('\x22ff22', 'UTF8')$$);
-- an overlong encoding and a zero byte are not valid UTF-8 either
UPDATE durable.invocation SET output = '\x22c0af22' WHERE id = :'bad';
SELECT split_part(test_error(format('SELECT durable.output(%L)', :'bad')), E'\n', 1);
SELECT output IS NULL AS output_null FROM durable.invocations WHERE id = :'bad';
UPDATE durable.invocation SET output = '\x220022' WHERE id = :'bad';
SELECT split_part(test_error(format('SELECT durable.output(%L)', :'bad')), E'\n', 1);
SELECT output IS NULL AS output_null FROM durable.invocations WHERE id = :'bad';
-- valid non-ASCII UTF-8 is fine
UPDATE durable.invocation SET output = convert_to('"grüße ☃"', 'UTF8') WHERE id = :'bad';
SELECT durable.output(:'bad'), durable.await(:'bad');
SELECT output FROM durable.invocations WHERE id = :'bad';
-- and so is an output that is not JSON, only the error differs
UPDATE durable.invocation SET output = convert_to('not json', 'UTF8') WHERE id = :'bad';
SELECT split_part(test_error(format('SELECT durable.output(%L)', :'bad')), E'\n', 1);
SELECT output IS NULL AS output_null FROM durable.invocations WHERE id = :'bad';
