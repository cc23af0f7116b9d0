--
-- Only the extension's owner may use durable until it grants more.
--
\set SHOW_CONTEXT never
\getenv service DURABLE_TEST_SERVICE
CREATE ROLE durable_app LOGIN;
SET ROLE durable_app;
SELECT test_error($$SELECT durable.send('Greeter', 'greet', '"x"'::jsonb)$$);
SELECT test_error($$SELECT count(*) FROM durable.invocations$$);
SELECT test_error($$SELECT durable.register_deployment('http://127.0.0.1:1')$$);
RESET ROLE;

-- what an application role typically gets
GRANT USAGE ON SCHEMA durable TO durable_app;
GRANT EXECUTE ON FUNCTION
    durable.send(text, text, jsonb, text, text, interval, jsonb),
    durable.call(text, text, jsonb, text, text, interval, jsonb),
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

-- call is send + await with the caller's rights: call and await without
-- send is refused, and creates nothing
CREATE ROLE durable_caller LOGIN;
GRANT USAGE ON SCHEMA durable TO durable_caller;
GRANT EXECUTE ON FUNCTION
    durable.call(text, text, jsonb, text, text, interval, jsonb),
    durable.await(text, interval)
  TO durable_caller;
SELECT count(*) AS invocations_before FROM durable.invocation \gset
SET ROLE durable_caller;
SELECT test_error($$SELECT durable.call('Greeter', 'greet', '"no send"')$$);
RESET ROLE;
SELECT count(*) = :invocations_before AS nothing_created FROM durable.invocation;

-- internal functions are for the owner only
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'durable'::regnamespace AND p.proname LIKE '\_%'
   AND has_function_privilege('public', p.oid, 'EXECUTE');
SET ROLE durable_app;
SELECT count(*) AS internal_functions,
       count(*) FILTER (WHERE test_error(format('SELECT durable.%I(%s)', p.proname,
           (SELECT coalesce(string_agg('NULL::' || format_type(t, NULL), ', '), '')
              FROM unnest(p.proargtypes::oid[]) t))) NOT LIKE '42501:%') AS executable
  FROM pg_proc p
 WHERE p.pronamespace = 'durable'::regnamespace AND p.proname LIKE '\_%'
   \gset
SELECT :internal_functions > 5 AS some_internal_functions, :executable AS executable;
RESET ROLE;

-- deployment headers may be credentials: the view shows their names only
SELECT durable.register_deployment(:'service' || '/v1',
           headers => '{"authorization": "Bearer regress-secret", "x-tenant": "t"}')
       LIKE 'dp_%' AS registered;
SELECT durable.register_deployment(:'service', force => true) LIKE 'dp_%' AS registered;
GRANT SELECT ON durable.deployments TO durable_app;
SET ROLE durable_app;
SELECT uri, header_names FROM durable.deployments ORDER BY uri;
SELECT count(*) AS rows_showing_the_secret FROM durable.deployments d
 WHERE d::text LIKE '%regress-secret%';
SELECT test_error($$SELECT headers FROM durable.deployment$$);
RESET ROLE;
