--
-- Only the extension's owner may use durable until it grants more.
--
\set SHOW_CONTEXT never
CREATE ROLE durable_app LOGIN;
SET ROLE durable_app;
SELECT test_error($$SELECT durable.send('Greeter', 'greet', '"x"'::jsonb)$$);
SELECT test_error($$SELECT count(*) FROM durable.invocations$$);
SELECT test_error($$SELECT durable.register_deployment('http://127.0.0.1:1')$$);
RESET ROLE;

-- what an application role typically gets
GRANT USAGE ON SCHEMA durable TO durable_app;
GRANT EXECUTE ON FUNCTION
    durable.send(text, text, jsonb, text, text, interval),
    durable.call(text, text, jsonb, text, text, interval),
    durable.await(text, interval),
    durable.output(text)
  TO durable_app;
GRANT SELECT ON durable.invocations, durable.journal TO durable_app;

SET ROLE durable_app;
SELECT durable.call('Greeter', 'greet', '"app"');
SELECT durable.send('Greeter', 'greet', '"app2"'::jsonb) AS id \gset
SELECT durable.await(:'id');
SELECT count(*) > 0 AS sees_invocations FROM durable.invocations;
-- still no direct access to the tables, nor to registration
SELECT test_error($$SELECT count(*) FROM durable.invocation$$);
SELECT test_error($$DELETE FROM durable.journal_entry$$);
SELECT test_error($$SELECT durable.register_deployment('http://127.0.0.1:1')$$);
RESET ROLE;
