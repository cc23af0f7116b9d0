--
-- Numbers in a manifest that durable could not use later (retry policies,
-- timeouts, retentions) are refused at registration, with the service,
-- handler, field and value in the detail and the accepted range in the hint.
-- The test service serves crafted manifests (POST /control/manifest).
--
\set SHOW_CONTEXT never
\getenv service DURABLE_TEST_SERVICE

-- Registers <service>/crafted after queueing a manifest with one service
-- "Crafted" (handler "h") carrying the given service and handler options.
CREATE FUNCTION test_crafted(base text, service_opts jsonb, handler_opts jsonb DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM test_http_post(base || '/control/manifest',
        jsonb_build_object('manifest', jsonb_build_object(
            'minProtocolVersion', 5, 'maxProtocolVersion', 6,
            'services', jsonb_build_array(
                jsonb_build_object('name', 'Crafted', 'ty', 'SERVICE',
                    'handlers', jsonb_build_array(jsonb_build_object('name', 'h') || handler_opts))
                || service_opts)))::text);
    RETURN test_error(format('SELECT durable.register_deployment(%L)', base || '/crafted'));
END;
$$;

-- retryPolicyMaxAttempts: an integer from 0 to 2^31 - 1
SELECT test_crafted(:'service', '{"retryPolicyMaxAttempts": 1e20}');
SELECT test_crafted(:'service', '{"retryPolicyMaxAttempts": 2.5}');
SELECT test_crafted(:'service', '{"retryPolicyMaxAttempts": -1}');
SELECT test_crafted(:'service', '{"retryPolicyMaxAttempts": 2147483648}');
SELECT test_crafted(:'service', '{"retryPolicyMaxAttempts": "70"}');
-- durations: integers of milliseconds from 0 to 2^53 - 1
SELECT test_crafted(:'service', '{"retryPolicyInitialInterval": -1}');
SELECT test_crafted(:'service', '{"retryPolicyMaxInterval": true}');
SELECT test_crafted(:'service', '{"inactivityTimeout": 1e30}');
SELECT test_crafted(:'service', '{"abortTimeout": "NaN"}');
SELECT test_crafted(:'service', '{"idempotencyRetention": "Infinity"}');
SELECT test_crafted(:'service', '{"journalRetention": 1.5}');
SELECT test_crafted(:'service', '{"workflowCompletionRetention": 9007199254740992}');
-- retryPolicyExponentiationFactor: from 1 to 100
SELECT test_crafted(:'service', '{"retryPolicyExponentiationFactor": 0.5}');
SELECT test_crafted(:'service', '{"retryPolicyExponentiationFactor": 1e308}');
SELECT test_crafted(:'service', '{"retryPolicyExponentiationFactor": "NaN"}');
-- retryPolicyOnMaxAttempts: PAUSE or KILL
SELECT test_crafted(:'service', '{"retryPolicyOnMaxAttempts": "RETRY"}');
SELECT test_crafted(:'service', '{"retryPolicyOnMaxAttempts": 1}');
-- the same checks for handler entries
SELECT test_crafted(:'service', '{}', '{"retryPolicyMaxAttempts": 2.5}');
SELECT test_crafted(:'service', '{}', '{"inactivityTimeout": 1e30}');
SELECT test_crafted(:'service', '{}', '{"abortTimeout": -5}');
-- a handler entry without a name
SELECT test_crafted(:'service', '{"handlers": [{"ty": "SHARED"}]}');
-- none of these registered anything
SELECT count(*) AS crafted FROM durable.services WHERE name = 'Crafted';
SELECT count(*) AS crafted_deployments FROM durable.deployments WHERE uri LIKE '%/crafted';

-- the limits themselves, zeros, and JSON null (= not set) are accepted
SELECT test_crafted(:'service',
    '{"retryPolicyMaxAttempts": 2147483647, "retryPolicyInitialInterval": 0,
      "retryPolicyMaxInterval": 9007199254740991, "retryPolicyExponentiationFactor": 100,
      "retryPolicyOnMaxAttempts": "KILL", "inactivityTimeout": 1000, "abortTimeout": null}',
    '{"retryPolicyMaxAttempts": 0, "retryPolicyExponentiationFactor": 1, "journalRetention": 0,
      "idempotencyRetention": 9007199254740991, "retryPolicyOnMaxAttempts": "PAUSE",
      "inactivityTimeout": 60000.0}');
SELECT name, options FROM durable.services WHERE name = 'Crafted';
SELECT service_name, name, options FROM durable.handlers WHERE service_name = 'Crafted';
