--
-- Registering deployments: discovery, the catalog views and error paths.
--
\set SHOW_CONTEXT never
\getenv service DURABLE_TEST_SERVICE
\getenv service_h1 DURABLE_TEST_SERVICE_H1

SELECT durable.register_deployment(:'service') LIKE 'dp_%' AS registered;

SELECT protocol_mode, http_version, min_protocol_version, max_protocol_version,
       protocol_version, sdk_version LIKE 'restate-sdk-typescript/%' AS ts_sdk,
       services
  FROM durable.deployments;

SELECT name, ty, revision FROM durable.services ORDER BY name;
SELECT service_name, name, ty, service_ty FROM durable.handlers
 ORDER BY service_name, name;

-- registering the same endpoint again with the same services is a no-op
SELECT durable.register_deployment(:'service') = (SELECT id FROM durable.deployments) AS same_id;
SELECT count(*) FROM durable.deployments;

-- the endpoint now offers one more service: refused without force ...
SELECT count(*) FROM test_http_post(:'service' || '/control/variant', '{"variant": 2}');
SELECT test_error(format('SELECT durable.register_deployment(%L)', :'service'));
-- ... and accepted with force
SELECT durable.register_deployment(:'service', force => true) = (SELECT id FROM durable.deployments) AS same_id;
SELECT name, revision FROM durable.services ORDER BY name;
SELECT durable.call('Extra', 'ping');
-- back to the original service set: Extra disappears
SELECT count(*) FROM test_http_post(:'service' || '/control/variant', '{"variant": 1}');
SELECT durable.register_deployment(:'service', force => true) IS NOT NULL AS registered;
SELECT name FROM durable.services ORDER BY name;

-- an HTTP/1.1-only endpoint: durable falls back from h2c to HTTP/1.1
SELECT durable.register_deployment(:'service_h1') IS NOT NULL AS registered;
SELECT protocol_mode, http_version FROM durable.deployments
 WHERE uri = :'service_h1';
-- all services are now served by the most recently registered deployment
SELECT count(DISTINCT deployment_id) FROM durable.services;
SELECT durable.call('Greeter', 'greet', '"HTTP/1.1"');
-- back to the h2c deployment
SELECT durable.register_deployment(:'service', force => true) IS NOT NULL AS registered;

-- error paths
\set VERBOSITY default
SELECT durable.register_deployment('ftp://127.0.0.1:1');
SELECT durable.register_deployment('file:///etc/passwd');
SELECT durable.register_deployment('gopher://127.0.0.1:1/');
SELECT durable.register_deployment('dict://127.0.0.1:1/');
-- no redirect is followed (the test service answers one, to 127.0.0.1:1)
SELECT durable.register_deployment(:'service' || '/redirect/302/http%3A%2F%2F127.0.0.1%3A1%2Fdiscover');
SELECT durable.register_deployment(NULL);
SELECT durable.register_deployment('http://127.0.0.1:1');
SELECT durable.register_deployment(:'service' || '/missing');
SELECT durable.register_deployment(:'service' || '/broken');
SELECT durable.register_deployment(:'service' || '/notamanifest');
SELECT durable.register_deployment(:'service', headers => '[1, 2]');
SELECT durable.register_deployment(:'service', headers => '{"x-bad": 1}');
SELECT durable.register_deployment(:'service', headers => '{"x-bad": "a\nb"}');
SELECT durable.register_deployment(:'service', http_version => '3');
\set VERBOSITY terse
-- nothing was registered by the failed calls
SELECT count(*) FROM durable.deployments;
