--
-- The journal: every step is recorded and readable with plain SQL.
--
\set SHOW_CONTEXT never
SELECT durable.send('Steps', 'run', '{"steps": 10}'::jsonb) AS id \gset
SELECT durable.await(:'id');

SELECT index, entry_type, entry_kind, name, completed, completion_id
  FROM durable.journal WHERE id = :'id' ORDER BY index;

-- decoded entries
SELECT entry FROM durable.journal WHERE id = :'id' AND index IN (0, 1, 2, 21)
 ORDER BY index;

-- 10 Run commands, each completed exactly once
SELECT count(*) FILTER (WHERE entry_type = 'Run') AS runs,
       count(*) FILTER (WHERE entry_type = 'RunCompletion') AS completions,
       count(DISTINCT completion_id) FILTER (WHERE entry_type = 'RunCompletion') AS distinct_completions,
       bool_and(completed) AS all_completed
  FROM durable.journal WHERE id = :'id';
SELECT journal_size FROM durable.invocations WHERE id = :'id';

-- each step ran once in the service
SELECT test_effects('%"svc":"Steps"%"inv":"' || :'id' || '"%') AS step_executions;

-- raw protobuf is kept verbatim and decodes to the same entry
SELECT durable.decode_entry(1041, raw) = entry AS same
  FROM durable.journal WHERE id = :'id' AND index = 1;
SELECT durable.entry_type_name(t) FROM unnest(ARRAY[0, 1, 2, 3, 5, 1024, 1025, 1041, 32785, 64511, 64512]) t;
SELECT durable.entry_type('Run') AS run, durable.entry_type('SleepCompletion') AS sleep_completion,
       durable.entry_kind(durable.entry_type('Input')) AS input,
       durable.entry_kind(durable.entry_type('RunCompletion')) AS run_completion,
       durable.entry_kind(durable.entry_type('End')) AS "end";
SELECT durable.entry_type('NoSuchEntry');
SELECT durable.decode_entry(1041, '\xdeadbeef');

-- journal rows join with the invocations view
SELECT i.target, count(*) AS entries
  FROM durable.invocations i JOIN durable.journal j USING (id)
 WHERE i.id = :'id' GROUP BY i.target;
