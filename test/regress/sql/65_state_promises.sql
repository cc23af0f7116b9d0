--
-- Keyed state and workflow promises from SQL: what they accept and refuse.
-- (Delivery to running handlers is covered by the TAP tests.)
--
\set SHOW_CONTEXT never

-- set_state / clear_state on a virtual object's key, in the caller's transaction
BEGIN;
SELECT durable.set_state('Counter', 'sql-state', 'count', '41'::jsonb);
SELECT durable.set_state('Counter', 'sql-state', 'raw', '\x00ff'::bytea);
SELECT key, value_utf8, value FROM durable.state
 WHERE service_name = 'Counter' AND service_key = 'sql-state' ORDER BY key;
ROLLBACK;
SELECT count(*) AS after_rollback FROM durable.state WHERE service_key = 'sql-state';

SELECT durable.set_state('Counter', 'sql-state', 'count', '41'::jsonb);
SELECT durable.call('Counter', 'add', '1'::jsonb, key => 'sql-state');
SELECT durable.clear_state('Counter', 'sql-state', 'nothing-here') AS cleared_none;
SELECT durable.set_state('Counter', 'sql-state', 'other', '"x"'::jsonb);
SELECT durable.clear_state('Counter', 'sql-state', 'other') AS cleared_one;
SELECT durable.clear_state('Counter', 'sql-state') AS cleared_all;
SELECT durable.call('Counter', 'get', key => 'sql-state') AS after_clear;

-- refused
SELECT test_error($$SELECT durable.set_state('Greeter', 'k', 'n', '1'::jsonb)$$);
SELECT test_error($$SELECT durable.set_state('Nope', 'k', 'n', '1'::jsonb)$$);
SELECT test_error($$SELECT durable.set_state('Counter', NULL, 'n', '1'::jsonb)$$);
SELECT test_error($$SELECT durable.set_state('Counter', 'k', NULL, '1'::jsonb)$$);
SELECT test_error($$SELECT durable.clear_state('Greeter', 'k')$$);

-- promises belong to workflows only
SELECT test_error($$SELECT durable.resolve_promise('Counter', 'k', 'p', '1'::jsonb)$$);
SELECT test_error($$SELECT durable.resolve_promise('Nope', 'k', 'p', '1'::jsonb)$$);
SELECT test_error($$SELECT durable.resolve_promise('Counter', 'k', '', '1'::jsonb)$$);
SELECT test_error($$SELECT durable.reject_promise(NULL, 'k', 'p', 'no')$$);
SELECT count(*) AS queued FROM durable.notification_queue WHERE action = 'promise';
SELECT durable.workflow_invocation('Counter', 'sql-state') AS no_workflow;

-- headers must be an object of strings
SELECT test_error($$SELECT durable.send('Greeter', 'greet', '"h"'::jsonb, headers => '[1]')$$);
SELECT test_error($$SELECT durable.send('Greeter', 'greet', '"h"'::jsonb, headers => '{"a": 1}')$$);
SELECT test_error($$SELECT durable.send('Greeter', 'greet', '"h"'::jsonb, headers => '{"": "x"}')$$);
SELECT durable.call('Greeter', 'greet', '"headers"'::jsonb, headers => '{"x-test": "yes"}') AS with_headers;
SELECT durable.decode_entry(j.entry_type, j.raw) -> 'headers' AS input_headers
  FROM durable.journal_entry j JOIN durable.invocation i ON i.id = j.invocation_id
 WHERE j.index = 0 AND i.handler_name = 'greet'
   AND durable.bytes_to_jsonb(i.output) = '"Hello headers!"';
